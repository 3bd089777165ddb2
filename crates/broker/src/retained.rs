//! Retained messages: the last retained message per topic.
//!
//! The map is a view of the log. Connections apply a retained PUBLISH as soon
//! as it is durable (so a subscriber that subscribes right after the PUBACK
//! sees it), and the retained consumer applies every retained record in log
//! order and snapshots the map; both apply an entry only if its offset is
//! newer than what the map holds, so the two paths never undo each other.
//! After a restart the map is the snapshot plus the log replayed from the
//! snapshot's offset.
//!
//! Each owner's retained messages are bounded in count and bytes (topic
//! plus payload; `limits.max_retained_per_owner`,
//! `limits.max_retained_bytes_per_owner`), so that one owner cannot fill
//! the node's memory and snapshot (principle 7). The map keeps each
//! owner's usage beside the topics; [`Retained::admits`] checks a retained
//! PUBLISH against it when the PUBLISH arrives. Publishes in flight at the
//! same time are each checked against what was retained before them, so
//! an owner can overshoot by what one burst carries, never more.
//!
//! Snapshot layout (all integers big-endian):
//!
//! ```text
//! magic "TRRS" | version u8 = 1 | applied_up_to u64 | count u32 |
//! count × ( offset u64 | cleared u8 | [record, when cleared = 0] )
//! record = receive_time_ms u64 | qos u8 | message_id u128 |
//!          topic, properties, payload, client_id, owner, device: each u32 length + bytes
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tributary_log::{MessageId, Offset, Record};

/// The snapshot's offset of an entry seeded from the cluster's retained table.
const SEEDED: u64 = u64::MAX;

/// The retained message of one topic, or the tombstone an empty retained
/// payload leaves (kept so an older record replayed later cannot revive it).
#[derive(Debug, Clone)]
struct Entry {
    /// The local log offset it was applied at; `None` for an entry seeded
    /// from the cluster's retained table, older than every record of the
    /// local log (in the snapshot: `u64::MAX`).
    offset: Option<Offset>,
    record: Option<Arc<Record>>,
}

#[derive(Debug, Default)]
pub struct Retained {
    topics: Mutex<Topics>,
}

/// The map and, kept in step with it, what each owner has in it.
#[derive(Debug, Default)]
struct Topics {
    entries: HashMap<String, Entry>,
    /// By [`quota_key`]; owners with nothing retained are absent.
    usage: HashMap<String, RetainedUsage>,
}

/// What one owner has retained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetainedUsage {
    pub messages: u64,
    /// Topic plus payload bytes.
    pub bytes: u64,
}

/// The retained messages of an owner's erasure: every one the owner's
/// devices or the owner published, or only one device's (what it
/// published, and what was published to its topics), received in a time
/// range. A retained message is a whole payload with no single measurement
/// time, so its receive time stands for it.
#[derive(Debug, Clone)]
pub struct RetainedScope {
    pub owner: String,
    pub device: Option<String>,
    /// Receive time, inclusive.
    pub from_ms: i64,
    /// Receive time, exclusive.
    pub to_ms: i64,
}

impl RetainedScope {
    fn covers(&self, record: &Record) -> bool {
        let received = i64::try_from(record.receive_time_ms).unwrap_or(i64::MAX);
        record.owner == self.owner
            && (self.from_ms..self.to_ms).contains(&received)
            && self.device.as_deref().is_none_or(|device| {
                record.device == device || device_of_topic(&record.topic) == Some(device)
            })
    }
}

/// The device a `tributary/v1/{device}/...` topic belongs to.
fn device_of_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("tributary/v1/")?;
    rest.split('/').next().filter(|d| !d.is_empty())
}

/// Whose quota a retained record counts against: the owner whose data or
/// command it is, else the service or admin that sent it (account names
/// share one namespace, so these never collide). Anonymous clients
/// (loopback only) are not bounded, as for the rate limits.
fn quota_key(record: &Record) -> Option<&str> {
    if !record.owner.is_empty() {
        return Some(&record.owner);
    }
    let rest = record
        .client_id
        .strip_prefix("s:")
        .or_else(|| record.client_id.strip_prefix("a:"))?;
    rest.split_once(':').map(|(name, _)| name)
}

fn size(record: &Record) -> u64 {
    (record.topic.len() + record.payload.len()) as u64
}

impl Topics {
    fn count(&mut self, record: &Record, add: bool) {
        let Some(key) = quota_key(record) else {
            return;
        };
        let usage = self.usage.entry(key.to_owned()).or_default();
        if add {
            usage.messages += 1;
            usage.bytes += size(record);
        } else {
            usage.messages = usage.messages.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(size(record));
            if usage.messages == 0 {
                self.usage.remove(key);
            }
        }
    }

    fn insert(&mut self, topic: String, entry: Entry) {
        if let Some(new) = &entry.record {
            self.count(new, true);
        }
        if let Some(old) = self.entries.insert(topic, entry).and_then(|e| e.record) {
            self.count(&old, false);
        }
    }
}

impl Retained {
    /// Applies a durable retained record at `offset`; an empty payload clears the topic.
    pub fn apply(&self, offset: Offset, record: &Arc<Record>) {
        let mut topics = self.topics.lock().expect("retained lock poisoned");
        if topics
            .entries
            .get(&record.topic)
            .is_some_and(|e| e.offset.is_some_and(|o| o >= offset))
        {
            return;
        }
        let value = (!record.payload.is_empty()).then(|| record.clone());
        topics.insert(
            record.topic.clone(),
            Entry {
                offset: Some(offset),
                record: value,
            },
        );
    }

    /// Puts a retained message from the cluster's retained table (a new
    /// node's start) where the map has nothing for its topic: any record
    /// of the local log replaces it.
    pub fn seed(&self, record: Arc<Record>) {
        let mut topics = self.topics.lock().expect("retained lock poisoned");
        if record.payload.is_empty() || topics.entries.contains_key(&record.topic) {
            return;
        }
        topics.insert(
            record.topic.clone(),
            Entry {
                offset: None,
                record: Some(record),
            },
        );
    }

    /// Whether retaining `record` keeps its owner within `max_messages`
    /// and `max_bytes` (0: no limit), counting the message it would
    /// replace on its topic as gone. Clearing a topic is always admitted.
    pub fn admits(&self, record: &Record, max_messages: u32, max_bytes: u64) -> bool {
        if record.payload.is_empty() {
            return true;
        }
        let Some(key) = quota_key(record) else {
            return true;
        };
        let topics = self.topics.lock().expect("retained lock poisoned");
        let mut usage = topics.usage.get(key).copied().unwrap_or_default();
        if let Some(old) = topics
            .entries
            .get(&record.topic)
            .and_then(|e| e.record.as_deref())
            .filter(|old| quota_key(old) == Some(key))
        {
            usage.messages = usage.messages.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(size(old));
        }
        (max_messages == 0 || usage.messages < u64::from(max_messages))
            && (max_bytes == 0 || usage.bytes + size(record) <= max_bytes)
    }

    /// What `owner` (or a service or admin by its name) has retained.
    pub fn usage(&self, owner: &str) -> RetainedUsage {
        let topics = self.topics.lock().expect("retained lock poisoned");
        topics.usage.get(owner).copied().unwrap_or_default()
    }

    /// Retained messages whose topic matches `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Record>> {
        let topics = self.topics.lock().expect("retained lock poisoned");
        topics
            .entries
            .iter()
            .filter(|(topic, _)| tributary_mqtt::topic::matches(filter, topic))
            .filter_map(|(_, e)| e.record.clone())
            .collect()
    }

    /// The topics whose retained message is `scope`'s: what an erasure
    /// clears (`erasure.rs`).
    pub fn topics_of(&self, scope: &RetainedScope) -> Vec<String> {
        let topics = self.topics.lock().expect("retained lock poisoned");
        topics
            .entries
            .iter()
            .filter(|(_, e)| e.record.as_deref().is_some_and(|r| scope.covers(r)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Number of topics with a retained message.
    pub fn len(&self) -> usize {
        self.topics
            .lock()
            .expect("retained lock poisoned")
            .entries
            .values()
            .filter(|e| e.record.is_some())
            .count()
    }

    fn encode(&self, applied_up_to: Offset) -> Bytes {
        let topics = self.topics.lock().expect("retained lock poisoned");
        let mut out = BytesMut::new();
        out.put_slice(b"TRRS");
        out.put_u8(1);
        out.put_u64(applied_up_to.0);
        out.put_u32(topics.entries.len() as u32);
        for (topic, entry) in topics.entries.iter() {
            out.put_u64(entry.offset.map_or(SEEDED, |o| o.0));
            match &entry.record {
                None => {
                    out.put_u8(1);
                    put_field(&mut out, topic.as_bytes());
                }
                Some(r) => {
                    out.put_u8(0);
                    out.put_u64(r.receive_time_ms);
                    out.put_u8(r.qos);
                    out.put_u128(r.message_id.0);
                    for field in [
                        r.topic.as_bytes(),
                        &r.properties,
                        &r.payload,
                        r.client_id.as_bytes(),
                    ] {
                        put_field(&mut out, field);
                    }
                    put_field(&mut out, r.owner.as_bytes());
                    put_field(&mut out, r.device.as_bytes());
                }
            }
        }
        out.freeze()
    }

    fn decode(mut buf: &[u8]) -> Result<(Retained, Offset), &'static str> {
        if buf.len() < 17 || &buf[..4] != b"TRRS" || buf[4] != 1 {
            return Err("not a retained snapshot of version 1");
        }
        buf.advance(5);
        let applied = Offset(buf.get_u64());
        let count = buf.get_u32();
        let mut topics = Topics::default();
        for _ in 0..count {
            need(buf, 9)?;
            let offset = Some(buf.get_u64()).filter(|o| *o != SEEDED).map(Offset);
            let cleared = buf.get_u8() == 1;
            let record = if cleared {
                None
            } else {
                need(buf, 25)?;
                let receive_time_ms = buf.get_u64();
                let qos = buf.get_u8();
                let message_id = MessageId(buf.get_u128());
                let topic = get_string(&mut buf)?;
                let properties = get_field(&mut buf)?;
                let payload = get_field(&mut buf)?;
                let client_id = get_string(&mut buf)?;
                let owner = get_string(&mut buf)?;
                let device = get_string(&mut buf)?;
                Some(Arc::new(Record {
                    receive_time_ms,
                    topic,
                    qos,
                    retain: true,
                    properties,
                    payload,
                    client_id,
                    message_id,
                    owner,
                    device,
                }))
            };
            let topic = match &record {
                Some(r) => r.topic.clone(),
                None => get_string(&mut buf)?,
            };
            topics.insert(topic, Entry { offset, record });
        }
        Ok((
            Retained {
                topics: Mutex::new(topics),
            },
            applied,
        ))
    }
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    out.put_u32(field.len() as u32);
    out.put_slice(field);
}

fn need(buf: &[u8], n: usize) -> Result<(), &'static str> {
    if buf.len() < n {
        Err("truncated retained snapshot")
    } else {
        Ok(())
    }
}

fn get_field(buf: &mut &[u8]) -> Result<Bytes, &'static str> {
    need(buf, 4)?;
    let len = buf.get_u32() as usize;
    need(buf, len)?;
    let field = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(field)
}

fn get_string(buf: &mut &[u8]) -> Result<String, &'static str> {
    String::from_utf8(get_field(buf)?.to_vec()).map_err(|_| "invalid UTF-8 in retained snapshot")
}

/// The snapshot file of the retained map in the data dir.
pub struct RetainedSnapshot {
    path: PathBuf,
}

impl RetainedSnapshot {
    pub fn new(data_dir: &Path) -> Self {
        RetainedSnapshot {
            path: data_dir.join("retained.snapshot"),
        }
    }

    /// Loads the snapshot, or an empty map applied up to offset 0 when there is none.
    pub fn load(&self) -> std::io::Result<(Retained, Offset)> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Retained::decode(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Retained::default(), Offset(0)))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the map atomically (temporary file, fsync, rename).
    pub fn save(&self, retained: &Retained, applied_up_to: Offset) -> std::io::Result<()> {
        write_atomically(&self.path, &retained.encode(applied_up_to))
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, payload: &'static [u8]) -> Arc<Record> {
        Arc::new(Record {
            topic: topic.into(),
            retain: true,
            qos: 1,
            payload: Bytes::from_static(payload),
            client_id: "c".into(),
            message_id: MessageId(7),
            ..Record::default()
        })
    }

    #[test]
    fn older_record_does_not_replace_newer_one() {
        let r = Retained::default();
        r.apply(Offset(5), &record("a", b"new"));
        r.apply(Offset(3), &record("a", b"old"));
        assert_eq!(r.matching("a")[0].payload, Bytes::from_static(b"new"));
    }

    #[test]
    fn empty_payload_clears_and_stays_cleared() {
        let r = Retained::default();
        r.apply(Offset(1), &record("a", b"x"));
        r.apply(Offset(2), &record("a", b""));
        r.apply(Offset(1), &record("a", b"x"));
        assert!(r.matching("#").is_empty());
    }

    fn owned(owner: &str, topic: &str, payload: &'static [u8]) -> Arc<Record> {
        let mut record = (*record(topic, payload)).clone();
        record.owner = owner.into();
        Arc::new(record)
    }

    #[test]
    fn an_erasure_covers_its_owner_its_device_and_its_time_range() {
        let r = Retained::default();
        let mut at = 0;
        let mut put = |owner: &str, device: &str, topic: &str, received: u64| {
            let mut record = (*record(topic, b"x")).clone();
            (record.owner, record.device) = (owner.into(), device.into());
            record.receive_time_ms = received;
            at += 1;
            r.apply(Offset(at), &Arc::new(record));
        };
        put("ann", "w1", "tributary/v1/w1/senml", 1_000);
        put("ann", "w2", "tributary/v1/w2/senml", 2_000);
        // The owner's command to w1: no device on the record, w1 in the topic.
        put("ann", "", "tributary/v1/w1/commands/set", 3_000);
        put("bob", "b1", "tributary/v1/b1/senml", 1_000);
        let topics = |device: Option<&str>, from_ms: i64, to_ms: i64| {
            let mut t = r.topics_of(&RetainedScope {
                owner: "ann".into(),
                device: device.map(str::to_owned),
                from_ms,
                to_ms,
            });
            t.sort();
            t
        };
        assert_eq!(
            topics(None, i64::MIN, i64::MAX),
            [
                "tributary/v1/w1/commands/set",
                "tributary/v1/w1/senml",
                "tributary/v1/w2/senml"
            ]
        );
        assert_eq!(
            topics(Some("w1"), i64::MIN, i64::MAX),
            ["tributary/v1/w1/commands/set", "tributary/v1/w1/senml"]
        );
        assert_eq!(topics(None, 1_500, 3_000), ["tributary/v1/w2/senml"]);
        assert!(topics(Some("w9"), i64::MIN, i64::MAX).is_empty());
    }

    #[test]
    fn usage_follows_replacements_and_clears_per_owner() {
        let r = Retained::default();
        r.apply(Offset(1), &owned("ann", "t/1", b"12345"));
        r.apply(Offset(2), &owned("ann", "t/2", b"12345"));
        r.apply(Offset(3), &owned("bob", "t/3", b"1"));
        assert_eq!(
            r.usage("ann"),
            RetainedUsage {
                messages: 2,
                bytes: 16
            }
        );
        // Replacing a topic's message counts once; clearing it frees it.
        r.apply(Offset(4), &owned("ann", "t/1", b"1"));
        assert_eq!(
            r.usage("ann"),
            RetainedUsage {
                messages: 2,
                bytes: 12
            }
        );
        r.apply(Offset(5), &owned("ann", "t/2", b""));
        assert_eq!(
            r.usage("ann"),
            RetainedUsage {
                messages: 1,
                bytes: 4
            }
        );
        assert_eq!(
            r.usage("bob"),
            RetainedUsage {
                messages: 1,
                bytes: 4
            }
        );
    }

    #[test]
    fn admits_within_the_bounds_and_counts_a_replaced_message_as_gone() {
        let r = Retained::default();
        r.apply(Offset(1), &owned("ann", "t/1", b"12345"));
        r.apply(Offset(2), &owned("ann", "t/2", b"12345"));
        // Two messages at most: a third topic is refused, a replacement not.
        assert!(!r.admits(&owned("ann", "t/3", b"x"), 2, 0));
        assert!(r.admits(&owned("ann", "t/2", b"x"), 2, 0));
        assert!(r.admits(&owned("bob", "t/3", b"x"), 2, 0), "per owner");
        assert!(r.admits(&owned("ann", "t/3", b""), 2, 0), "clearing");
        // 20 bytes at most: ann holds 16.
        assert!(r.admits(&owned("ann", "t/3", b"1"), 0, 20));
        assert!(!r.admits(&owned("ann", "t/3", b"12"), 0, 20));
        // Anonymous records (no owner, no service or admin) are not bounded.
        assert!(r.admits(&record("t/4", b"x"), 1, 1));
    }

    #[test]
    fn snapshot_round_trip_keeps_records_and_tombstones() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let r = Retained::default();
        r.apply(Offset(1), &record("a/b", b"one"));
        r.apply(Offset(2), &record("c", b"two"));
        r.apply(Offset(3), &record("c", b""));
        let snap = RetainedSnapshot::new(dir.path());
        snap.save(&r, Offset(4))?;
        let (loaded, applied) = snap.load()?;
        assert_eq!(applied, Offset(4));
        assert_eq!(loaded.matching("#"), vec![record("a/b", b"one")]);
        loaded.apply(Offset(2), &record("c", b"two"));
        assert_eq!(loaded.len(), 1);
        Ok(())
    }

    #[test]
    fn usage_is_rebuilt_from_a_snapshot() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let r = Retained::default();
        r.apply(Offset(1), &owned("ann", "t/1", b"12345"));
        r.apply(Offset(2), &owned("ann", "t/2", b""));
        let snap = RetainedSnapshot::new(dir.path());
        snap.save(&r, Offset(3))?;
        let (loaded, _) = snap.load()?;
        assert_eq!(
            loaded.usage("ann"),
            RetainedUsage {
                messages: 1,
                bytes: 8
            }
        );
        Ok(())
    }
}
