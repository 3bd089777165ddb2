//! What librdkafka reports about the connection to Kafka, turned into one
//! log line when Kafka becomes unreachable and one when it is back (not a
//! line a second while it is away), and into the signal that makes the
//! producer start a new session after an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

/// Whether Kafka is unreachable, shared by a client and its successors.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    down: AtomicBool,
    renew: AtomicBool,
}

impl Outage {
    /// Records that every broker is down; true when it was not before.
    fn went_down(&self) -> bool {
        let newly = !self.down.swap(true, Ordering::Relaxed);
        if newly {
            self.renew.store(true, Ordering::Relaxed);
        }
        newly
    }

    /// Kafka answered: logs the end of an outage.
    pub(crate) fn reachable(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("kafka is reachable again");
        }
    }

    /// True from the moment every broker was reported down until Kafka answers again.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// True once per outage: the producer starts a new session then.
    pub(crate) fn take_renewal(&self) -> bool {
        self.renew.swap(false, Ordering::Relaxed)
    }
}

pub(crate) struct Context {
    client: &'static str,
    outage: Arc<Outage>,
    /// A consumer's group, named in its rebalance lines.
    group: Option<String>,
}

impl Context {
    pub(crate) fn new(client: &'static str, outage: Arc<Outage>) -> Self {
        Context {
            client,
            outage,
            group: None,
        }
    }

    pub(crate) fn consumer(group: &str, outage: Arc<Outage>) -> Self {
        Context {
            client: "consumer",
            outage,
            group: Some(group.to_owned()),
        }
    }
}

/// `topic/partition` for each partition of `list`, in order.
fn partitions(list: &TopicPartitionList) -> String {
    let mut names: Vec<(String, i32)> = list
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    names.sort();
    names
        .iter()
        .map(|(topic, partition)| format!("{topic}/{partition}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka's own lines repeat what `error` reports, once per
        // broker and retry: kept for debugging.
        tracing::debug!(
            client = self.client,
            ?level,
            facility,
            message,
            "librdkafka"
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                if self.outage.went_down() {
                    tracing::warn!(client = self.client, reason,
                        "kafka is unreachable: acknowledgements wait for it (see kafka.ack_timeout_ms)");
                }
            }
            // One per lost connection, and the outage line says it already.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(client = self.client, reason, "kafka connection lost");
            }
            _ => tracing::warn!(client = self.client, error = %error, reason, "kafka client error"),
        }
    }
}

/// One line per rebalance: which partitions this member of the group now
/// reads is what tells an operator how the nodes share the work (and that a
/// stopped node's partitions were taken over).
impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let group = self.group.as_deref().unwrap_or_default();
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(group, partitions = %partitions(list), "kafka partitions assigned")
            }
            Rebalance::Revoke(list) => {
                tracing::info!(group, partitions = %partitions(list), "kafka partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(group, error = %e, "kafka rebalance failed"),
        }
    }
}
