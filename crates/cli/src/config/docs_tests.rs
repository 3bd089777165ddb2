//! The documented defaults are the code's: docs/tributary.example.toml parses
//! to exactly `FileConfig::default()`, and every `key | default` row of
//! docs/configuration.md names the value the example file holds, so the docs
//! cannot drift from the code (or from each other) without a test failing.

use std::collections::BTreeSet;

use super::*;

const EXAMPLE: &str = include_str!("../../../../docs/tributary.example.toml");
const REFERENCE: &str = include_str!("../../../../docs/configuration.md");

/// Rows of docs/configuration.md whose default the test cannot compare, and why.
const UNCHECKED: [(&str, &str); 7] = [
    (
        "kafka.url",
        "required: no default, and `embedded` in the flags table means no [kafka]",
    ),
    (
        "store.url",
        "`sqlite` stands for no URL: the SQLite file in the data dir",
    ),
    (
        "archive.url",
        "no URL means DATA_DIR/archive, said in words",
    ),
    ("archive.endpoint", "from AWS_ENDPOINT, else Amazon S3"),
    ("archive.region", "from AWS_DEFAULT_REGION, else us-east-1"),
    (
        "erasure.master_key_file",
        "no file named means DATA_DIR/master.key, generated when missing",
    ),
    (
        "cluster.http_server_options",
        "several words, which the row's first-word comparison cannot take; \
         example_file_holds_the_defaults compares the example file's value with the code's",
    ),
];

/// Keys of the example file that no `key | default` row lists: their
/// default is given in prose or a code block of docs/configuration.md.
const ONLY_IN_PROSE: [&str; 0] = [];

/// Documented defaults of keys that are absent from the example file or hold
/// an illustration there rather than the default.
fn code_defaults() -> Vec<(&'static str, String)> {
    let kafka = KafkaFileConfig::from_url("kafka://127.0.0.1:9092");
    vec![
        (
            "mqtt.tls.listen",
            tributary_broker::ListenerConfig::default_tls()
                .listen
                .to_string(),
        ),
        (
            "archive.allow_http",
            ArchiveFileConfig::default().allow_http.to_string(),
        ),
        ("kafka.topics", format!("{:?}", kafka.topics)),
    ]
}

/// The `[kafka]` table of the example file, which is commented out there
/// (it turns Kafka on), without its `# `.
fn example_kafka_table() -> String {
    EXAMPLE
        .lines()
        .skip_while(|line| *line != "# [kafka]")
        .map_while(|line| line.strip_prefix("# "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_file_holds_the_defaults() -> anyhow::Result<()> {
    let example: FileConfig = toml::from_str(EXAMPLE)?;
    // Debug rather than PartialEq: the broker's config types do not implement
    // it, and Debug shows every field of every table.
    assert_eq!(
        format!("{example:#?}"),
        format!("{:#?}", FileConfig::default()),
        "docs/tributary.example.toml is not the defaults"
    );
    Ok(())
}

#[test]
fn example_kafka_table_holds_the_defaults() -> anyhow::Result<()> {
    let table = example_kafka_table();
    let config: FileConfig = toml::from_str(&table)?;
    let example = config.kafka.expect("the example's [kafka] table");
    example.build()?;
    // The URL is required and the topic rule an illustration; the rest are defaults.
    let defaults = KafkaFileConfig {
        topics: example.topics.clone(),
        ..KafkaFileConfig::from_url(&example.url)
    };
    assert_eq!(format!("{example:#?}"), format!("{defaults:#?}"));
    Ok(())
}

/// `(key, default)` of every row of docs/configuration.md's tables that have
/// a key column and a `default` column: the flags table (`config key`) and
/// the `key | default | …` tables under a `## [table]` heading.
fn documented_defaults() -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut table = String::new();
    // None: not in a table; Some(None): in a table without both columns.
    let mut columns: Option<Option<(usize, usize)>> = None;
    for line in REFERENCE.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            table = heading
                .split_once("`[")
                .and_then(|(_, rest)| rest.split_once("]`"))
                .map_or_else(String::new, |(name, _)| name.to_owned());
            continue;
        }
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(columns) = columns else {
            let key = cells.iter().position(|c| *c == "key" || *c == "config key");
            let default = cells.iter().position(|c| *c == "default");
            columns = Some(key.zip(default));
            continue;
        };
        let Some((key, default)) = columns else {
            continue;
        };
        if cells.iter().all(|c| c.starts_with("---")) {
            continue;
        }
        let key = cells[key].trim_matches('`');
        if key.is_empty() {
            continue; // a flag without a config key (`--config`)
        }
        let key = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        rows.push((key, cells[default].to_owned()));
    }
    rows
}

/// A documented default as the value alone: `604800 (7 days)` → `604800`,
/// `` `"tributary"` `` → `tributary`.
fn documented_value(cell: &str) -> &str {
    let first = cell.split_whitespace().next().unwrap_or_default();
    first
        .trim_end_matches(',')
        .trim_matches('`')
        .trim_matches('"')
}

/// A TOML value written the way the docs write it.
fn doc_form(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lookup<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(root, |value, part| value.get(part))
}

/// Every leaf key of a TOML table, dotted.
fn leaf_keys(value: &toml::Value, prefix: &str, keys: &mut BTreeSet<String>) {
    match value.as_table() {
        Some(table) if !table.is_empty() => {
            for (name, value) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                leaf_keys(value, &key, keys);
            }
        }
        Some(_) => {} // an empty table, like [store]
        None => {
            keys.insert(prefix.to_owned());
        }
    }
}

#[test]
fn configuration_md_defaults_match_the_example_file() -> anyhow::Result<()> {
    let mut example: toml::Value = toml::from_str(EXAMPLE)?;
    let kafka: toml::Value = toml::from_str(&example_kafka_table())?;
    example
        .as_table_mut()
        .expect("a TOML document is a table")
        .insert(
            "kafka".into(),
            kafka.get("kafka").context("[kafka]")?.clone(),
        );
    let code = code_defaults();

    let mut mismatches = Vec::new();
    let mut documented = BTreeSet::new();
    let mut unchecked = BTreeSet::new();
    for (key, cell) in documented_defaults() {
        let doc = documented_value(&cell);
        documented.insert(key.clone());
        if UNCHECKED.iter().any(|(k, _)| *k == key) {
            unchecked.insert(key);
            continue;
        }
        let expected = if let Some((_, value)) = code.iter().find(|(k, _)| *k == key) {
            value.clone()
        } else if let Some(value) = lookup(&example, &key) {
            match (value, doc) {
                (toml::Value::Boolean(false), "off") => "off".to_owned(),
                (toml::Value::Boolean(true), "on") => "on".to_owned(),
                _ => doc_form(value),
            }
        } else if matches!(doc, "off" | "none") {
            // Absent from the example, hence (example_file_holds_the_defaults)
            // from the defaults: off indeed.
            continue;
        } else {
            mismatches.push(format!(
                "{key}: documented {cell:?}, but the example file does not have it \
                 (add it there, or to UNCHECKED with the reason)"
            ));
            continue;
        };
        if doc != expected {
            mismatches.push(format!(
                "{key}: docs/configuration.md says {cell:?}, the code {expected:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    let listed: BTreeSet<String> = UNCHECKED.iter().map(|(k, _)| (*k).to_owned()).collect();
    assert_eq!(
        unchecked, listed,
        "UNCHECKED lists keys the docs no longer have"
    );

    let mut in_example = BTreeSet::new();
    leaf_keys(&example, "", &mut in_example);
    let missing: Vec<_> = in_example
        .iter()
        .filter(|key| !documented.contains(*key) && !ONLY_IN_PROSE.contains(&key.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of the example file without a row in docs/configuration.md: {missing:?}"
    );
    Ok(())
}
