//! The erasures every sink must respect when it reads the log again: a
//! node-wide, in-memory copy of the store's tombstones, refreshed by
//! [`follow`] (bounded: at most `MAX_ERASURES_PER_OWNER` per owner).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_rights::owner_keys::Keyring;
use tributary_store::erasure::{Erasure, Tombstone};
use tributary_store::{ActivitySegment, DeadLetter, Row, Store};

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

#[derive(Debug, Default)]
struct Shared {
    known: RwLock<Known>,
    /// Whether any erasure is known: what every delivered record asks
    /// first (`Erasures::covers`), without a lock.
    any: AtomicBool,
}

/// The erasures known to this node; clones share them. Empty by default
/// (tests and tools without a store).
#[derive(Debug, Clone, Default)]
pub struct Tombstones(Arc<Shared>);

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
        self.any_erasure(owner, |e| e.covers(owner, device, time_ms))
    }

    /// Whether one of `owner`'s erasures satisfies `test`.
    fn any_erasure(&self, owner: &str, test: impl Fn(&Erasure) -> bool) -> bool {
        let known = self.0.known.read().unwrap_or_else(|p| p.into_inner());
        known
            .by_owner
            .get(owner)
            .is_some_and(|all| all.iter().any(test))
    }

    /// Whether `owner` has any erasure (the fast path: most have none).
    pub fn any_for(&self, owner: &str) -> bool {
        if !self.0.any.load(Ordering::Acquire) {
            return false;
        }
        let known = self.0.known.read().unwrap_or_else(|p| p.into_inner());
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

    /// Drops the activity segments an erasure overlaps (as the store's
    /// erasure deleted them); returns how many.
    pub fn retain_segments(&self, segments: &mut Vec<ActivitySegment>) -> usize {
        let before = segments.len();
        if segments.iter().any(|s| self.any_for(&s.owner)) {
            segments.retain(|s| {
                !self.any_erasure(&s.owner, |e| {
                    e.overlaps(&s.owner, &s.device, s.start_ms, s.end_ms)
                })
            });
        }
        before - segments.len()
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
            let last = self.0.known.read().unwrap_or_else(|p| p.into_inner()).last;
            let page = store.tombstones(last, PAGE).await?;
            let full = page.len() == PAGE;
            {
                let mut known = self.0.known.write().unwrap_or_else(|p| p.into_inner());
                if !page.is_empty() {
                    self.0.any.store(true, Ordering::Release);
                }
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

/// What the broker and the live feed ask before sending a record again.
impl tributary_rights::erased::Erasures for Tombstones {
    fn covers(&self, owner: &str, device: &str, time_ms: i64) -> bool {
        self.any_for(owner) && Tombstones::covers(self, owner, device, time_ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(device: &str, start_ms: i64, end_ms: i64) -> ActivitySegment {
        ActivitySegment {
            owner: "ann".into(),
            device: device.into(),
            start_ms,
            end_ms,
            activity: "walking".into(),
            confidence: 0.9,
            windows: 3,
            model_version: "m".into(),
        }
    }

    #[tokio::test]
    async fn segments_an_erasure_overlaps_are_dropped_and_others_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(None, dir.path()).await.expect("store");
        let erasure = Erasure {
            owner: "ann".into(),
            device: Some("w1".into()),
            from_ms: 1_000,
            to_ms: 2_000,
        };
        store.erase(&erasure).await.expect("erase");
        let tombstones = Tombstones::default();
        assert_eq!(tombstones.refresh(&store).await.expect("refresh").len(), 1);
        let mut segments = vec![
            segment("w1", 500, 1_000),   // ends where the range starts: kept
            segment("w1", 500, 1_001),   // overlaps its start
            segment("w1", 1_999, 3_000), // overlaps its end
            segment("w2", 1_200, 1_800), // another device
            segment("w1", 2_000, 2_500), // starts where the range ends: kept
        ];
        assert_eq!(tombstones.retain_segments(&mut segments), 2);
        let kept: Vec<_> = segments
            .iter()
            .map(|s| (s.device.as_str(), s.start_ms))
            .collect();
        assert_eq!(kept, [("w1", 500), ("w2", 1_200), ("w1", 2_000)]);
    }

    #[tokio::test]
    async fn delivery_asks_the_same_tombstones_and_nothing_is_covered_before_any() {
        use tributary_rights::erased::Erasures;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(None, dir.path()).await.expect("store");
        let tombstones = Tombstones::default();
        let erasures: &dyn Erasures = &tombstones;
        assert!(!erasures.covers("ann", "w1", 1_500), "none known yet");
        store
            .erase(&Erasure {
                owner: "ann".into(),
                device: Some("w1".into()),
                from_ms: 1_000,
                to_ms: 2_000,
            })
            .await
            .expect("erase");
        tombstones.refresh(&store).await.expect("refresh");
        assert!(erasures.covers("ann", "w1", 1_500));
        assert!(
            !erasures.covers("ann", "w1", 2_000),
            "the range ends before to_ms"
        );
        assert!(!erasures.covers("ann", "w2", 1_500), "another device");
        assert!(!erasures.covers("bob", "w1", 1_500), "another owner");
    }
}
