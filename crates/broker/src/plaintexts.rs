//! The plaintexts of the payloads this node sealed last (docs/erasure.md),
//! so that its own subscribers, who usually read a record moments after
//! it was appended, get them without opening the record again: opening
//! costs as much as sealing did, for every subscriber.
//!
//! An erasure stops delivery exactly as it does for an opened record. An
//! entry is kept only while the sealer's key is the owner's live one, and
//! carries the count of erasures the keyring had taken in then
//! (`Keyring::sealer_still_live`); it is handed out only while that count
//! still reads the same. The first keep after an erasure, and every erasure
//! made through this node, also wipes every entry, so no erased owner's
//! plaintext stays here.
//!
//! An entry is matched by the record's message id (unique across restarts:
//! the same id is the same message) and by where its sealed payload lies
//! and how long it is, never by content. A record read back from disk is
//! another allocation and is opened as before. Off when the log is Kafka:
//! records come back from Kafka as new allocations, so none would match.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tributary_log::{MessageId, Record};

/// How many recent payloads are kept: a subscriber keeping up reads a
/// record within a few hundred records of the end of the log.
const SLOTS: usize = 1024;
/// Larger payloads are not kept: their opening costs little beside their
/// size, and the memory held stays small (at most `SLOTS` × this).
const MAX_PLAINTEXT: usize = 1024;

/// One slot. Its buffer is reused, so keeping allocates nothing once the
/// slot has held a payload as large.
#[derive(Default)]
struct Entry {
    id: MessageId,
    /// Address and length of the sealed payload; a length of 0 (no sealed
    /// payload is that short) marks an empty slot.
    sealed_at: usize,
    sealed_len: usize,
    /// The keyring's count of erasures when the key was found live.
    live_as_of: u64,
    plaintext: Vec<u8>,
}

impl Entry {
    fn wipe(&mut self) {
        self.plaintext.fill(0);
        self.plaintext.clear();
        self.sealed_len = 0;
    }
}

/// A fixed ring of slots, one lock each (a sealing connection and a
/// delivering one rarely want the same slot at once).
pub(crate) struct RecentPlaintexts {
    slots: Box<[Mutex<Entry>]>,
    /// The count of erasures as of which every slot was last wiped.
    wiped_as_of: AtomicU64,
}

impl RecentPlaintexts {
    pub(crate) fn new() -> RecentPlaintexts {
        RecentPlaintexts {
            slots: (0..SLOTS).map(|_| Mutex::default()).collect(),
            wiped_as_of: AtomicU64::new(0),
        }
    }

    /// Keeps `plaintext` of the just-sealed `record` (whose payload is the
    /// sealed one) in place of the oldest entry of its slot; `live_as_of`
    /// is what `Keyring::sealer_still_live` returned for its sealer.
    pub(crate) fn keep(&self, record: &Record, plaintext: &[u8], live_as_of: u64) {
        if plaintext.len() > MAX_PLAINTEXT {
            return;
        }
        let wiped = self.wiped_as_of.load(Ordering::Acquire);
        if live_as_of != wiped {
            if live_as_of < wiped {
                return; // the sealer's word predates an erasure: not kept
            }
            // The first keep since an erasure (made on another node, or
            // here after the owner's retained messages were cleared).
            self.wipe();
            self.wiped_as_of.fetch_max(live_as_of, Ordering::AcqRel);
        }
        let mut entry = self.slot(record.message_id);
        entry.id = record.message_id;
        entry.sealed_at = record.payload.as_ptr() as usize;
        entry.sealed_len = record.payload.len();
        entry.live_as_of = live_as_of;
        entry.plaintext.clear();
        entry.plaintext.extend_from_slice(plaintext);
    }

    /// `use_it(plaintext)` of `record`'s sealed payload, if this node
    /// sealed it lately and the keyring's count of erasures still reads
    /// `erasures` as it did then; `None` otherwise (the caller opens it).
    pub(crate) fn with<R>(
        &self,
        record: &Record,
        erasures: u64,
        use_it: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        let entry = self.slot(record.message_id);
        let same = entry.sealed_len != 0
            && entry.id == record.message_id
            && entry.sealed_at == record.payload.as_ptr() as usize
            && entry.sealed_len == record.payload.len()
            && entry.live_as_of == erasures;
        same.then(|| use_it(&entry.plaintext))
    }

    /// Forgets every plaintext, overwriting it (an owner is being erased on
    /// this node: none of theirs stays in memory, sent or not).
    pub(crate) fn wipe(&self) {
        for slot in self.slots.iter() {
            lock(slot).wipe();
        }
    }

    /// The slot of `id`, locked. The low bits of an id are a per-node
    /// counter: consecutive ids, consecutive slots.
    fn slot(&self, id: MessageId) -> MutexGuard<'_, Entry> {
        lock(&self.slots[(id.0 as usize) % SLOTS])
    }
}

/// A slot holds no invariant a panic could break: a poisoned one is used.
fn lock(slot: &Mutex<Entry>) -> MutexGuard<'_, Entry> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(id: u128, payload: &'static [u8]) -> Record {
        Record {
            receive_time_ms: 0,
            topic: "t".into(),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
            payload: Bytes::copy_from_slice(payload),
            client_id: "c".into(),
            message_id: MessageId(id),
            owner: "ann".into(),
            device: "d".into(),
        }
    }

    fn get(recent: &RecentPlaintexts, record: &Record, erasures: u64) -> Option<Vec<u8>> {
        recent.with(record, erasures, <[u8]>::to_vec)
    }

    #[test]
    fn the_record_sealed_here_is_found_with_its_plaintext() {
        let recent = RecentPlaintexts::new();
        let sealed = record(7, b"sealed bytes");
        recent.keep(&sealed, b"plain", 0);
        assert_eq!(get(&recent, &sealed, 0).as_deref(), Some(&b"plain"[..]));
        // The log's cache hands out clones of the record: the same bytes.
        assert_eq!(
            get(&recent, &sealed.clone(), 0).as_deref(),
            Some(&b"plain"[..])
        );
    }

    #[test]
    fn equal_content_elsewhere_is_not_the_same_record() {
        let recent = RecentPlaintexts::new();
        let sealed = record(7, b"sealed bytes");
        recent.keep(&sealed, b"plain", 0);
        // Read back from disk: same id, same bytes, another allocation.
        let copy = record(7, b"sealed bytes");
        assert_eq!(get(&recent, &copy, 0), None);
        // Another id in the same slot, sharing the allocation: not it either.
        let other = Record {
            message_id: MessageId(7 + SLOTS as u128),
            ..sealed.clone()
        };
        assert_eq!(get(&recent, &other, 0), None);
    }

    #[test]
    fn a_newer_record_takes_the_slot_and_large_payloads_are_not_kept() {
        let recent = RecentPlaintexts::new();
        let first = record(3, b"first");
        let second = record(3 + SLOTS as u128, b"second");
        recent.keep(&first, b"1", 0);
        recent.keep(&second, b"2", 0);
        assert_eq!(get(&recent, &first, 0), None);
        assert_eq!(get(&recent, &second, 0).as_deref(), Some(&b"2"[..]));

        let large = record(4, b"large");
        recent.keep(&large, &[0u8; MAX_PLAINTEXT + 1], 0);
        assert_eq!(get(&recent, &large, 0), None);
    }

    #[test]
    fn an_erasure_since_hides_every_plaintext_and_the_next_keep_wipes_them() {
        let recent = RecentPlaintexts::new();
        let before = record(9, b"sealed");
        recent.keep(&before, b"plain", 0);
        // The keyring has taken in an erasure: what was kept as of 0 is
        // not handed out any more.
        assert_eq!(get(&recent, &before, 1), None);
        // The first keep as of 1 wipes every slot...
        let after = record(10, b"sealed too");
        recent.keep(&after, b"x", 1);
        assert_eq!(get(&recent, &after, 1).as_deref(), Some(&b"x"[..]));
        assert!(lock(&recent.slots[9]).plaintext.is_empty());
        assert_eq!(get(&recent, &before, 0), None);
        // ...and a sealer whose word predates the erasure keeps nothing.
        let stale = record(11, b"sealed three");
        recent.keep(&stale, b"y", 0);
        assert_eq!(get(&recent, &stale, 0), None);
        assert!(lock(&recent.slots[11]).plaintext.is_empty());
    }

    #[test]
    fn wiping_forgets_every_plaintext() {
        let recent = RecentPlaintexts::new();
        let sealed = record(9, b"sealed");
        recent.keep(&sealed, b"plain", 0);
        recent.wipe();
        assert_eq!(get(&recent, &sealed, 0), None);
        assert!(lock(&recent.slots[9]).plaintext.is_empty());
    }
}
