//! Committed consumer offsets: kept in memory (a commit is a map insert),
//! persisted in batches by the writer thread into an append-only journal.
//!
//! # Journal layout (`consumers.journal`, little-endian)
//!
//! ```text
//! entry := len u32 | crc u32 | kind u8 | next u64 | name (len - 9 bytes, UTF-8)
//!   len   bytes after the 8-byte header
//!   crc   CRC32C of those `len` bytes
//!   kind  1 = commit `next` for `name`, 2 = remove `name` (`next` is 0)
//! ```
//!
//! Replaying the entries in order gives the committed offsets. When the
//! journal grows past a few times the size of its live content it is
//! compacted: one commit entry per live consumer is written to
//! `consumers.journal.tmp`, fsync'd, renamed over the journal, and the
//! directory fsync'd.
//!
//! Invariants:
//! - an entry is only ever one the broker committed (CRC-checked), so after
//!   a crash a consumer sees an offset it committed, possibly an older one,
//!   or none if it had never been persisted — never an invented one;
//! - a torn tail (partial or corrupt entry) is truncated on open; the
//!   entries before it stay.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::segment::sync_dir;
use crate::Error;

const JOURNAL: &str = "consumers.journal";
const JOURNAL_TMP: &str = "consumers.journal.tmp";
const HEADER: usize = 8;
const KIND_COMMIT: u8 = 1;
const KIND_REMOVE: u8 = 2;
/// Names longer than this are refused by `commit_offset`, so that a garbage
/// length in the journal is recognised.
pub(crate) const MAX_NAME_LEN: usize = 64 * 1024;
/// The journal is compacted once larger than this and than four times its
/// live content.
const COMPACT_MIN_BYTES: u64 = 1024 * 1024;

/// The in-memory offsets shared by the `Log` handles and the writer.
#[derive(Debug, Default)]
pub(crate) struct Consumers {
    pub committed: HashMap<String, u64>,
    /// Changes not yet in the journal: `None` marks a removal.
    pub dirty: HashMap<String, Option<u64>>,
    /// Name prefixes of consumers that do not hold retention back (see
    /// `Log::let_consumers_yield`).
    pub yielding: Vec<String>,
}

impl Consumers {
    /// The consumer with the smallest committed offset among those that
    /// hold retention back: it bounds what retention may delete.
    pub fn min_committed(&self) -> Option<(&str, u64)> {
        self.committed
            .iter()
            .filter(|(name, _)| !self.yielding.iter().any(|p| name.starts_with(p.as_str())))
            .map(|(name, next)| (name.as_str(), *next))
            .min_by_key(|(name, next)| (*next, *name))
    }

    /// Size of a compacted journal holding the current offsets.
    pub fn live_bytes(&self) -> u64 {
        self.committed
            .keys()
            .map(|name| (HEADER + 9 + name.len()) as u64)
            .sum()
    }
}

/// The journal file, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<(Journal, HashMap<String, u64>), Error> {
        let path = dir.join(JOURNAL);
        let context = || format!("open consumer journal {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(context(), e))?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(context(), e))?;
        let (committed, valid) = replay(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped = bytes.len() - valid,
                "truncating torn tail of consumer journal"
            );
            file.set_len(valid as u64)
                .map_err(|e| Error::io(context(), e))?;
            file.sync_all().map_err(|e| Error::io(context(), e))?;
        }
        let journal = Journal {
            dir: dir.to_owned(),
            path,
            file,
            len: valid as u64,
        };
        Ok((journal, committed))
    }

    /// Appends `changes` and makes them durable.
    pub fn append(&mut self, changes: &HashMap<String, Option<u64>>) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (name, next) in changes {
            match next {
                Some(next) => encode(&mut buf, KIND_COMMIT, *next, name),
                None => encode(&mut buf, KIND_REMOVE, 0, name),
            }
        }
        let context = || format!("append to consumer journal {}", self.path.display());
        self.file
            .write_all(&buf)
            .map_err(|e| Error::io(context(), e))?;
        self.file.sync_data().map_err(|e| Error::io(context(), e))?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Whether the journal has grown well past `live_bytes`, the size of a
    /// compacted one.
    pub fn needs_compaction(&self, live_bytes: u64) -> bool {
        self.len > COMPACT_MIN_BYTES.max(4 * live_bytes)
    }

    /// Rewrites the journal as one entry per consumer, atomically.
    pub fn compact(&mut self, all: &HashMap<String, u64>) -> Result<(), Error> {
        let tmp = self.dir.join(JOURNAL_TMP);
        let context = || format!("compact consumer journal {}", self.path.display());
        let mut buf = Vec::new();
        for (name, next) in all {
            encode(&mut buf, KIND_COMMIT, *next, name);
        }
        let write = || -> std::io::Result<File> {
            let mut file = File::create(&tmp)?;
            file.write_all(&buf)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.dir)?;
            OpenOptions::new().read(true).append(true).open(&self.path)
        };
        self.file = write().map_err(|e| Error::io(context(), e))?;
        self.len = buf.len() as u64;
        Ok(())
    }
}

fn encode(buf: &mut Vec<u8>, kind: u8, next: u64, name: &str) {
    let len = 9 + name.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let body = buf.len();
    buf.push(kind);
    buf.extend_from_slice(&next.to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    let crc = crc32c::crc32c(&buf[body..]);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Applies the valid entries of `bytes`; returns the offsets and the length
/// of the valid prefix.
fn replay(bytes: &[u8]) -> (HashMap<String, u64>, usize) {
    let mut committed = HashMap::new();
    let mut at = 0;
    while let Some((kind, next, name, len)) = decode(&bytes[at..]) {
        match kind {
            KIND_COMMIT => {
                committed.insert(name.to_owned(), next);
            }
            _ => {
                committed.remove(name);
            }
        }
        at += len;
    }
    (committed, at)
}

/// One valid entry at the start of `buf`: kind, next, name, entry length.
fn decode(buf: &[u8]) -> Option<(u8, u64, &str, usize)> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    if !(9..=9 + MAX_NAME_LEN).contains(&len) {
        return None;
    }
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let body = buf.get(HEADER..HEADER + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let kind = body[0];
    if kind != KIND_COMMIT && kind != KIND_REMOVE {
        return None;
    }
    let next = u64::from_le_bytes(body[1..9].try_into().ok()?);
    let name = std::str::from_utf8(&body[9..]).ok()?;
    Some((kind, next, name, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_replays_commits_and_removals_and_drops_torn_tail() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create temp dir", e))?;
        let (mut journal, offsets) = Journal::open(dir.path())?;
        assert!(offsets.is_empty());
        let mut all = HashMap::new();
        all.insert("a".to_owned(), 5);
        all.insert("b".to_owned(), 7);
        let changes: HashMap<_, _> = all.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
        journal.append(&changes)?;
        all.remove("b");
        journal.append(&HashMap::from([("b".to_owned(), None)]))?;
        drop(journal);
        // A torn entry at the end.
        let path = dir.path().join(JOURNAL);
        let mut bytes = std::fs::read(&path).map_err(|e| Error::io("read", e))?;
        let mut torn = Vec::new();
        encode(&mut torn, KIND_COMMIT, 99, "a");
        bytes.extend_from_slice(&torn[..torn.len() - 1]);
        std::fs::write(&path, &bytes).map_err(|e| Error::io("write", e))?;
        let (mut journal, offsets) = Journal::open(dir.path())?;
        assert_eq!(offsets, HashMap::from([("a".to_owned(), 5)]));
        journal.compact(&offsets)?;
        let (_, again) = Journal::open(dir.path())?;
        assert_eq!(again, offsets);
        Ok(())
    }
}
