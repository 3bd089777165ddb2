//! Where a publish is made durable before it is acknowledged: the embedded
//! log (fsync'd group commit), or Kafka (`acks=all`) when Kafka is the log.
//! With Kafka, the local log is fed from Kafka by `kafka_tail` for delivery
//! to this node's subscribers, so a connection never appends to it itself.
//!
//! [`Durability`] is the one place that knows which of the two it is; the
//! connections and the will task only hand it records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tributary_log::{Log, Offset, Record};
use tributary_mqtt::ReasonCode;

/// Makes records durable: the embedded log, or Kafka.
#[derive(Clone)]
pub(crate) enum Durability {
    /// Appends go to the embedded log, which acknowledges after fsync.
    Embedded(Log),
    /// Appends go to Kafka, which acknowledges with `acks=all`; retained
    /// messages also go to the cluster's retained table, from which a new
    /// node learns what was retained before it started.
    Kafka {
        producer: Arc<tributary_kafka::Producer>,
        retained: Arc<tributary_kafka::TableWriter>,
    },
}

/// What an append achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Durable {
    /// In the embedded log at these offsets, one per record, in order.
    InLog(Vec<Offset>),
    /// Acknowledged by Kafka; the local log gets them through the tail.
    InKafka,
}

/// Why records were not made durable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotDurable {
    #[error(transparent)]
    Log(#[from] tributary_log::Error),
    #[error(transparent)]
    Kafka(#[from] tributary_kafka::Error),
}

impl NotDurable {
    /// The answer a 5.0 publisher gets (3.1.1 publishers are disconnected
    /// without an acknowledgement, so they resend).
    pub(crate) fn refusal(&self) -> (ReasonCode, &'static str) {
        match self {
            NotDurable::Log(tributary_log::Error::Full { .. }) => {
                (ReasonCode::QuotaExceeded, "the log is full")
            }
            NotDurable::Log(_) => (
                ReasonCode::UnspecifiedError,
                "the log cannot store the message",
            ),
            // Kafka is slow or away: the client may try again later.
            NotDurable::Kafka(_) => (
                ReasonCode::QuotaExceeded,
                "Kafka did not acknowledge the message in time",
            ),
        }
    }
}

pub(crate) type DurableFuture = Pin<Box<dyn Future<Output = Result<Durable, NotDurable>> + Send>>;

impl Durability {
    /// Hands records over without waiting when there is room (so several
    /// appends of one client can be in flight, in order); otherwise waits
    /// for room, and says so (`true`) so that no later append overtakes it.
    pub(crate) fn submit(&self, records: Vec<Record>) -> (DurableFuture, bool) {
        if records.is_empty() {
            return (
                Box::pin(std::future::ready(Ok(Durable::InLog(Vec::new())))),
                false,
            );
        }
        let log = match self {
            Durability::Kafka { producer, retained } => {
                return (submit_kafka(producer, retained, records), false)
            }
            Durability::Embedded(log) => log,
        };
        let count = records.len() as u64;
        match log.try_submit(records) {
            Ok(submitted) => {
                let future = async move {
                    let first = submitted.await?;
                    Ok(Durable::InLog(dense(first, count)))
                };
                (Box::pin(future), false)
            }
            Err(tributary_log::SubmitError::QueueFull(records)) => {
                let log = log.clone();
                let future = async move {
                    let count = records.len() as u64;
                    let first = log.append_batch(records).await?;
                    Ok(Durable::InLog(dense(first, count)))
                };
                (Box::pin(future), true)
            }
            Err(tributary_log::SubmitError::Closed) => (
                Box::pin(std::future::ready(Err(tributary_log::Error::Closed.into()))),
                false,
            ),
        }
    }

    /// Makes records (a will message) durable and waits until they are.
    pub(crate) async fn store(&self, records: Vec<Record>) -> Result<Durable, NotDurable> {
        self.submit(records).0.await
    }

    /// With Kafka: whether Kafka is reachable (for metrics).
    pub(crate) fn kafka_reachable(&self) -> Option<bool> {
        match self {
            Durability::Kafka { producer, .. } => Some(producer.reachable()),
            Durability::Embedded(_) => None,
        }
    }

    /// At shutdown, after the connections ended: with Kafka, lets records
    /// nobody was told about yet finish (everything acknowledged is in
    /// Kafka already). The embedded log is closed by its owner.
    pub(crate) async fn flush(&self, grace: Duration) {
        if let Durability::Kafka { producer, .. } = self {
            let producer = producer.clone();
            let _ = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
        }
    }
}

/// Every record is handed to the producer now, in order; the future
/// resolves when Kafka acknowledged all of them, or with the first failure
/// (records before it may be stored: a client that resends them creates
/// duplicates, never a loss). Once acknowledged, a retained record is
/// written to the retained table too (an empty payload as a tombstone);
/// the publisher does not wait for that.
fn submit_kafka(
    producer: &tributary_kafka::Producer,
    table: &Arc<tributary_kafka::TableWriter>,
    records: Vec<Record>,
) -> DurableFuture {
    let mut deliveries = Vec::with_capacity(records.len());
    for record in &records {
        match producer.send(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        }
    }
    let table = table.clone();
    Box::pin(async move {
        for delivery in deliveries {
            delivery.await?;
        }
        for record in records.iter().filter(|r| r.retain) {
            let kept = (!record.payload.is_empty()).then_some(record);
            let written = table.put_record(&record.topic, kept);
            let topic = record.topic.clone();
            tokio::spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(%topic, error = %e, "write a retained message to the retained table");
                }
            });
        }
        Ok(Durable::InKafka)
    })
}

/// The log gives a batch dense offsets from the first.
fn dense(first: Offset, count: u64) -> Vec<Offset> {
    (first.0..first.0 + count).map(Offset).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_log::{LogConfig, MessageIds};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn records(ids: &MessageIds, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                receive_time_ms: 0,
                topic: format!("t/{i}"),
                qos: 1,
                retain: false,
                properties: Default::default(),
                payload: bytes::Bytes::from_static(b"x"),
                client_id: "c".into(),
                message_id: ids.next(),
                owner: String::new(),
                device: String::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn embedded_appends_answer_with_their_offsets_in_order() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = Log::open(LogConfig::new(dir.path()))?;
        let durability = Durability::Embedded(log.clone());
        let ids = MessageIds::new();
        let (first, blocking) = durability.submit(records(&ids, 3));
        assert!(!blocking, "an empty writer queue has room");
        let (second, _) = durability.submit(records(&ids, 2));
        assert_eq!(
            second.await?,
            Durable::InLog(vec![Offset(3), Offset(4)]),
            "handed over second, stored second"
        );
        assert_eq!(
            first.await?,
            Durable::InLog(vec![Offset(0), Offset(1), Offset(2)])
        );
        assert_eq!(log.end_offset(), Offset(5));
        assert_eq!(log.read(Offset(3), 10).await?[0].1.topic, "t/0");
        assert_eq!(durability.kafka_reachable(), None);
        log.close().await?;
        Ok(())
    }

    #[tokio::test]
    async fn nothing_to_append_is_durable_at_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = Log::open(LogConfig::new(dir.path()))?;
        let durability = Durability::Embedded(log.clone());
        assert_eq!(durability.store(Vec::new()).await?, Durable::InLog(vec![]));
        assert_eq!(log.end_offset(), Offset(0));
        log.close().await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_closed_log_refuses_with_unspecified_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = Log::open(LogConfig::new(dir.path()))?;
        log.close().await?;
        let durability = Durability::Embedded(log);
        let refused = match durability.store(records(&MessageIds::new(), 1)).await {
            Ok(durable) => return Err(format!("a closed log stored {durable:?}").into()),
            Err(e) => e,
        };
        assert!(matches!(
            refused,
            NotDurable::Log(tributary_log::Error::Closed)
        ));
        assert_eq!(refused.refusal().0, ReasonCode::UnspecifiedError);
        Ok(())
    }

    #[tokio::test]
    async fn a_full_log_refuses_with_quota_exceeded() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = Log::open(LogConfig {
            segment_bytes: 2048,
            max_bytes: 8192,
            ..LogConfig::new(dir.path())
        })?;
        // A consumer that never moves keeps every segment, so the log fills.
        log.commit_offset("slow", Offset(0))?;
        let durability = Durability::Embedded(log.clone());
        let ids = MessageIds::new();
        let mut refused = None;
        for _ in 0..1000 {
            if let Err(e) = durability.store(records(&ids, 10)).await {
                refused = Some(e);
                break;
            }
        }
        let refused = refused.ok_or("the log never filled")?;
        assert_eq!(
            refused.refusal(),
            (ReasonCode::QuotaExceeded, "the log is full")
        );
        log.close().await?;
        Ok(())
    }
}
