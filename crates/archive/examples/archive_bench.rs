//! How fast the archive writes, and how small its files are: ROWS
//! measurements of DEVICES devices (one owner, a reading per second each),
//! written in batches of BATCH rows as the archive sink does, to a fresh
//! local archive (fsync'd as always); prints rows/s, bytes per row and files.
//!
//! ```text
//! cargo run --release -p tributary-archive --example archive_bench -- [ROWS] [BATCH] [DEVICES]
//! ```

use std::time::Instant;

use tributary_archive::{Archive, ArchiveConfig};
use tributary_store::Row;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (rows, batch, devices) = (arg(1, 1_000_000), arg(2, 100_000), arg(3, 10));
    let dir = tempfile::tempdir()?;
    let archive = Archive::open(&ArchiveConfig::default(), dir.path())?;
    let t0_ms = 1_790_000_000_000i64;
    let make = |i: usize| Row {
        owner: "bench".into(),
        device: format!("watch{}", i % devices),
        message_id: format!("{:032x}", i / 10),
        seq: (i % 10) as u32,
        name: "heart_rate".into(),
        unit: Some("beat/min".into()),
        time_ms: t0_ms + (i / devices) as i64 * 1000,
        // Heart rates with two decimals of noise (a multiplicative hash of
        // the index), so that compression meets data like a sensor's.
        value: Some(60.0 + ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as f64 / 100.0),
        text: None,
        bool: None,
        data: None,
        sum: None,
    };
    let (mut files, mut bytes, mut written) = (0, 0u64, 0);
    let started = Instant::now();
    let mut encode_s = 0.0;
    while written < rows {
        let n = batch.min(rows - written);
        let chunk: Vec<Row> = (written..written + n).map(make).collect();
        let t = Instant::now();
        let done = archive.write(&chunk).await?;
        encode_s += t.elapsed().as_secs_f64();
        files += done.files.len();
        bytes += done.bytes;
        written += n;
    }
    let total_s = started.elapsed().as_secs_f64();
    println!(
        "archive: {rows} rows in batches of {batch} ({devices} devices) -> {files} files, {bytes} bytes \
         ({:.1} bytes/row); write {:.0} rows/s (write calls {encode_s:.2} s of {total_s:.2} s incl. making rows)",
        bytes as f64 / rows as f64,
        rows as f64 / encode_s,
    );
    Ok(())
}
