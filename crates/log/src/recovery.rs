//! Opening the log directory after a clean shutdown or a crash.
//!
//! Every segment is scanned and every CRC verified (this also rebuilds the
//! sparse indexes). Then:
//! - a sealed segment (any but the last) must hold only valid frames with
//!   offsets continuing the previous segment, otherwise the open fails with
//!   `Error::Corrupt` naming the file and byte position: such damage is not
//!   a torn write, and dropping it silently would lose acknowledged data;
//! - the last (active) segment may end in a torn write: the bytes of a batch
//!   that was being written when the process died, never fsync'd, so never
//!   acknowledged. They are truncated. A bad tail larger than one write
//!   batch (`LogTuning::max_batch_bytes`, or the one frame being written)
//!   cannot come from one torn write, so it is reported as corruption instead.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::segment::{self, Scan};
use crate::state::SegmentView;
use crate::{Error, LogTuning};

/// The segments found on disk; the last is opened for appending.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentView>,
    pub active_file: File,
    /// The exclusive lock on the directory, held for as long as the log is open.
    pub lock: File,
}

pub(crate) fn recover(dir: &Path, tuning: &LogTuning) -> Result<Recovered, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("create log directory {}", dir.display()), e))?;
    let lock = lock_dir(dir, tuning.lock_wait)?;
    let mut bases = list_segments(dir)?;
    if bases.is_empty() {
        let (file, _) = segment::create(dir, 0)?;
        drop(file);
        segment::sync_dir(dir)
            .map_err(|e| Error::io(format!("sync log directory {}", dir.display()), e))?;
        bases.push(0);
    }
    let mut segments = Vec::with_capacity(bases.len());
    let last = bases.len() - 1;
    let mut active_file = None;
    for (i, base) in bases.into_iter().enumerate() {
        let path = dir.join(segment::file_name(base));
        let is_last = i == last;
        let file = OpenOptions::new()
            .read(true)
            .append(is_last)
            .open(&path)
            .map_err(|e| Error::io(format!("open segment {}", path.display()), e))?;
        let scan = segment::scan(&file, base, tuning.index_interval_bytes)
            .map_err(|e| Error::io(format!("scan segment {}", path.display()), e))?;
        if let Some(prev) = segments.last() {
            let prev: &SegmentView = prev;
            if prev.end != base {
                return Err(Error::Corrupt(format!(
                    "open segment {}: starts at offset {base} but the previous segment ends at {}",
                    path.display(),
                    prev.end
                )));
            }
        }
        if is_last {
            truncate_torn_tail(&file, &path, &scan, tuning)?;
        } else if let Some(bad) = &scan.bad_tail {
            return Err(Error::Corrupt(format!(
                "open segment {} at byte {}: {} (sealed segment)",
                path.display(),
                bad.pos,
                bad.reason
            )));
        }
        let read_handle = if is_last {
            let read = File::open(&path)
                .map_err(|e| Error::io(format!("open segment {}", path.display()), e))?;
            active_file = Some(file);
            read
        } else {
            file
        };
        segments.push(SegmentView {
            base,
            path,
            file: Arc::new(read_handle),
            len: scan.valid_len,
            end: scan.end,
            max_time_ms: scan.max_time_ms,
            index: scan.index,
        });
    }
    let active_file = active_file.expect("the last segment was opened for appending");
    Ok(Recovered {
        segments,
        active_file,
        lock,
    })
}

/// Takes an exclusive `flock` on `<dir>/lock`, so that two processes (or
/// two `Log`s in one process) never write the same log: that would corrupt it.
fn lock_dir(dir: &Path, wait: Duration) -> Result<File, Error> {
    let path = dir.join("lock");
    let context = || format!("lock log directory {}", dir.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(context(), e))?;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a file descriptor we own, no memory involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(Error::io(context(), e));
        }
        if Instant::now() >= deadline {
            return Err(Error::Locked {
                dir: dir.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn truncate_torn_tail(
    file: &File,
    path: &Path,
    scan: &Scan,
    tuning: &LogTuning,
) -> Result<(), Error> {
    let Some(bad) = &scan.bad_tail else {
        return Ok(());
    };
    let dropped = scan.file_len - bad.pos;
    let one_partial_frame = bad.declared_len.is_some_and(|len| len as u64 >= dropped);
    if dropped > tuning.max_batch_bytes as u64 && !one_partial_frame {
        return Err(Error::Corrupt(format!(
            "open segment {} at byte {}: {} ({dropped} bytes follow, more than one write batch)",
            path.display(),
            bad.pos,
            bad.reason
        )));
    }
    tracing::warn!(
        path = %path.display(),
        pos = bad.pos,
        dropped,
        reason = %bad.reason,
        "truncating torn tail of the active segment"
    );
    let context = || format!("truncate segment {} at byte {}", path.display(), bad.pos);
    file.set_len(bad.pos).map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let context = || format!("list log directory {}", dir.display());
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        let entry = entry.map_err(|e| Error::io(context(), e))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
