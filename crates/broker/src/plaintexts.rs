//! The plaintexts of the payloads this node sealed last (docs/erasure.md),
//! so that its own subscribers, who usually read a record moments after
//! it was appended, get them without opening the record again: opening
//! costs as much as sealing did, for every subscriber.
//!
//! It only saves the decryption. A caller asks only once it has found the
//! owner's key live, as it does before opening, so an erasure stops delivery
//! exactly as it did. An entry is matched by the record's message id and by
//! its sealed payload's very bytes (the same allocation, which the entry
//! keeps alive), never by content. A record read back from disk or from
//! Kafka is another allocation and is opened as before.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tributary_log::{MessageId, Record};

/// How many recent payloads are kept: a subscriber keeping up reads a
/// record within a few hundred records of the end of the log.
const SLOTS: usize = 1024;
/// Larger payloads are not kept: their opening costs little beside their
/// size, and the memory held stays small (at most `SLOTS` × this).
const MAX_PLAINTEXT: usize = 1024;

struct Entry {
    id: MessageId,
    sealed: Bytes,
    plaintext: Bytes,
}

/// A fixed ring of slots, one lock each (a sealing connection and a
/// delivering one rarely want the same slot at once).
pub(crate) struct RecentPlaintexts {
    slots: Box<[Mutex<Option<Entry>>]>,
}

impl RecentPlaintexts {
    pub(crate) fn new() -> RecentPlaintexts {
        RecentPlaintexts {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Keeps `plaintext` of the just-sealed `record` (whose payload is the
    /// sealed one), in place of the oldest entry of its slot.
    pub(crate) fn keep(&self, record: &Record, plaintext: Bytes) {
        if plaintext.len() > MAX_PLAINTEXT {
            return;
        }
        let entry = Entry {
            id: record.message_id,
            sealed: record.payload.clone(),
            plaintext,
        };
        *self.slot(record.message_id) = Some(entry);
    }

    /// The plaintext of `record`'s sealed payload, if this node sealed it
    /// lately.
    pub(crate) fn get(&self, record: &Record) -> Option<Bytes> {
        let slot = self.slot(record.message_id);
        let entry = slot.as_ref()?;
        let same = entry.id == record.message_id
            && entry.sealed.as_ptr() == record.payload.as_ptr()
            && entry.sealed.len() == record.payload.len();
        same.then(|| entry.plaintext.clone())
    }

    /// Forgets every plaintext (an owner was erased on this node: none of
    /// theirs stays in memory, whether or not it would still be sent).
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            *lock(slot) = None;
        }
    }

    /// The slot of `id`, locked. The low bits of an id are a per-node
    /// counter: consecutive ids, consecutive slots.
    fn slot(&self, id: MessageId) -> MutexGuard<'_, Option<Entry>> {
        lock(&self.slots[(id.0 as usize) % SLOTS])
    }
}

/// A slot holds no invariant a panic could break: a poisoned one is used.
fn lock(slot: &Mutex<Option<Entry>>) -> MutexGuard<'_, Option<Entry>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_record_sealed_here_is_found_with_its_plaintext() {
        let recent = RecentPlaintexts::new();
        let sealed = record(7, b"sealed bytes");
        recent.keep(&sealed, Bytes::from_static(b"plain"));
        assert_eq!(recent.get(&sealed).as_deref(), Some(&b"plain"[..]));
        // The log's cache hands out clones of the record: the same bytes.
        assert_eq!(recent.get(&sealed.clone()).as_deref(), Some(&b"plain"[..]));
    }

    #[test]
    fn equal_content_elsewhere_is_not_the_same_record() {
        let recent = RecentPlaintexts::new();
        let sealed = record(7, b"sealed bytes");
        recent.keep(&sealed, Bytes::from_static(b"plain"));
        // Read back from disk or Kafka: same id, same bytes, another allocation.
        assert_eq!(recent.get(&record(7, b"sealed bytes")), None);
        // Another id in the same slot, sharing the allocation: not it either.
        let other = Record {
            message_id: MessageId(7 + SLOTS as u128),
            ..sealed.clone()
        };
        assert_eq!(recent.get(&other), None);
    }

    #[test]
    fn a_newer_record_takes_the_slot_and_large_payloads_are_not_kept() {
        let recent = RecentPlaintexts::new();
        let first = record(3, b"first");
        let second = record(3 + SLOTS as u128, b"second");
        recent.keep(&first, Bytes::from_static(b"1"));
        recent.keep(&second, Bytes::from_static(b"2"));
        assert_eq!(recent.get(&first), None);
        assert_eq!(recent.get(&second).as_deref(), Some(&b"2"[..]));

        let large = record(4, b"large");
        recent.keep(&large, Bytes::from(vec![0u8; MAX_PLAINTEXT + 1]));
        assert_eq!(recent.get(&large), None);
    }

    #[test]
    fn clearing_forgets_every_plaintext() {
        let recent = RecentPlaintexts::new();
        let sealed = record(9, b"sealed");
        recent.keep(&sealed, Bytes::from_static(b"plain"));
        recent.clear();
        assert_eq!(recent.get(&sealed), None);
    }
}
