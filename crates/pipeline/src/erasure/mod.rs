//! Erasure as the log's consumers see it (docs/erasure.md): the log keeps
//! what an owner erased, so every sink reads it through [`Unsealed`], which
//! opens sealed payloads and blanks those whose owner's key is destroyed,
//! and drops rows an erasure tombstone covers ([`Tombstones`]) before they
//! are stored or archived again.

mod keys;
mod tombstones;
mod unseal;

pub use keys::StoreKeys;
pub use tombstones::{follow, Tombstones, FOLLOW_EVERY};
pub use unseal::{ErasureStats, Unsealed, UnsealedConsumer};
