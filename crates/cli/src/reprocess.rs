//! `tributary reprocess`: the pipeline once over the whole log, from its
//! first record to where it ended when the command started, into the store.
//! Rows are keyed by (owner, message id, record index), so reprocessing
//! adds only what the store lacks: it rebuilds a lost or new store, or
//! checks (count and checksum before and after) that nothing changes.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tributary_log::{Log, LogTuning, ReadToEnd, Stream};
use tributary_pipeline::erasure::{ErasureStats, Tombstones, UnsealedConsumer};
use tributary_pipeline::{Finish, Stats, StorePolicy};
use tributary_rights::owner_keys::Keyring;
use tributary_store::Store;

use crate::config::{DataArgs, LogBackend, NodeConfig};
use crate::pipeline::REPROCESS_CONSUMER;

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long reading the log or writing the store may keep failing before
/// the command gives up (a server's pipeline waits for ever instead).
const PATIENCE: Duration = Duration::from_secs(30);
/// How long to wait for the embedded log's lock: a `serve` that is
/// stopping releases it within this; a running one never does.
const LOCK_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// --config, --data-dir, --log, --store: as for `serve`.
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: ReprocessArgs) -> anyhow::Result<()> {
    let config = args.data.compose()?.resolve()?;
    crate::runtime()?.block_on(reprocess(config))
}

/// What the run read and what the store was before and after.
struct Report {
    source: String,
    in_log: u64,
    before: (u64, u64),
    after: (u64, u64),
    elapsed: Duration,
}

async fn reprocess(config: NodeConfig) -> anyhow::Result<()> {
    let stats = Stats::default();
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            crate::serve::shutdown_signal().await;
            stop.cancel();
        }
    });
    let started = Instant::now();
    let (finish, mut report) = match config.backend() {
        LogBackend::Embedded => {
            let log = open_embedded(&config)?;
            let store = open_store(&config).await?;
            let (policy, keyring) = erasures(&config, &store).await?;
            let sink = Sink {
                store: &store,
                policy,
                keyring,
                stats: &stats,
                stop: &stop,
            };
            let result = on_embedded(&log, &config.log.dir, &sink).await;
            // Whatever happened: the consumer must not pin the log after this.
            let removed = log.remove_consumer(REPROCESS_CONSUMER);
            let closed = log.close().await;
            let (finish, report) = result?;
            removed.context("remove the reprocessing consumer")?;
            closed.context("close the log")?;
            (finish, report)
        }
        LogBackend::Kafka(kafka) => {
            let stream = tributary_kafka::KafkaStream::new(kafka)?;
            // A group of its own, never used again: it starts at the oldest
            // record and, committing nothing, leaves no offsets in Kafka.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let group = kafka.group(&format!("reprocess-{nanos}-{}", std::process::id()));
            let reader = stream.consumer(&group).map_err(anyhow::Error::msg)?;
            let end = reader
                .end()
                .await
                .map_err(anyhow::Error::msg)
                .context("read where the Kafka topics end")?;
            // Opened once the log is known to be there, as on the embedded log.
            let store = open_store(&config).await?;
            let source = format!(
                "Kafka {} (topics {}, group {group})",
                kafka.brokers,
                kafka.topics().join(", ")
            );
            let (policy, keyring) = erasures(&config, &store).await?;
            let sink = Sink {
                store: &store,
                policy,
                keyring,
                stats: &stats,
                stop: &stop,
            };
            drive(reader, &end, end.records(), source, &sink).await?
        }
    };
    report.elapsed = started.elapsed();
    print_summary(&report, &stats, finish);
    match finish {
        Finish::Complete => Ok(()),
        Finish::Interrupted => anyhow::bail!(
            "interrupted: the store keeps what was processed; run reprocess again to finish"
        ),
    }
}

/// The embedded log of the data dir, which must exist and not be in use.
fn open_embedded(config: &NodeConfig) -> anyhow::Result<Log> {
    let log_config = &config.log;
    let dir = &log_config.dir;
    if !has_segments(dir) {
        anyhow::bail!(
            "no log in {}: nothing to reprocess (is --data-dir the directory `tributary serve` uses? \
             with Kafka as the log, pass --log kafka://...)",
            dir.display()
        );
    }
    let tuning = LogTuning {
        lock_wait: LOCK_WAIT,
        ..LogTuning::default()
    };
    match Log::open_with(log_config.clone(), tuning) {
        Ok(log) => Ok(log),
        Err(tributary_log::Error::Locked { dir }) => anyhow::bail!(
            "the log in {dir} is in use, most likely by a running `tributary serve`: stop it first \
             (reprocess reads the embedded log alone; with Kafka as the log it runs beside serve)"
        ),
        Err(e) => Err(e).with_context(|| format!("open the log in {}", dir.display())),
    }
}

fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".log"))
    })
}

async fn open_store(config: &NodeConfig) -> anyhow::Result<Arc<Store>> {
    let url = config.store_url.as_deref().unwrap_or("sqlite");
    Store::open(config.store_url.as_deref(), &config.data_dir)
        .await
        .map(Arc::new)
        .with_context(|| format!("open the measurements store {url}"))
}

/// What erasure asks of the run: the store policy with every erasure's
/// tombstone (read once: the run is short), and the keyring that opens
/// sealed payloads, so that nothing erased comes back.
async fn erasures(
    config: &NodeConfig,
    store: &Arc<Store>,
) -> anyhow::Result<(StorePolicy, Arc<Keyring>)> {
    let tombstones = Tombstones::default();
    tombstones
        .refresh(store)
        .await
        .context("read the erasures from the store")?;
    let keyring = config.erasure.keyring(&config.data_dir, store.clone())?;
    let policy = StorePolicy {
        erased: tombstones,
        ..config.store_policy()
    };
    Ok((policy, keyring))
}

/// Where the run writes, what it keeps, what it counts and what stops it.
struct Sink<'a> {
    store: &'a Store,
    policy: StorePolicy,
    keyring: Arc<Keyring>,
    stats: &'a Stats,
    stop: &'a CancellationToken,
}

async fn on_embedded(log: &Log, dir: &Path, sink: &Sink<'_>) -> anyhow::Result<(Finish, Report)> {
    // Committed at the start offset, the consumer keeps retention from
    // deleting a segment this run has still to read.
    log.remove_consumer(REPROCESS_CONSUMER)?;
    log.commit_offset(REPROCESS_CONSUMER, log.start_offset())?;
    let reader = log
        .consumer(REPROCESS_CONSUMER)
        .map_err(anyhow::Error::msg)?;
    let end = reader.end().await.map_err(anyhow::Error::msg)?;
    let in_log = end.0 - log.start_offset().0;
    let source = format!("the embedded log in {}", dir.display());
    drive(reader, &end, in_log, source, sink).await
}

/// Runs the pipeline to `end`, a progress line every few seconds.
async fn drive<C: ReadToEnd + Sync>(
    reader: C,
    end: &C::End,
    in_log: u64,
    source: String,
    sink: &Sink<'_>,
) -> anyhow::Result<(Finish, Report)>
where
    C::Position: Sync,
{
    let Sink {
        store,
        policy,
        keyring,
        stats,
        stop,
    } = sink;
    let (store, stats, stop) = (*store, *stats, *stop);
    // Payloads opened, records of erased owners blanked (as in `serve`).
    let mut reader = UnsealedConsumer::new(
        reader,
        keyring.clone(),
        Arc::new(ErasureStats::default()),
        REPROCESS_CONSUMER,
    );
    let reader = &mut reader;
    let policy = policy.clone();
    let before = store
        .count_and_checksum()
        .await
        .context("count the store's rows")?;
    eprintln!(
        "reprocess: reading {in_log} records from {source} into the {} store ({} rows)",
        store.engine(),
        before.0
    );
    let work = tributary_pipeline::reprocess(reader, end, store, policy, stats, stop, PATIENCE);
    let progress = async {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            eprintln!(
                "reprocess: {} of {in_log} records, measurements {} new / {} already stored, {} dead letters",
                stats.records.load(Ordering::Relaxed),
                stats.measurements.load(Ordering::Relaxed),
                stats.already_stored.load(Ordering::Relaxed),
                stats.dead_letters.load(Ordering::Relaxed),
            );
        }
    };
    let finish = tokio::select! {
        finish = work => finish.context("reprocess")?,
        () = progress => unreachable!("the progress loop never ends"),
    };
    let after = store
        .count_and_checksum()
        .await
        .context("count the store's rows")?;
    Ok((
        finish,
        Report {
            source,
            in_log,
            before,
            after,
            elapsed: Duration::ZERO,
        },
    ))
}

fn print_summary(report: &Report, stats: &Stats, finish: Finish) {
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let (before, after) = (report.before, report.after);
    println!(
        "reprocess {}: {} records read of {} in {} in {:.1}s",
        match finish {
            Finish::Complete => "complete",
            Finish::Interrupted => "interrupted",
        },
        load(&stats.records),
        report.in_log,
        report.source,
        report.elapsed.as_secs_f64()
    );
    let rate = (load(&stats.measurements) + load(&stats.already_stored)) as f64
        / report.elapsed.as_secs_f64().max(1e-3);
    println!(
        "measurements new:            {} ({rate:.0} measurements/s read and stored)",
        load(&stats.measurements)
    );
    println!(
        "measurements already stored: {}",
        load(&stats.already_stored)
    );
    println!("dead letters:                {}", load(&stats.dead_letters));
    println!("not measurements:            {}", load(&stats.skipped));
    println!(
        "store before:                {} rows, checksum {:016x}",
        before.0, before.1
    );
    println!(
        "store after:                 {} rows, checksum {:016x} ({})",
        after.0,
        after.1,
        if after == before {
            "unchanged"
        } else {
            "changed"
        }
    );
}
