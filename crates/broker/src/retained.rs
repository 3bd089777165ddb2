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

/// The retained message of one topic, or the tombstone an empty retained
/// payload leaves (kept so an older record replayed later cannot revive it).
#[derive(Debug, Clone)]
struct Entry {
    offset: Offset,
    record: Option<Arc<Record>>,
}

#[derive(Debug, Default)]
pub struct Retained {
    topics: Mutex<HashMap<String, Entry>>,
}

impl Retained {
    /// Applies a durable retained record at `offset`; an empty payload clears the topic.
    pub fn apply(&self, offset: Offset, record: &Arc<Record>) {
        let mut topics = self.topics.lock().expect("retained lock poisoned");
        if topics
            .get(&record.topic)
            .is_some_and(|e| e.offset >= offset)
        {
            return;
        }
        let value = (!record.payload.is_empty()).then(|| record.clone());
        topics.insert(
            record.topic.clone(),
            Entry {
                offset,
                record: value,
            },
        );
    }

    /// Retained messages whose topic matches `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Record>> {
        let topics = self.topics.lock().expect("retained lock poisoned");
        topics
            .iter()
            .filter(|(topic, _)| tributary_mqtt::topic::matches(filter, topic))
            .filter_map(|(_, e)| e.record.clone())
            .collect()
    }

    /// Number of topics with a retained message.
    pub fn len(&self) -> usize {
        self.topics
            .lock()
            .expect("retained lock poisoned")
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
        out.put_u32(topics.len() as u32);
        for (topic, entry) in topics.iter() {
            out.put_u64(entry.offset.0);
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
        let mut topics = HashMap::new();
        for _ in 0..count {
            need(buf, 9)?;
            let offset = Offset(buf.get_u64());
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
}
