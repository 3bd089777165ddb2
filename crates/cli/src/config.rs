//! The config file (TOML) and how flags and environment variables override it.
//! Every key is documented in docs/configuration.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use tributary_broker::{BrokerConfig, LimitsConfig, MqttConfig, TlsConfig};
use tributary_log::LogConfig;

/// The flags of every command that works on a node's data: `serve` and
/// `reprocess` read the same config file, data dir, log and store.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// TOML config file (see docs/configuration.md); flags override it.
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the log, sessions and retained messages [default: ./data].
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The log: `embedded` (default, DATA_DIR/log) or
    /// `kafka://HOST:PORT[,HOST:PORT]` (see `[kafka]`; `serve` then acknowledges
    /// publishes once Kafka has them).
    #[arg(long, env = "TRIBUTARY_LOG", value_name = "URL")]
    pub log: Option<String>,
    /// Where measurements are kept: `sqlite` (DATA_DIR/store.sqlite, default),
    /// `sqlite:///PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "TRIBUTARY_STORE", value_name = "URL")]
    pub store: Option<String>,
}

impl DataArgs {
    /// The config file (or the defaults) with these flags applied.
    pub fn compose(&self) -> anyhow::Result<FileConfig> {
        let mut config = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.store {
            config.store.url = Some(url.clone());
        }
        match self.log.as_deref() {
            None => {}
            Some("embedded") => config.kafka = None,
            Some(url) if url.starts_with("kafka://") => {
                let kafka = config
                    .kafka
                    .get_or_insert_with(|| KafkaFileConfig::from_url(url));
                kafka.url = url.to_owned();
            }
            Some(other) => {
                anyhow::bail!("--log {other:?}: expected embedded or kafka://HOST:PORT[,HOST:PORT]")
            }
        }
        Ok(config)
    }
}

/// The whole config file; every table and key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Directory for the log, sessions and retained messages.
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub limits: LimitsConfig,
    pub log: LogFileConfig,
    /// Certificates of the TLS and secure WebSocket listeners.
    pub tls: Option<TlsConfig>,
    /// Kafka as the log (`--log kafka://...`); absent: the embedded log.
    pub kafka: Option<KafkaFileConfig>,
    pub store: StoreFileConfig,
    pub archive: ArchiveFileConfig,
    pub http: HttpFileConfig,
}

/// The `[archive]` table: the Parquet archive the pipeline writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveFileConfig {
    /// `false`: no archive is written.
    pub enabled: bool,
    /// A directory (relative to the data dir) or `file:///PATH`, or
    /// `s3://BUCKET[/PREFIX]` [default: DATA_DIR/archive].
    pub url: Option<String>,
    /// S3: the endpoint of an S3-compatible service.
    pub endpoint: Option<String>,
    /// S3: the region.
    pub region: Option<String>,
    /// S3: allow an `http://` endpoint.
    pub allow_http: bool,
    /// A batch is written once it holds this many measurements…
    pub max_rows: usize,
    /// …or once its oldest record waited this long.
    pub max_age_secs: f64,
}

impl Default for ArchiveFileConfig {
    fn default() -> Self {
        let policy = tributary_pipeline::FlushPolicy::default();
        ArchiveFileConfig {
            enabled: true,
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            max_rows: policy.max_rows,
            max_age_secs: policy.max_age.as_secs_f64(),
        }
    }
}

impl ArchiveFileConfig {
    pub fn archive(&self) -> tributary_archive::ArchiveConfig {
        tributary_archive::ArchiveConfig {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
        }
    }

    /// The flush policy, each value checked with a message naming its key.
    pub fn policy(&self) -> anyhow::Result<tributary_pipeline::FlushPolicy> {
        anyhow::ensure!(
            (1..=10_000_000).contains(&self.max_rows),
            "archive.max_rows must be from 1 to 10000000"
        );
        anyhow::ensure!(
            self.max_age_secs.is_finite() && (0.01..=86_400.0).contains(&self.max_age_secs),
            "archive.max_age_secs must be from 0.01 to 86400"
        );
        Ok(tributary_pipeline::FlushPolicy {
            max_rows: self.max_rows,
            max_age: Duration::from_secs_f64(self.max_age_secs),
        })
    }
}

/// The `[http]` table: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFileConfig {
    pub listen: std::net::SocketAddr,
    /// Whether anyone who reaches the API may sign up as an owner.
    pub signup: bool,
}

impl Default for HttpFileConfig {
    fn default() -> Self {
        HttpFileConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            signup: tributary_api::DEFAULT_SIGNUP,
        }
    }
}

/// The `[store]` table: where measurements are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreFileConfig {
    /// `sqlite` (DATA_DIR/store.sqlite, the default), `sqlite:///PATH` or
    /// `postgres://USER@HOST:PORT/DB`.
    pub url: Option<String>,
}

/// The `[kafka]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFileConfig {
    /// `kafka://HOST:PORT[,HOST:PORT]`.
    pub url: String,
    /// `"FILTER -> TOPIC"` rules, first match wins.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Kafka topic of messages no rule matches.
    #[serde(default = "default_kafka_topic")]
    pub default_topic: String,
    /// Longest a publish waits for Kafka before its publisher is told it
    /// was not stored.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Partitions of topics Tributary creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Start of the consumer groups' names.
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
}

fn default_group_prefix() -> String {
    tributary_kafka::DEFAULT_GROUP_PREFIX.to_owned()
}

fn default_kafka_topic() -> String {
    tributary_kafka::DEFAULT_TOPIC.to_owned()
}
fn default_ack_timeout_ms() -> u64 {
    tributary_kafka::DEFAULT_ACK_TIMEOUT.as_millis() as u64
}
fn default_partitions() -> i32 {
    tributary_kafka::DEFAULT_PARTITIONS
}

impl KafkaFileConfig {
    pub fn from_url(url: &str) -> Self {
        KafkaFileConfig {
            url: url.to_owned(),
            topics: Vec::new(),
            default_topic: default_kafka_topic(),
            ack_timeout_ms: default_ack_timeout_ms(),
            partitions: default_partitions(),
            group_prefix: default_group_prefix(),
        }
    }

    /// The Kafka client's config, every value checked with a message naming its key.
    pub fn resolve(&self) -> anyhow::Result<tributary_kafka::KafkaConfig> {
        let mut config = tributary_kafka::KafkaConfig::from_url(&self.url).context("kafka.url")?;
        config.rules = self
            .topics
            .iter()
            .map(|rule| rule.parse())
            .collect::<Result<_, _>>()
            .context("kafka.topics")?;
        anyhow::ensure!(
            tributary_kafka::valid_kafka_topic(&self.default_topic),
            "kafka.default_topic {:?} is not a valid Kafka topic name",
            self.default_topic
        );
        anyhow::ensure!(
            self.ack_timeout_ms >= 1000,
            "kafka.ack_timeout_ms must be at least 1000"
        );
        anyhow::ensure!(self.partitions >= 1, "kafka.partitions must be at least 1");
        anyhow::ensure!(
            tributary_kafka::valid_group_prefix(&self.group_prefix),
            "kafka.group_prefix {:?} must be 1–200 of a-z A-Z 0-9 . _ -",
            self.group_prefix
        );
        config.group_prefix = self.group_prefix.clone();
        config.default_topic = self.default_topic.clone();
        config.ack_timeout = Duration::from_millis(self.ack_timeout_ms);
        config.partitions = self.partitions;
        Ok(config)
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            data_dir: PathBuf::from("./data"),
            mqtt: MqttConfig::default(),
            limits: LimitsConfig::default(),
            log: LogFileConfig::default(),
            tls: None,
            kafka: None,
            store: StoreFileConfig::default(),
            archive: ArchiveFileConfig::default(),
            http: HttpFileConfig::default(),
        }
    }
}

/// The `[log]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFileConfig {
    /// A segment file is sealed when it reaches this size.
    pub segment_bytes: u64,
    /// Retention: the oldest segments are deleted above this total size,
    /// unless a session still needs them; then publishes are refused.
    pub max_bytes: u64,
    /// Retention: segments older than this are deleted (sessions permitting);
    /// 0 keeps them regardless of age.
    pub max_age_secs: u64,
}

impl Default for LogFileConfig {
    fn default() -> Self {
        LogFileConfig {
            segment_bytes: tributary_log::DEFAULT_SEGMENT_BYTES,
            max_bytes: tributary_log::DEFAULT_MAX_BYTES,
            max_age_secs: tributary_log::DEFAULT_MAX_AGE.as_secs(),
        }
    }
}

impl FileConfig {
    /// Reads a config file; unknown keys are errors that name the key.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
    }

    /// Checks every value and chooses the log: the one place that turns
    /// the file with its flags and environment into what a node runs on.
    /// Each error names its key.
    pub fn resolve(&self) -> anyhow::Result<NodeConfig> {
        let backend = match &self.kafka {
            Some(kafka) => LogBackend::Kafka(kafka.resolve()?),
            None => LogBackend::Embedded,
        };
        let broker = BrokerConfig {
            mqtt: self.mqtt.clone(),
            limits: self.limits.clone(),
            tls: self.tls.clone(),
            kafka: backend.kafka().cloned(),
        };
        broker.validate().map_err(anyhow::Error::msg)?;
        // Checked even when the archive is off, so turning it on later
        // cannot reveal a mistake made now.
        let policy = self.archive.policy()?;
        let archive = self.archive.enabled.then(|| ArchiveSettings {
            config: self.archive.archive(),
            policy,
        });
        Ok(NodeConfig {
            data_dir: self.data_dir.clone(),
            log: self.log_config(),
            backend,
            broker,
            store_url: self.store.url.clone(),
            archive,
            http: self.http.clone(),
        })
    }

    /// The embedded log in the data dir with the `[log]` table's values.
    fn log_config(&self) -> LogConfig {
        let mut config = LogConfig::new(self.data_dir.join("log"));
        config.segment_bytes = self.log.segment_bytes;
        config.max_bytes = self.log.max_bytes;
        config.max_age =
            (self.log.max_age_secs > 0).then(|| Duration::from_secs(self.log.max_age_secs));
        config
    }
}

/// Which log a node runs on, chosen once by [`FileConfig::resolve`] (from
/// `--log` and the `[kafka]` table); everything that differs between the
/// two asks this value.
#[derive(Debug, Clone)]
pub enum LogBackend {
    /// The embedded log in `DATA_DIR/log` is the log: publishes are
    /// acknowledged once it fsync'd them.
    Embedded,
    /// Kafka is the log: publishes are acknowledged once Kafka has them, and
    /// the embedded log in `DATA_DIR/log` is this node's copy for delivery
    /// to its own subscribers (fed from Kafka).
    Kafka(tributary_kafka::KafkaConfig),
}

impl LogBackend {
    pub fn kafka(&self) -> Option<&tributary_kafka::KafkaConfig> {
        match self {
            LogBackend::Kafka(kafka) => Some(kafka),
            LogBackend::Embedded => None,
        }
    }
}

/// A node's configuration, every value checked: what `serve`,
/// `reprocess` and the pipeline run on. Only [`FileConfig::resolve`] makes one.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub backend: LogBackend,
    /// The embedded log: the log itself, or with Kafka this node's copy.
    pub log: LogConfig,
    /// The broker's config; its `kafka` follows `backend`.
    pub broker: BrokerConfig,
    /// `None`: SQLite in the data dir.
    pub store_url: Option<String>,
    /// `None`: the archive is off.
    pub archive: Option<ArchiveSettings>,
    pub http: HttpFileConfig,
}

/// Where the archive goes and when a batch is written.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub config: tributary_archive::ArchiveConfig,
    pub policy: tributary_pipeline::FlushPolicy,
}

#[cfg(test)]
mod docs_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("")?;
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1883");
        assert!(!config.mqtt.allow_anonymous);
        assert_eq!(config.limits.max_packet_size, 1024 * 1024);
        Ok(())
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err =
            toml::from_str::<FileConfig>("[limits]\nmax_packets = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("max_packets"), "{err}");
    }

    #[test]
    fn listener_tables_and_tls_compose_the_listeners() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str(
            "[mqtt.ws]\nlisten = \"127.0.0.1:8083\"\n\
             [mqtt.wss]\nlisten = \"127.0.0.1:8084\"\nproxy_protocol = true\n\
             [tls]\ncert_file = \"s.crt\"\nkey_file = \"s.key\"\n",
        )?;
        let broker = config.resolve()?.broker;
        broker.validate().map_err(anyhow::Error::msg)?;
        let listeners: Vec<String> = broker
            .listeners()
            .iter()
            .map(|(kind, l)| format!("{kind} {} {}", l.listen, l.proxy_protocol))
            .collect();
        assert_eq!(
            listeners,
            [
                "mqtt 127.0.0.1:1883 false",
                "mqtt.tls 0.0.0.0:8883 false",
                "mqtt.ws 127.0.0.1:8083 false",
                "mqtt.wss 127.0.0.1:8084 true",
            ]
        );
        Ok(())
    }

    #[test]
    fn encrypted_listener_without_certificate_is_refused_by_name() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[mqtt.wss]\nlisten = \"127.0.0.1:8084\"\n")?;
        let err = config.resolve().expect_err("no [tls]").to_string();
        assert!(err.contains("mqtt.wss") && err.contains("[tls]"), "{err}");
        Ok(())
    }

    #[test]
    fn docs_example_config_parses() -> anyhow::Result<()> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/tributary.example.toml"
        ))?;
        let config: FileConfig = toml::from_str(&text)?;
        config.resolve()?;
        Ok(())
    }

    #[test]
    fn kafka_table_resolves_and_names_bad_keys() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str(
            "[kafka]\nurl = \"kafka://127.0.0.1:19092\"\n\
             topics = [\"tributary/v1/+/senml -> tributary.senml\"]\n",
        )?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.brokers, "127.0.0.1:19092");
        assert_eq!(kafka.topic_for("tributary/v1/w/senml"), "tributary.senml");
        assert_eq!(kafka.topic_for("other"), "tributary.ingest");
        let bad: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ntopics = [\"a/# b\"]\n")?;
        let err = format!("{:#}", bad.resolve().expect_err("bad rule"));
        assert!(err.contains("kafka.topics"), "{err}");
        Ok(())
    }

    #[test]
    fn kafka_group_prefix_names_every_group() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[kafka]\nurl = \"kafka://k:1\"\n")?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.group("pipeline"), "tributary-pipeline");
        let config: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ngroup_prefix = \"site-b\"\n")?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.group("archive"), "site-b-archive");
        let bad: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ngroup_prefix = \"a b\"\n")?;
        let err = format!("{:#}", bad.resolve().expect_err("bad prefix"));
        assert!(err.contains("kafka.group_prefix"), "{err}");
        Ok(())
    }

    fn data_args(config: Option<PathBuf>, log: Option<&str>) -> DataArgs {
        DataArgs {
            config,
            data_dir: None,
            log: log.map(str::to_owned),
            store: None,
        }
    }

    #[test]
    fn the_log_backend_is_chosen_once_and_the_broker_follows_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("tributary.toml");
        std::fs::write(
            &file,
            "[kafka]\nurl = \"kafka://10.0.0.1:9092\"\npartitions = 6\n",
        )?;

        // The [kafka] table alone: Kafka, with the table's values.
        let node = data_args(Some(file.clone()), None).compose()?.resolve()?;
        let LogBackend::Kafka(kafka) = &node.backend else {
            anyhow::bail!("expected Kafka, got {:?}", node.backend);
        };
        assert_eq!(kafka.brokers, "10.0.0.1:9092");
        assert_eq!(kafka.partitions, 6);
        assert_eq!(node.broker.kafka.as_ref(), Some(kafka));

        // --log embedded wins over the file: no Kafka anywhere.
        let node = data_args(Some(file.clone()), Some("embedded"))
            .compose()?
            .resolve()?;
        assert!(matches!(node.backend, LogBackend::Embedded));
        assert!(node.broker.kafka.is_none());

        // --log kafka:// keeps the table's other values, with the flag's brokers.
        let node = data_args(Some(file), Some("kafka://10.0.0.2:9092"))
            .compose()?
            .resolve()?;
        let kafka = node
            .backend
            .kafka()
            .ok_or_else(|| anyhow::anyhow!("not Kafka"))?;
        assert_eq!(
            (kafka.brokers.as_str(), kafka.partitions),
            ("10.0.0.2:9092", 6)
        );

        // No file, no flag: the embedded log in the data dir.
        let node = data_args(None, None).compose()?.resolve()?;
        assert!(matches!(node.backend, LogBackend::Embedded));
        assert_eq!(node.log.dir, PathBuf::from("./data/log"));
        Ok(())
    }

    #[test]
    fn a_bad_archive_policy_is_refused_even_with_the_archive_off() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[archive]\nenabled = false\nmax_rows = 0\n")?;
        let err = config.resolve().expect_err("max_rows = 0").to_string();
        assert!(err.contains("archive.max_rows"), "{err}");
        Ok(())
    }
}
