//! Append throughput and latency of the embedded log.
//!
//! ```text
//! cargo run --release -p tributary-log --example append_bench -- [TASKS] [RECORDS_PER_TASK] [DIR]
//! ```
//!
//! TASKS concurrent tasks each append RECORDS_PER_TASK records with a
//! 100-byte payload, one at a time, waiting for each to be durable (as a
//! broker does for QoS 1). Prints appends/s and the p50/p99/max latency of
//! one append. DIR defaults to a fresh temporary directory.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tributary_log::{Log, LogConfig, MessageId, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks: usize = args.first().map_or(Ok(4), |a| a.parse())?;
    let per_task: usize = args.get(1).map_or(Ok(100_000), |a| a.parse())?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .get(2)
        .map_or_else(|| temp.path().to_owned(), Into::into);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(tasks, per_task, dir))
}

async fn run(
    tasks: usize,
    per_task: usize,
    dir: std::path::PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    // The records are stamped 0 (1970): no age limit, or retention would
    // delete every sealed segment while the benchmark writes.
    let log = Log::open(LogConfig {
        max_age: None,
        ..LogConfig::new(&dir)
    })?;
    let payload = Bytes::from(vec![b'x'; 100]);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let log = log.clone();
        let payload = payload.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let record = Record {
                    receive_time_ms: 0,
                    topic: format!("bench/{t}"),
                    qos: 1,
                    payload: payload.clone(),
                    client_id: format!("bench-{t}"),
                    message_id: MessageId((t * per_task + i) as u128),
                    ..Record::default()
                };
                let sent = Instant::now();
                log.append(record).await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, tributary_log::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(tasks * per_task);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let elapsed = started.elapsed();
    let stats = log.stats();
    log.close().await?;
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let total = latencies.len();
    println!(
        "{tasks} tasks x {per_task} records of 100 bytes: {total} appends in {:.2} s = {:.0} appends/s; \
         latency p50 {:?} p99 {:?} max {:?}; {} fsyncs, {:.1} records per fsync",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies[total - 1],
        stats.fsyncs,
        stats.records_appended as f64 / stats.fsyncs.max(1) as f64,
    );
    Ok(())
}
