//! Fills the store with N measurements of one owner across a few names over 30 days, then
//! prints the insert rate and the latency of the dashboard's 30-day query at 1-minute buckets
//! (answered from the per-minute rollup), with a 1-day query at 90-second buckets (answered from
//! the rows) beside it for comparison.
//!
//! ```text
//! cargo run --release -p tributary-store --example query_bench -- [--rows N] [--names K]
//!     [--batch B] [--url sqlite|sqlite:///path.db|postgres://user@host:port/db]
//! ```
//! Defaults: 10,000,000 rows, 5 names, batches of 5,000 rows, SQLite in a temporary directory.
//! A PostgreSQL URL should name an empty database: the rows are added to whatever is there.

use std::time::{Duration, Instant};

use tributary_store::{Query, Row, Store};

const DAY_MS: i64 = 86_400_000;
const OWNER: &str = "bench-owner";

struct Args {
    rows: u64,
    names: u32,
    batch: usize,
    url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: 10_000_000,
        names: 5,
        batch: 5_000,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--names" => args.names = value()?.parse().map_err(|e| format!("--names: {e}"))?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--url" => args.url = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the example's docs)"
                ))
            }
        }
    }
    if args.names == 0 || args.batch == 0 {
        return Err("--names and --batch must be at least 1".into());
    }
    Ok(args)
}

/// A well-spread 32-hex-digit message id, as the log's would be.
fn message_id(i: u64) -> String {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}{:016x}", z ^ (z >> 31), i)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let store = Store::open(args.url.as_deref(), tmp.path()).await?;
    let names: Vec<String> = (0..args.names).map(|k| format!("sensor_{k}")).collect();

    // One message per instant carrying one record per name, spread evenly over 30 days.
    let messages = args.rows.div_ceil(u64::from(args.names));
    let end_ms: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let start_ms = end_ms - 30 * DAY_MS;
    let step_ms = (30 * DAY_MS) as f64 / messages as f64;
    println!(
        "engine {}, {} rows ({} messages x {} names) over 30 days, batches of {}",
        store.engine(),
        args.rows,
        messages,
        args.names,
        args.batch
    );

    let started = Instant::now();
    let mut batch = Vec::with_capacity(args.batch);
    let mut made = 0u64;
    let mut stored = 0usize;
    'fill: for i in 0..messages {
        let time_ms = start_ms + (i as f64 * step_ms) as i64;
        let id = message_id(i);
        for (seq, name) in names.iter().enumerate() {
            if made == args.rows {
                break 'fill;
            }
            batch.push(Row {
                owner: OWNER.into(),
                device: "bench-device".into(),
                message_id: id.clone(),
                seq: seq as u32,
                name: name.clone(),
                unit: Some("Cel".into()),
                time_ms,
                value: Some(20.0 + (i % 100) as f64 / 10.0),
                text: None,
                bool: None,
                data: None,
                sum: None,
            });
            made += 1;
            if batch.len() == args.batch {
                stored += store.insert(&batch).await?;
                batch.clear();
            }
        }
        if i > 0 && i % (messages / 10).max(1) == 0 {
            let s = started.elapsed().as_secs_f64();
            eprintln!("  {made} rows, {:.0} rows/s", made as f64 / s);
        }
    }
    stored += store.insert(&batch).await?;
    let fill = started.elapsed();
    println!(
        "insert: {stored} new rows in {:.1} s = {:.0} rows/s",
        fill.as_secs_f64(),
        stored as f64 / fill.as_secs_f64()
    );

    let month = Query {
        owner: OWNER.into(),
        from_ms: start_ms,
        to_ms: end_ms,
        names: vec![],
        bucket_ms: Some(60_000),
        limit: usize::MAX,
    };
    let day = Query {
        from_ms: end_ms - DAY_MS,
        bucket_ms: Some(90_000),
        ..month.clone()
    };
    for (label, q) in [
        ("30 days, all names, 1-minute buckets (rollup)", &month),
        ("1 day, all names, 90-second buckets (rows)", &day),
    ] {
        let mut times = Vec::new();
        let mut points = 0;
        for _ in 0..5 {
            let t = Instant::now();
            points = store.query(q).await?.len();
            times.push(t.elapsed());
        }
        let best = times.iter().min().copied().unwrap_or_default();
        println!(
            "query {label}: {points} points, median {:.1} ms, best {:.1} ms (5 runs)",
            median(times).as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
