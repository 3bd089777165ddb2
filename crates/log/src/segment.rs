//! Segment files: naming, the recovery scan, and reads of frames from disk.
//!
//! A segment is a file `<base>.log` in the log directory, `<base>` being the
//! offset of its first record as 20 zero-padded decimal digits (so names
//! sort like offsets), holding frames (see [`crate::record`]) back to back
//! with dense offsets `base, base + 1, ...`. There is no separate index
//! file: each segment's sparse index (`offset → file position`, one entry
//! per [`LogTuning::index_interval_bytes`](crate::LogTuning)) is rebuilt in
//! memory by the scan on open, which also verifies every CRC.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::{self, FrameError};
use crate::{Error, Offset, Record};

const SUFFIX: &str = ".log";
/// Bytes read from disk at a time by scans and reads.
const CHUNK: usize = 256 * 1024;

pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The base offset named by a segment file name, `None` for other files.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates the file of a new, empty segment. It must not exist yet: an
/// existing file would hold records we are about to overwrite.
pub(crate) fn create(dir: &Path, base: u64) -> Result<(File, PathBuf), Error> {
    let path = dir.join(file_name(base));
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("create segment {}", path.display()), e))?;
    Ok((file, path))
}

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A frame that could not be read where the scan stopped.
#[derive(Debug)]
pub(crate) struct BadTail {
    /// File position of the first byte that is not part of a valid frame.
    pub pos: u64,
    pub reason: String,
    /// The frame size its header claims, when the header was plausible.
    pub declared_len: Option<usize>,
}

/// What the recovery scan found in one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    pub file_len: u64,
    /// Bytes from the start that hold valid frames with dense offsets.
    pub valid_len: u64,
    /// The offset after the last valid frame.
    pub end: u64,
    pub index: Vec<(u64, u64)>,
    /// Newest `receive_time_ms` among the valid frames, 0 when none.
    pub max_time_ms: u64,
    /// `None` when the file ends exactly after a valid frame.
    pub bad_tail: Option<BadTail>,
}

/// Reads a whole segment, verifying every frame and that offsets run
/// `base, base + 1, ...`, and builds its sparse index.
pub(crate) fn scan(file: &File, base: u64, index_interval: u64) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = 0u64; // file position of buf[0]
    let mut at = 0usize; // first unparsed byte in buf
    let mut end = base;
    let mut index = Vec::new();
    let mut last_indexed: Option<u64> = None;
    let mut max_time_ms = 0;
    let bad_tail = loop {
        let pos = buf_pos + at as u64;
        if pos == file_len {
            break None;
        }
        match record::decode(&buf[at..]) {
            Ok(frame) => {
                if frame.offset != end {
                    break Some(BadTail {
                        pos,
                        reason: format!("offset {} where {end} was expected", frame.offset),
                        declared_len: Some(frame.frame_len),
                    });
                }
                if !matches!(last_indexed, Some(p) if pos - p < index_interval) {
                    index.push((end, pos));
                    last_indexed = Some(pos);
                }
                max_time_ms = max_time_ms.max(frame.receive_time_ms);
                end += 1;
                at += frame.frame_len;
            }
            Err(FrameError::Incomplete { needed }) => {
                let available = file_len - pos;
                if needed as u64 > available {
                    break Some(BadTail {
                        pos,
                        reason: FrameError::Incomplete { needed }.to_string(),
                        declared_len: record::peek_frame_len(&buf[at..]).ok(),
                    });
                }
                buf.drain(..at);
                buf_pos = pos;
                at = 0;
                let want = (needed.max(CHUNK) as u64).min(available) as usize;
                let have = buf.len();
                buf.resize(want, 0);
                file.read_exact_at(&mut buf[have..], pos + have as u64)?;
            }
            Err(e) => {
                break Some(BadTail {
                    pos,
                    reason: e.to_string(),
                    declared_len: record::peek_frame_len(&buf[at..]).ok(),
                })
            }
        }
    };
    let valid_len = bad_tail.as_ref().map_or(file_len, |t| t.pos);
    Ok(Scan {
        file_len,
        valid_len,
        end,
        index,
        max_time_ms,
        bad_tail,
    })
}

/// Where and how far a disk read may go.
pub(crate) struct ReadPlan {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Position of a frame at or before `from` (from the sparse index).
    pub pos: u64,
    /// The offset of the frame at `pos`.
    pub pos_offset: u64,
    /// Durable length of the segment: frames end at or before it.
    pub len: u64,
    pub from: u64,
    /// Stop before this offset.
    pub end: u64,
    pub max: usize,
    pub max_bytes: usize,
}

/// Reads up to `plan.max` records in `[plan.from, plan.end)` from one
/// segment. Blocking: run it on a blocking thread.
pub(crate) fn read_frames(plan: &ReadPlan) -> Result<Vec<(Offset, Arc<Record>)>, Error> {
    let corrupt = |pos: u64, why: &dyn std::fmt::Display| {
        Error::Corrupt(format!(
            "read segment {} at byte {pos}: {why}",
            plan.path.display()
        ))
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = plan.pos;
    let mut at = 0usize;
    let mut expected = plan.pos_offset;
    while expected < plan.end && out.len() < plan.max && bytes < plan.max_bytes {
        let pos = buf_pos + at as u64;
        match record::decode(&buf[at..]) {
            Ok(frame) => {
                if frame.offset != expected {
                    return Err(corrupt(
                        pos,
                        &format_args!("offset {} where {expected} was expected", frame.offset),
                    ));
                }
                if frame.offset >= plan.from {
                    bytes += frame.frame_len;
                    out.push((Offset(frame.offset), Arc::new(frame.to_record())));
                }
                expected += 1;
                at += frame.frame_len;
            }
            Err(FrameError::Incomplete { needed }) => {
                let available = plan.len.saturating_sub(pos);
                if needed as u64 > available {
                    return Err(corrupt(
                        pos,
                        &"frame runs past the durable end of the segment",
                    ));
                }
                buf.drain(..at);
                buf_pos = pos;
                at = 0;
                let want = (needed.max(CHUNK) as u64).min(available) as usize;
                let have = buf.len();
                buf.resize(want, 0);
                file_read(plan, &mut buf[have..], pos + have as u64)?;
            }
            Err(e) => return Err(corrupt(pos, &e)),
        }
    }
    Ok(out)
}

fn file_read(plan: &ReadPlan, buf: &mut [u8], pos: u64) -> Result<(), Error> {
    plan.file.read_exact_at(buf, pos).map_err(|e| {
        Error::io(
            format!("read segment {} at byte {pos}", plan.path.display()),
            e,
        )
    })
}
