//! What an erasure of a device or a time range means to a reader that
//! passes records on (docs/erasure.md): the log keeps them, sealed under
//! the owner's key that is still live, so whoever sends them again must
//! ask first. The pipeline keeps the node's copy of the store's tombstones
//! and implements this; the broker and the API's live feed ask it for each
//! record they send.

/// The erasures a node knows of.
pub trait Erasures: Send + Sync {
    /// Whether an erasure covers `owner`'s `device` at `time_ms` (for a
    /// record as delivered: its receive time, as for retained messages and
    /// dead letters). Asked for every record sent: it answers at once when
    /// the node knows of no erasure.
    fn covers(&self, owner: &str, device: &str, time_ms: i64) -> bool;
}
