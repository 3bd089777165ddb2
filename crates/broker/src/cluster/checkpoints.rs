//! Where this node's local log stands against Kafka, so that a session's
//! cursor can move between nodes.
//!
//! On Kafka, each node copies the Kafka topics into its own local log
//! (`kafka_tail`), so the same message has a different local offset on
//! every node. A session's cursor leaves its node as a [`KafkaCursor`]:
//! for each Kafka partition, the offset from which the session still needs
//! records. A checkpoint pairs a local offset with the Kafka positions the
//! tail had copied when the local log reached it: every Kafka record before
//! those positions is at a lower local offset, every later one at a higher.
//!
//! Translations are conservative: a record the session still needs is
//! never skipped, and a few it had may come again (MQTT delivery is at
//! least once). A partition a checkpoint does not name is one the node had
//! copied nothing of yet, "from the very start" in both directions.
//!
//! Checkpoints are taken at most every `EVERY` and appended to
//! `DATA_DIR/kafka_checkpoints` (one JSON line each, not fsync'd: a lost
//! line only makes a translation coarser), so they survive a restart.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tributary_kafka::Position;
use tributary_log::Offset;

/// A checkpoint is taken once `EVERY` passed or `EVERY_RECORDS` were copied
/// since the last one: bounds the records a session moved to another node
/// may be sent twice.
const EVERY: Duration = Duration::from_millis(100);
const EVERY_RECORDS: usize = 64;
/// Checkpoints kept at most; beyond, every other old one is dropped.
const MAX_POINTS: usize = 20_000;

/// For each Kafka topic and partition, the offset of the first record not
/// covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaCursor(pub BTreeMap<String, BTreeMap<i32, i64>>);

impl KafkaCursor {
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    /// True when every position of `self` is at or before `other`'s (a
    /// partition `self` does not name is at the start; one `other` does
    /// not name is at the start too, so `self` must not name it).
    fn at_or_before(&self, other: &KafkaCursor) -> bool {
        self.0.iter().all(|(topic, partitions)| {
            partitions
                .iter()
                .all(|(p, offset)| other.get(topic, *p).is_some_and(|o| *offset <= o))
        })
    }

    fn set(&mut self, topic: &str, partition: i32, offset: i64) {
        self.0
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, offset);
    }

    fn advance(&mut self, position: &Position) {
        let next = position.offset + 1;
        let entry = self
            .0
            .entry(position.topic.clone())
            .or_default()
            .entry(position.partition)
            .or_insert(next);
        *entry = (*entry).max(next);
    }
}

impl Inner {
    /// Records that the local log up to `local` holds every Kafka record
    /// before `running`.
    fn checkpoint(&mut self, local: Offset) {
        self.last = Some(Instant::now());
        self.since_last = 0;
        if self
            .points
            .back()
            .is_some_and(|(l, k)| *l == local && **k == self.running)
        {
            return;
        }
        let point = Arc::new(self.running.clone());
        if let Some(file) = self.file.as_mut() {
            let line = serde_json::to_string(&Point {
                local: local.0,
                kafka: KafkaCursor::clone(&point),
            });
            if let Ok(line) = line {
                let _ = writeln!(file, "{line}");
            }
        }
        self.points.push_back((local, point));
        if self.points.len() > MAX_POINTS {
            // Coarser, not wrong: keep every other of the older half.
            let half = self.points.len() / 2;
            let mut kept = VecDeque::with_capacity(MAX_POINTS);
            for (i, p) in self.points.drain(..).enumerate() {
                if i >= half || i % 2 == 0 {
                    kept.push_back(p);
                }
            }
            self.points = kept;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Point {
    local: u64,
    kafka: KafkaCursor,
}

struct Inner {
    points: VecDeque<(Offset, Arc<KafkaCursor>)>,
    /// Where the tail stands now.
    running: KafkaCursor,
    last: Option<Instant>,
    /// Records copied since the last checkpoint.
    since_last: usize,
    /// Where the local log ended when this process started copying.
    started_at: Offset,
    file: Option<std::fs::File>,
}

pub struct Checkpoints {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl Checkpoints {
    /// Loads the checkpoints of `data_dir` that lie within the local log
    /// (`start..=end`), rewriting the file with only those.
    pub fn open(data_dir: &Path, start: Offset, end: Offset) -> Checkpoints {
        let path = data_dir.join("kafka_checkpoints");
        let mut points: VecDeque<(Offset, Arc<KafkaCursor>)> = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                // A torn last line (a crash while appending) is skipped.
                if let Ok(p) = serde_json::from_str::<Point>(line) {
                    if p.local >= start.0 && p.local <= end.0 {
                        points.push_back((Offset(p.local), Arc::new(p.kafka)));
                    }
                }
            }
        }
        let running = points
            .back()
            .map(|(_, k)| KafkaCursor::clone(k))
            .unwrap_or_default();
        // Where copying starts: what the restarted tail had copied, and
        // (filled in as their first records arrive) where each partition
        // it had not copied yet starts.
        if points.back().is_none_or(|(local, _)| *local < end) {
            points.push_back((end, Arc::new(running.clone())));
        }
        let checkpoints = Checkpoints {
            path,
            inner: Mutex::new(Inner {
                points,
                running,
                last: None,
                since_last: 0,
                started_at: end,
                file: None,
            }),
        };
        checkpoints.rewrite();
        checkpoints
    }

    fn rewrite(&self) {
        let mut inner = self.inner.lock().expect("checkpoints lock poisoned");
        let mut text = String::new();
        for (local, kafka) in &inner.points {
            let point = Point {
                local: local.0,
                kafka: KafkaCursor::clone(kafka),
            };
            if let Ok(line) = serde_json::to_string(&point) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(error = %e, "write kafka_checkpoints");
        }
        inner.file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .ok();
    }

    /// Called by the tail once a batch is durable in the local log: the
    /// messages at `positions`, of which those that `carry` a record are
    /// at dense local offsets from `first`.
    pub fn copied(&self, first: Offset, positions: &[Position], carry: &[bool]) {
        let mut inner = self.inner.lock().expect("checkpoints lock poisoned");
        let inner = &mut *inner;
        let mut next_local = first;
        for (position, carries) in positions.iter().zip(carry) {
            if inner
                .running
                .get(&position.topic, position.partition)
                .is_none()
            {
                // The first record of a partition this process copies: every
                // record before it is in the log from before the restart, or
                // was never copied here. Checkpoints taken since the start
                // can say so (they said "from the partition's start").
                for (local, kafka) in inner.points.iter_mut() {
                    if *local >= inner.started_at {
                        Arc::make_mut(kafka).set(
                            &position.topic,
                            position.partition,
                            position.offset,
                        );
                    }
                }
            }
            inner.running.advance(position);
            if *carries {
                next_local = Offset(next_local.0 + 1);
                inner.since_last += 1;
            }
            if inner.since_last >= EVERY_RECORDS {
                inner.checkpoint(next_local);
            }
        }
        if inner.last.is_none_or(|last| Instant::now() - last >= EVERY) {
            inner.checkpoint(next_local);
        }
    }

    /// The Kafka positions from which a session whose local cursor is
    /// `local` still needs records; `None` when no checkpoint is that old
    /// (the session then needs everything the next node has).
    pub fn to_kafka(&self, local: Offset) -> Option<KafkaCursor> {
        let inner = self.inner.lock().expect("checkpoints lock poisoned");
        let i = inner.points.partition_point(|(l, _)| *l <= local);
        (i > 0).then(|| KafkaCursor::clone(&inner.points[i - 1].1))
    }

    /// The local offset from which this node has every record at or after
    /// `cursor` (`None`: from the start of the local log).
    pub fn to_local(&self, cursor: Option<&KafkaCursor>) -> Option<Offset> {
        let cursor = cursor?;
        let inner = self.inner.lock().expect("checkpoints lock poisoned");
        inner
            .points
            .iter()
            .rev()
            .find(|(_, kafka)| kafka.at_or_before(cursor))
            .map(|(local, _)| *local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> Position {
        Position {
            topic: "t".into(),
            partition,
            offset,
        }
    }

    fn cursor(pairs: &[(i32, i64)]) -> KafkaCursor {
        let mut c = KafkaCursor::default();
        for (p, o) in pairs {
            c.0.entry("t".into()).or_default().insert(*p, *o);
        }
        c
    }

    /// Copies a batch that ends at `local_end` and checkpoints its end (as
    /// if time had passed since the last checkpoint).
    fn copy(points: &Checkpoints, local_end: u64, positions: &[Position]) {
        points.inner.lock().expect("lock").last = None;
        let first = local_end - positions.len() as u64;
        points.copied(Offset(first), positions, &vec![true; positions.len()]);
    }

    #[test]
    fn a_cursor_moves_to_another_node_without_skipping_a_record() {
        let dir = tempfile::tempdir().expect("dir");
        // Node A copied p0: 0..3 to local 0..3, then p1: 0..2 to 3..5.
        let a = Checkpoints::open(dir.path(), Offset(0), Offset(0));
        copy(&a, 3, &[at(0, 0), at(0, 1), at(0, 2)]);
        copy(&a, 5, &[at(1, 0), at(1, 1)]);
        // A session at local 4 on A has all of p0 and maybe none of p1
        // (p1 started at 0: the checkpoint at 3 learnt it from p1's first record).
        assert_eq!(a.to_kafka(Offset(4)), Some(cursor(&[(0, 3), (1, 0)])));
        assert_eq!(a.to_kafka(Offset(2)), Some(cursor(&[(0, 0), (1, 0)])));

        // Node B copied p1 first (local 0..2), then p0 (2..5).
        let dir_b = tempfile::tempdir().expect("dir");
        let b = Checkpoints::open(dir_b.path(), Offset(0), Offset(0));
        copy(&b, 2, &[at(1, 0), at(1, 1)]);
        copy(&b, 5, &[at(0, 0), at(0, 1), at(0, 2)]);
        // B has p1 from local 0 on: the session needs all of it.
        assert_eq!(
            b.to_local(Some(&cursor(&[(0, 3), (1, 0)]))),
            Some(Offset(0))
        );
        // Everything copied: from B's end.
        assert_eq!(
            b.to_local(Some(&cursor(&[(0, 3), (1, 2)]))),
            Some(Offset(5))
        );
        assert_eq!(
            b.to_local(Some(&cursor(&[(0, 2), (1, 2)]))),
            Some(Offset(2))
        );
        // A cursor that names no partition B has checkpointed: B's start.
        assert_eq!(b.to_local(Some(&cursor(&[(0, 3)]))), None);
    }

    #[test]
    fn a_long_batch_is_checkpointed_within() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Checkpoints::open(dir.path(), Offset(0), Offset(0));
        let batch: Vec<Position> = (0..600).map(|o| at(0, o)).collect();
        copy(&a, 600, &batch);
        let every = EVERY_RECORDS as i64;
        assert_eq!(
            a.to_kafka(Offset(300)),
            Some(cursor(&[(0, 300 / every * every)]))
        );
        assert_eq!(
            a.to_kafka(Offset(599)),
            Some(cursor(&[(0, 599 / every * every)]))
        );
        // The batch's last records wait for the next checkpoint.
        assert_eq!(
            a.to_kafka(Offset(600)),
            Some(cursor(&[(0, 600 / every * every)]))
        );
    }

    #[test]
    fn checkpoints_survive_a_restart_within_the_log() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Checkpoints::open(dir.path(), Offset(0), Offset(0));
        copy(&a, 3, &[at(0, 0), at(0, 1), at(0, 2)]);
        copy(&a, 9, &[at(0, 3)]);
        drop(a);
        // The log now ends at 5 (say the tail beyond it was lost): the
        // checkpoint at 9 goes.
        let again = Checkpoints::open(dir.path(), Offset(0), Offset(5));
        assert_eq!(again.to_kafka(Offset(4)), Some(cursor(&[(0, 3)])));
        // Copying resumes at the log's end: a checkpoint says so from there.
        assert_eq!(again.to_kafka(Offset(9)), Some(cursor(&[(0, 3)])));
        copy(&again, 7, &[at(0, 3), at(1, 0)]);
        assert_eq!(again.to_kafka(Offset(5)), Some(cursor(&[(0, 3), (1, 0)])));
        assert_eq!(again.to_kafka(Offset(7)), Some(cursor(&[(0, 4), (1, 1)])));
    }
}
