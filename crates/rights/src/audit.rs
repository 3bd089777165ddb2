//! The audit log's entries, and the aggregation of MQTT deliveries into
//! them (docs/consent.md, "The audit log").
//!
//! Every read of an owner's data by anyone but the owner is an entry: who
//! (a service or an admin), through what (MQTT or the API), whose data
//! (owner, device), under which consent, when. MQTT deliveries are many, so
//! a node counts them in an [`Aggregator`]: one entry per reader's session,
//! owner, device, consent and minute, with a count and the first and last
//! delivery time. A writer task takes what was counted about once a second
//! and appends it to the store; what it could not write goes back in
//! ([`Aggregator::restore`]), so no delivery goes unrecorded. The
//! aggregator holds at most `max_keys` entries: when the writer falls that
//! far behind, [`Aggregator::is_full`] says so and deliveries to readers
//! that are audited wait (they stay in the log) until it has room again.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The width of one aggregated MQTT entry.
pub const PERIOD_MS: i64 = 60_000;

/// Who read, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Service,
    Admin,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Service => "service",
            ActorKind::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<ActorKind> {
        match s {
            "service" => Some(ActorKind::Service),
            "admin" => Some(ActorKind::Admin),
            _ => None,
        }
    }
}

/// One audit entry, as stored and as the owner reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Whose data was read.
    pub owner: String,
    pub actor_kind: ActorKind,
    /// The service's or admin's name.
    pub actor: String,
    /// `mqtt` or `api`.
    pub channel: String,
    /// MQTT: the reader's session key; API: the request path.
    pub detail: String,
    /// The device whose data it was; empty when a read spanned devices.
    pub device: String,
    /// The consent it was read under; `None` for an admin.
    pub consent_id: Option<String>,
    /// How many messages (MQTT) or measurements (API) were read.
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    owner: String,
    actor_kind: ActorKind,
    actor: String,
    detail: String,
    device: String,
    consent_id: Option<String>,
    period: i64,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

/// One MQTT delivery to count.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub owner: &'a str,
    pub actor_kind: ActorKind,
    pub actor: &'a str,
    pub session: &'a str,
    pub device: &'a str,
    pub consent_id: Option<&'a str>,
    pub at_ms: i64,
}

/// MQTT deliveries counted per entry, waiting for the writer (module docs).
#[derive(Debug)]
pub struct Aggregator {
    tallies: Mutex<HashMap<Key, Tally>>,
    max_keys: usize,
}

impl Aggregator {
    pub fn new(max_keys: usize) -> Aggregator {
        Aggregator {
            tallies: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// True when the writer is `max_keys` entries behind: audited
    /// deliveries wait. A delivery already decided may still be counted,
    /// so the table can pass the bound by one entry per delivering
    /// connection, never more.
    pub fn is_full(&self) -> bool {
        self.lock().len() >= self.max_keys
    }

    pub fn record(&self, d: Delivery<'_>) {
        let key = Key {
            owner: d.owner.into(),
            actor_kind: d.actor_kind,
            actor: d.actor.into(),
            detail: d.session.into(),
            device: d.device.into(),
            consent_id: d.consent_id.map(str::to_owned),
            period: d.at_ms.div_euclid(PERIOD_MS),
        };
        let mut tallies = self.lock();
        let tally = tallies.entry(key).or_insert(Tally {
            count: 0,
            first_ms: d.at_ms,
            last_ms: d.at_ms,
        });
        tally.count += 1;
        tally.first_ms = tally.first_ms.min(d.at_ms);
        tally.last_ms = tally.last_ms.max(d.at_ms);
    }

    /// Everything counted so far, as entries; the aggregator is empty after.
    pub fn take(&self) -> Vec<Entry> {
        let tallies = std::mem::take(&mut *self.lock());
        tallies
            .into_iter()
            .map(|(k, t)| Entry {
                owner: k.owner,
                actor_kind: k.actor_kind,
                actor: k.actor,
                channel: "mqtt".into(),
                detail: k.detail,
                device: k.device,
                consent_id: k.consent_id,
                count: t.count,
                first_ms: t.first_ms,
                last_ms: t.last_ms,
            })
            .collect()
    }

    /// Puts back entries [`Aggregator::take`] gave that could not be
    /// written, merged with what was counted since.
    pub fn restore(&self, entries: Vec<Entry>) {
        let mut tallies = self.lock();
        for e in entries {
            let key = Key {
                period: e.first_ms.div_euclid(PERIOD_MS),
                owner: e.owner,
                actor_kind: e.actor_kind,
                actor: e.actor,
                detail: e.detail,
                device: e.device,
                consent_id: e.consent_id,
            };
            let tally = tallies.entry(key).or_insert(Tally {
                count: 0,
                first_ms: e.first_ms,
                last_ms: e.last_ms,
            });
            tally.count += e.count;
            tally.first_ms = tally.first_ms.min(e.first_ms);
            tally.last_ms = tally.last_ms.max(e.last_ms);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Tally>> {
        self.tallies.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(owner: &str, at_ms: i64) -> Delivery<'_> {
        Delivery {
            owner,
            actor_kind: ActorKind::Service,
            actor: "study",
            session: "s:study:c1",
            device: "w1",
            consent_id: Some("c1"),
            at_ms,
        }
    }

    #[test]
    fn deliveries_of_one_minute_are_one_entry() {
        let a = Aggregator::new(10);
        a.record(delivery("ann", 60_000));
        a.record(delivery("ann", 60_500));
        a.record(delivery("ann", 119_999));
        a.record(delivery("ann", 120_000));
        a.record(delivery("bob", 60_000));
        let mut entries = a.take();
        entries.sort_by_key(|e| (e.owner.clone(), e.first_ms));
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[0].count, entries[0].first_ms, entries[0].last_ms),
            (3, 60_000, 119_999)
        );
        assert_eq!(entries[1].count, 1);
        assert_eq!(entries[2].owner, "bob");
        assert!(a.take().is_empty());
    }

    #[test]
    fn full_means_the_writer_is_behind_and_restore_loses_nothing() {
        let a = Aggregator::new(2);
        a.record(delivery("ann", 0));
        assert!(!a.is_full());
        a.record(delivery("bob", 0));
        assert!(a.is_full());
        let taken = a.take();
        assert!(!a.is_full());
        a.record(delivery("ann", 10));
        a.restore(taken);
        let entries = a.take();
        let total: u64 = entries.iter().map(|e| e.count).sum();
        assert_eq!(total, 3);
        let ann = entries.iter().find(|e| e.owner == "ann").unwrap();
        assert_eq!((ann.count, ann.first_ms, ann.last_ms), (2, 0, 10));
    }
}
