//! With Kafka as the log: follows this node's Kafka consumer group and
//! appends what it reads to the local log, from which sessions, shared
//! subscriptions and the retained map read as they always do. Every node
//! tails Kafka, so each delivers every message to its own subscribers.
//!
//! Offsets are committed to Kafka only after the records are durable in
//! the local log: a node that stops resumes after the last committed
//! record, so nothing Kafka acknowledged is missed (records between the
//! local append and the commit may be appended twice: MQTT delivery is at
//! least once). A new node starts at Kafka's end.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_kafka::{Consumer, KafkaConfig, Position, Start, StartAt};
use tributary_log::{Log, Record};

use crate::cluster::{Cluster, SessionDirectory};

/// Records appended to the local log at once at most.
const BATCH: usize = 1024;
/// How long a batch waits for more records once it has one.
const LINGER: Duration = Duration::from_millis(2);
/// How often a node that has not caught up with Kafka yet checks.
const CATCH_UP_CHECK: Duration = Duration::from_millis(200);
/// Pause after an error before trying again (Kafka away, say).
const RETRY: Duration = Duration::from_secs(1);

/// Appends what this node's consumer group `group` reads from Kafka to
/// `log`, until `stop` is cancelled.
/// With a `cluster`, each durable batch is checkpointed (a session's cursor
/// then moves between nodes), and a new node starts copying where the
/// oldest persistent session of the directory still needs records.
pub(crate) async fn run(
    log: Log,
    config: KafkaConfig,
    group: String,
    cluster: Option<Arc<Cluster>>,
    stop: CancellationToken,
) {
    if let Some(cluster) = &cluster {
        tokio::select! {
            () = stop.cancelled() => return,
            () = seed(&config, &group, &cluster.directory) => {}
        }
    }
    let checkpoints = cluster.as_ref().map(|c| c.checkpoints.clone());
    let consumer = loop {
        match Consumer::new(&config, &group, &config.topics(), Start::Latest) {
            Ok(consumer) => break consumer,
            Err(e) => {
                tracing::error!(error = %e, "kafka tail: create the consumer");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    tracing::info!(%group, topics = ?config.topics(), "following kafka");
    let mut failing = false;
    // Until the copy first caught up, how far behind it is is asked every
    // `CATCH_UP_CHECK` (also while no record arrives).
    let mut catching_up = cluster.as_ref().map(|c| &c.caught_up);
    let mut check = tokio::time::interval(CATCH_UP_CHECK);
    let mut target = None;
    loop {
        // The check must not cancel `next_batch`: what it received is
        // consumed as far as Kafka's client knows, and would be lost.
        let next = next_batch(&consumer);
        tokio::pin!(next);
        let batch = loop {
            tokio::select! {
                () = stop.cancelled() => return,
                batch = &mut next => break batch,
                _ = check.tick(), if catching_up.is_some() => {
                    // The end of the topics once the group is assigned;
                    // caught up once the copy reached it.
                    if target.is_none() && consumer.lag().await.is_ok_and(|lag| lag.is_some()) {
                        target = consumer.watermarks().await.ok();
                    }
                    if let Some(end) = &target {
                        if let Ok(Some(true)) = consumer.reached(end).await {
                            tracing::info!(records = end.records(), "kafka tail: caught up with Kafka");
                            if let Some(caught_up) = catching_up.take() {
                                caught_up.send_replace(true);
                            }
                        }
                    }
                }
            }
        };
        let (records, positions, carries) = match batch {
            Ok(batch) => {
                if failing {
                    tracing::info!("kafka tail: reading again");
                    failing = false;
                }
                batch
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "kafka tail: read failed; retrying every second");
                    failing = true;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut first = log.end_offset();
        if !records.is_empty() {
            // Not cancelled by `stop`: what was read is appended before the
            // offsets move, or neither happens.
            match log.append_batch(records).await {
                Ok(at) => first = at,
                Err(e) => {
                    tracing::error!(error = %e, "kafka tail: append to the local log; rereading from the last commit");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        if let Some(checkpoints) = &checkpoints {
            checkpoints.copied(first, &positions, &carries);
        }
        if let Err(e) = consumer.commit(&positions).await {
            tracing::warn!(error = %e, "kafka tail: commit offsets");
        }
    }
}

/// Longest a node waits for the session directory before it starts
/// copying Kafka (without it, a new node starts at the end of the topics).
const DIRECTORY_LOAD: Duration = Duration::from_secs(30);

/// For a new node (its group has committed nothing): starts its copy of the
/// topics at the oldest position a persistent session of the directory
/// still needs, so that any session can resume on it; at the end when no
/// session reads anything.
async fn seed(config: &KafkaConfig, group: &str, directory: &SessionDirectory) {
    if !directory.loaded(DIRECTORY_LOAD).await {
        tracing::warn!("the session directory was not read within {DIRECTORY_LOAD:?}; a new node starts at the end of the topics");
        return;
    }
    let needs = directory.resume_points();
    let sessions = needs.len();
    let (config, group) = (config.clone(), group.to_owned());
    let seeded = tokio::task::spawn_blocking(move || {
        tributary_kafka::seed_group(&config, &group, &config.topics(), |topic, partition| {
            if needs.is_empty() {
                return StartAt::Latest;
            }
            needs
                .iter()
                .map(|cursor| cursor.as_ref().and_then(|c| c.get(topic, partition)))
                .try_fold(i64::MAX, |oldest, at| at.map(|at| oldest.min(at)))
                .map_or(StartAt::Earliest, StartAt::Offset)
        })
    })
    .await;
    match seeded {
        Ok(Ok(true)) => {
            tracing::info!(
                sessions,
                "new node: copying Kafka from where the directory's persistent sessions need it"
            )
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "new node: could not set where to start copying Kafka; starting at the end")
        }
        Err(e) => {
            tracing::warn!(error = %e, "new node: could not set where to start copying Kafka; starting at the end")
        }
    }
}

/// What one read from Kafka gives: the records to append, every message's
/// position (committed either way), and whether each message carried a
/// record (a message that is no record is skipped).
type Batch = (Vec<Record>, Vec<Position>, Vec<bool>);

/// Waits for one message, then takes what else arrives within `LINGER`.
async fn next_batch(consumer: &Consumer) -> tributary_kafka::Result<Batch> {
    let mut batch: Batch = (Vec::new(), Vec::new(), Vec::new());
    take(consumer.recv().await?, &mut batch);
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.1.len() < BATCH {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(received) => take(received?, &mut batch),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Keeps a message's record (a message that is no record is skipped with a
/// log line) and its position.
fn take(received: tributary_kafka::Received, batch: &mut Batch) {
    let (records, positions, carries) = batch;
    match received.record {
        Ok(record) => {
            records.push(record);
            carries.push(true);
        }
        Err(e) => {
            tracing::warn!(topic = %received.position.topic, partition = received.position.partition,
            offset = received.position.offset, error = %e, "kafka tail: skipped a message");
            carries.push(false);
        }
    }
    positions.push(received.position);
}
