//! Where a publish is made durable before it is acknowledged: the embedded
//! log (fsync'd group commit), or Kafka (`acks=all`) when Kafka is the log.
//! With Kafka, the local log is fed from Kafka by `kafka_tail` for delivery
//! to this node's subscribers, so a connection never appends to it itself.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use tributary_log::{Offset, Record};
use tributary_mqtt::ReasonCode;

use crate::server::Broker;

/// What an append achieved.
#[derive(Debug)]
pub(crate) enum Stored {
    /// In the embedded log at these offsets, one per record, in order.
    InLog(Vec<Offset>),
    /// Acknowledged by Kafka; the local log gets them through the tail.
    InKafka,
}

/// Why records were not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotStored {
    #[error(transparent)]
    Log(#[from] tributary_log::Error),
    #[error(transparent)]
    Kafka(#[from] tributary_kafka::Error),
}

impl NotStored {
    /// The answer a 5.0 publisher gets (3.1.1 publishers are disconnected
    /// without an acknowledgement, so they resend).
    pub(crate) fn refusal(&self) -> (ReasonCode, &'static str) {
        match self {
            NotStored::Log(tributary_log::Error::Full { .. }) => {
                (ReasonCode::QuotaExceeded, "the log is full")
            }
            NotStored::Log(_) => (
                ReasonCode::UnspecifiedError,
                "the log cannot store the message",
            ),
            // Kafka is slow or away: the client may try again later.
            NotStored::Kafka(_) => (
                ReasonCode::QuotaExceeded,
                "Kafka did not acknowledge the message in time",
            ),
        }
    }
}

pub(crate) type StoreFuture = Pin<Box<dyn Future<Output = Result<Stored, NotStored>> + Send>>;

/// Hands records over without waiting when there is room (so several
/// appends of one client can be in flight, in order); otherwise waits for
/// room, and says so (`true`) so that no later append overtakes it.
pub(crate) fn submit(broker: &Broker, records: Vec<Record>) -> (StoreFuture, bool) {
    if records.is_empty() {
        return (
            Box::pin(std::future::ready(Ok(Stored::InLog(Vec::new())))),
            false,
        );
    }
    if let Some(producer) = &broker.kafka {
        return (submit_kafka(producer, &records), false);
    }
    let count = records.len() as u64;
    let log = &broker.log;
    match log.try_submit(records) {
        Ok(submitted) => {
            let future = async move {
                let first = submitted.await?;
                Ok(Stored::InLog(dense(first, count)))
            };
            (Box::pin(future), false)
        }
        Err(tributary_log::SubmitError::QueueFull(records)) => {
            let log = log.clone();
            let future = async move {
                let count = records.len() as u64;
                let first = log.append_batch(records).await?;
                Ok(Stored::InLog(dense(first, count)))
            };
            (Box::pin(future), true)
        }
        Err(tributary_log::SubmitError::Closed) => (
            Box::pin(std::future::ready(Err(tributary_log::Error::Closed.into()))),
            false,
        ),
    }
}

/// Stores records (a will message) and waits until they are durable.
pub(crate) async fn store(broker: &Broker, records: Vec<Record>) -> Result<Stored, NotStored> {
    submit(broker, records).0.await
}

/// Every record is handed to the producer now, in order; the future
/// resolves when Kafka acknowledged all of them, or with the first failure
/// (records before it may be stored: a client that resends them creates
/// duplicates, never a loss).
fn submit_kafka(producer: &tributary_kafka::Producer, records: &[Record]) -> StoreFuture {
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        match producer.send(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        }
    }
    Box::pin(async move {
        for delivery in deliveries {
            delivery.await?;
        }
        Ok(Stored::InKafka)
    })
}

/// The log gives a batch dense offsets from the first.
fn dense(first: Offset, count: u64) -> Vec<Offset> {
    (first.0..first.0 + count).map(Offset).collect()
}

/// This node's id, made once and kept in `DATA_DIR/node_id`: its Kafka
/// consumer group must survive restarts so the node resumes where it was.
pub(crate) fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:016x}", rand_u64());
    let tmp = data_dir.join("node_id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// Random enough for a node id: the hash of time, process and address.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
