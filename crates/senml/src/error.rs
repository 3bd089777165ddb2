//! The one error of this crate: the pack is not valid SenML.

/// Why a pack was rejected. The whole pack is rejected, never part of it, so
/// a device learns about its fault instead of losing data silently.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    /// Index (0-based) of the record at fault in the pack's array, `None`
    /// when the fault is with the pack as a whole (not an array, too large).
    pub record: Option<usize>,
    /// Human-readable reason; for a record it starts with `record N: ` and
    /// names the field at fault.
    pub reason: String,
}

impl Invalid {
    /// The pack as a whole is at fault.
    pub(crate) fn pack(reason: impl Into<String>) -> Self {
        Invalid {
            record: None,
            reason: reason.into(),
        }
    }

    /// Record `index` is at fault; `reason` gets the `record N: ` prefix.
    pub(crate) fn record(index: usize, reason: impl std::fmt::Display) -> Self {
        Invalid {
            record: Some(index),
            reason: format!("record {index}: {reason}"),
        }
    }
}

/// `Result` with [`Invalid`] as the error.
pub type Result<T, E = Invalid> = std::result::Result<T, E>;

/// Longest text from the payload quoted in a reason, in characters: a
/// device's 1 MiB unit string must not become a 1 MiB log line.
const MAX_QUOTED_CHARS: usize = 64;

/// `text` quoted and escaped for a reason, cut short when long.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}
