//! Topic names and topic filters (3.1.1 §4.7, 5.0 §4.7).
//!
//! ```text
//! topic name    level ("/" level)*        no "+" or "#" anywhere
//! topic filter  level ("/" level)*        a level is "+", "#" (last level
//!                                         only) or text without "+" and "#"
//! shared filter "$share/" group "/" filter  group non-empty, without "+",
//!                                           "#" or "/" (5.0 §4.8.2)
//! ```
//!
//! Levels may be empty: `a//b` has three levels and `/` two. Names and
//! filters are UTF-8 Encoded Strings, so they are at most 65,535 bytes and
//! never contain U+0000 (§4.7.3).

/// The longest string a two-byte length prefix can announce.
const MAX_LEN: usize = u16::MAX as usize;

/// The prefix of a shared subscription's filter (5.0 §4.8.2).
const SHARE_PREFIX: &str = "$share/";

/// True for a valid topic name: non-empty, no `+` or `#`, at most 65,535 bytes.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LEN && !name.contains(['+', '#', '\0'])
}

/// True for a valid topic filter: non-empty; `#` only as the last whole level;
/// `+` only as a whole level; `$share/{group}/{filter}` with a non-empty group
/// without wildcards and a valid filter.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.len() > MAX_LEN || filter.contains('\0') {
        return false;
    }
    match filter.strip_prefix(SHARE_PREFIX) {
        Some(rest) => match rest.split_once('/') {
            Some((group, inner)) => {
                !group.is_empty() && !group.contains(['+', '#']) && valid_plain_filter(inner)
            }
            None => false,
        },
        None => valid_plain_filter(filter),
    }
}

/// A filter that is not a shared subscription.
fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "+" => true,
            "#" => levels.peek().is_none(),
            text => !text.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// True when `filter` matches `name`, with the `$` rule: a filter starting with
/// a wildcard does not match a name starting with `$` (§4.7.2).
///
/// A shared filter `$share/{group}/{filter}` matches what its inner filter
/// matches. `sport/#` matches `sport` too, since `#` also stands for the parent
/// level (§4.7.1.2), and `+` matches an empty level. Invalid filters match
/// nothing.
pub fn matches(filter: &str, name: &str) -> bool {
    if !valid_topic_filter(filter) || !valid_topic_name(name) {
        return false;
    }
    let filter = match filter
        .strip_prefix(SHARE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((_group, inner)) => inner,
        None => filter,
    };
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for name in [
            "a",
            "/",
            "a/b",
            "a//b",
            "$SYS/x",
            "sport/tennis player1",
            "ü/€",
        ] {
            assert!(valid_topic_name(name), "{name:?}");
        }
        for name in ["", "a/+", "#", "a/b#", "a\0b"] {
            assert!(!valid_topic_name(name), "{name:?}");
        }
        assert!(valid_topic_name(&"a".repeat(65_535)));
        assert!(!valid_topic_name(&"a".repeat(65_536)));
    }

    #[test]
    fn topic_filters() {
        let valid = [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//b",
            "/",
            "$SYS/#",
            "$share/g/a/b",
            "$share/g/#",
            "$share/g/+/x",
            "$share/g//",
            "$sharex/+",
        ];
        for filter in valid {
            assert!(valid_topic_filter(filter), "{filter:?}");
        }
        let invalid = [
            "",
            "a/#/b",
            "a#",
            "a/b#",
            "#/a",
            "a+",
            "a/+b",
            "+a/b",
            "a\0",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/+/a",
            "$share/g#/a",
            "$share/g/a/#/b",
        ];
        for filter in invalid {
            assert!(!valid_topic_filter(filter), "{filter:?}");
        }
        assert!(!valid_topic_filter(&"a".repeat(65_536)));
    }

    #[test]
    fn matching() {
        let yes = [
            ("sport/#", "sport"),
            ("sport/#", "sport/tennis/player1"),
            ("sport/tennis/#", "sport/tennis"),
            ("#", "a/b/c"),
            ("#", "/"),
            ("+", "a"),
            ("+/+", "/"),
            ("/+", "/"),
            ("a/+/c", "a//c"),
            ("sport/+", "sport/"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/broker"),
            ("$SYS/+", "$SYS/x"),
            ("$share/g/a/+", "a/b"),
            ("$share/g/#", "a/b"),
        ];
        for (filter, name) in yes {
            assert!(matches(filter, name), "{filter:?} should match {name:?}");
        }
        let no = [
            ("sport/+", "sport"),
            ("+", "/"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("$share/g/#", "$SYS/x"),
            ("A", "a"),
            ("a/#/b", "a/x/b"),
            ("a", ""),
        ];
        for (filter, name) in no {
            assert!(
                !matches(filter, name),
                "{filter:?} should not match {name:?}"
            );
        }
    }
}
