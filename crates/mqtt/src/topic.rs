//! Topic names and topic filters (3.1.1 §4.7, 5.0 §4.7).

/// True for a valid topic name: non-empty, no `+` or `#`, at most 65,535 bytes.
pub fn valid_topic_name(name: &str) -> bool {
    let _ = name;
    todo!()
}

/// True for a valid topic filter: non-empty; `#` only as the last whole level;
/// `+` only as a whole level; `$share/{group}/{filter}` with a non-empty group
/// without wildcards and a valid filter.
pub fn valid_topic_filter(filter: &str) -> bool {
    let _ = filter;
    todo!()
}

/// True when `filter` matches `name`, with the `$` rule: a filter starting with
/// a wildcard does not match a name starting with `$` (§4.7.2).
pub fn matches(filter: &str, name: &str) -> bool {
    let _ = (filter, name);
    todo!()
}
