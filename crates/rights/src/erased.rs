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

    /// [`Erasures::covers`] for a record as the log keeps it: received at
    /// `receive_time_ms` (Unix milliseconds). An anonymous record (no
    /// owner) is never covered, and costs no question.
    fn covers_record(&self, owner: &str, device: &str, receive_time_ms: u64) -> bool {
        !owner.is_empty()
            && self.covers(
                owner,
                device,
                i64::try_from(receive_time_ms).unwrap_or(i64::MAX),
            )
    }
}
