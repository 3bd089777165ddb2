//! The erasures every sink must respect when it reads the log again: a
//! node-wide, in-memory copy of the store's tombstones, refreshed by
//! [`follow`] (bounded: at most `MAX_ERASURES_PER_OWNER` per owner).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_rights::owner_keys::Keyring;
use tributary_store::erasure::{Erasure, Tombstone};
use tributary_store::{DeadLetter, Row, Store};

/// How often [`follow`] asks the store for new erasures: how long an
/// erasure made on another node takes to reach this node's sinks and its
/// key cache at most (plus the cache's own ttl for the key).
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Tombstones read per store call while catching up.
const PAGE: usize = 1_000;

#[derive(Debug, Default)]
struct Known {
    by_owner: HashMap<String, Vec<Erasure>>,
    /// The highest tombstone id read.
    last: i64,
}

/// The erasures known to this node; clones share them. Empty by default
/// (tests and tools without a store).
#[derive(Debug, Clone, Default)]
pub struct Tombstones(Arc<RwLock<Known>>);

/// Equal when they are the same shared set (policies holding one compare
/// equal when they would filter alike for ever).
impl PartialEq for Tombstones {
    fn eq(&self, other: &Tombstones) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Tombstones {}

impl Tombstones {
    /// Whether an erasure covers `owner`'s `device` at `time_ms`.
    pub fn covers(&self, owner: &str, device: &str, time_ms: i64) -> bool {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        known
            .by_owner
            .get(owner)
            .is_some_and(|all| all.iter().any(|e| e.covers(owner, device, time_ms)))
    }

    /// Whether `owner` has any erasure (the fast path: most have none).
    pub fn any_for(&self, owner: &str) -> bool {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        known.by_owner.contains_key(owner)
    }

    /// Drops the rows an erasure covers; returns how many.
    pub fn retain_rows(&self, rows: &mut Vec<Row>) -> usize {
        let before = rows.len();
        if rows.iter().any(|r| self.any_for(&r.owner)) {
            rows.retain(|r| !self.covers(&r.owner, &r.device, r.time_ms));
        }
        before - rows.len()
    }

    /// Whether an erasure covers a dead letter (by its receive time).
    pub fn covers_letter(&self, letter: &DeadLetter) -> bool {
        self.any_for(&letter.owner)
            && self.covers(&letter.owner, &letter.device, letter.received_ms)
    }

    /// Adds what the store has beyond what is known; returns the new ones.
    pub async fn refresh(&self, store: &Store) -> tributary_store::Result<Vec<Tombstone>> {
        let mut fresh = Vec::new();
        loop {
            let last = self.0.read().unwrap_or_else(|p| p.into_inner()).last;
            let page = store.tombstones(last, PAGE).await?;
            let full = page.len() == PAGE;
            {
                let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
                for t in &page {
                    known.last = known.last.max(t.id);
                    let all = known.by_owner.entry(t.erasure.owner.clone()).or_default();
                    if t.erasure == Erasure::everything(&t.erasure.owner) {
                        // The whole account: what came before is covered by it.
                        all.clear();
                    }
                    all.push(t.erasure.clone());
                }
            }
            fresh.extend(page);
            if !full {
                return Ok(fresh);
            }
        }
    }
}

/// Keeps `tombstones` and `keyring`'s cache up to date with the store's
/// erasures until `stop`: every [`FOLLOW_EVERY`], new tombstones are read,
/// and the key of an owner erased whole is forgotten at once.
pub async fn follow(
    store: Arc<Store>,
    tombstones: Tombstones,
    keyring: Option<Arc<Keyring>>,
    stop: CancellationToken,
) {
    loop {
        match tombstones.refresh(&store).await {
            Ok(fresh) => {
                for t in fresh {
                    if let Some(keyring) = &keyring {
                        if t.erasure == Erasure::everything(&t.erasure.owner) {
                            keyring.forget(&t.erasure.owner);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "erasures: read tombstones; retrying"),
        }
        if crate::pause_unless_stopped(&stop, FOLLOW_EVERY).await {
            return;
        }
    }
}
