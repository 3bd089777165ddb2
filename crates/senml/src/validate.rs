//! Checks on resolved fields (RFC 8428 §4.5.1 names, §4.5.3 times) and this
//! platform's plausibility limits. Each returns the reason text without the
//! `record N: ` prefix, which the caller adds.

/// Longest name accepted, in bytes; the RFC sets no limit, a store needs one.
pub const MAX_NAME_BYTES: usize = 255;

/// 2001-01-01T00:00:00Z in Unix ms: nothing this platform stores is older,
/// so an earlier time is a device with an unset clock.
pub const EARLIEST_TIME_MS: i64 = 978_307_200_000;

/// How far past the receive time a measurement may lie (clock skew, or an
/// actuator command scheduled ahead).
pub const MAX_FUTURE_MS: i64 = 24 * 60 * 60 * 1000;

/// Times below 2^28 s (about 8.5 years) are relative to "now" (§4.5.3).
pub const RELATIVE_TIME_LIMIT_S: f64 = 268_435_456.0;

/// §4.5.1: non-empty, first character a letter or digit, then only
/// `A-Z a-z 0-9 - : . / _`; plus the length limit.
pub(crate) fn name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("name (bn + n) is empty".to_owned());
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "name (bn + n) is {} bytes, longer than {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "name {name:?} (bn + n) must start with a letter or digit"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '/' | '_')))
    {
        return Err(format!(
            "name {name:?} (bn + n) contains {bad:?}; only A-Z a-z 0-9 - : . / _ are allowed"
        ));
    }
    Ok(())
}

/// Turns a resolved time in seconds (`bt + t`, or `None` when neither is
/// given) into Unix ms and checks it is plausible.
pub(crate) fn time(seconds: Option<f64>, received_ms: i64) -> Result<i64, String> {
    let Some(seconds) = seconds else {
        return Ok(received_ms);
    };
    let ms = if seconds < RELATIVE_TIME_LIMIT_S {
        received_ms as f64 + seconds * 1000.0
    } else {
        seconds * 1000.0
    };
    let ms = ms.round();
    if !ms.is_finite() {
        return Err("time (bt + t) is not a finite number".to_owned());
    }
    if ms < EARLIEST_TIME_MS as f64 {
        return Err(format!(
            "time (bt + t) resolves to {ms} ms, before 2001-01-01"
        ));
    }
    let latest = received_ms.saturating_add(MAX_FUTURE_MS);
    if ms > latest as f64 {
        return Err(format!(
            "time (bt + t) resolves to {ms} ms, more than 24 h after the pack was received at {received_ms} ms"
        ));
    }
    // In range [2001, received + 24 h], so the cast is exact.
    Ok(ms as i64)
}
