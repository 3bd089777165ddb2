//! A compacted Kafka topic used as a table shared by the nodes: each key's
//! latest value is what counts (Kafka's log compaction keeps at least that
//! one), every node reads the whole topic from its start and then follows
//! it, and a write's offset orders it against every other write of its key
//! (one key, one partition). The broker keeps its cluster-wide session
//! directory here.
//!
//! Readers use no consumer group: each assigns itself every partition from
//! the beginning, so a thousand nodes cost Kafka no rebalancing, and nobody
//! commits anything.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use rdkafka::message::OwnedHeaders;
use tributary_log::Record;

use crate::context::{Context, Outage};
use crate::message::{self, NotARecord};
use crate::producer::client_config;
use crate::{Delivered, Error, KafkaConfig, Result};

/// How long creating the topic or asking for its partitions may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One entry read from the table: `value` is `None` for a tombstone (the
/// key was deleted).
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub partition: i32,
    pub offset: i64,
    headers: Option<OwnedHeaders>,
}

impl TableEntry {
    /// The log record an entry written by [`TableWriter::put_record`] holds;
    /// `None` for a tombstone.
    pub fn record(&self) -> Option<Result<Record, NotARecord>> {
        let value = self.value.as_deref()?;
        Some(message::record(self.headers.as_ref(), Some(value)))
    }
}

/// Creates `topic` as a compacted topic with `config.partitions`
/// partitions when it does not exist yet.
pub async fn ensure_table(config: &KafkaConfig, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| Error::kafka("create the admin client", e))?;
    let new = NewTopic::new(topic, config.partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| Error::kafka("create a compacted topic", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "kafka compacted topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Config(format!(
                    "create the compacted Kafka topic {topic}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Writes to the table: idempotent, `acks=all`.
pub struct TableWriter {
    inner: FutureProducer<Context>,
    topic: String,
}

impl TableWriter {
    pub fn new(config: &KafkaConfig, topic: &str) -> Result<TableWriter> {
        let inner = client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                config.ack_timeout.as_millis().to_string(),
            )
            .create_with_context(Context::new("table writer", Arc::new(Outage::default())))
            .map_err(|e| Error::kafka("create the table producer", e))?;
        Ok(TableWriter {
            inner,
            topic: topic.to_owned(),
        })
    }

    /// Hands `value` to Kafka under `key` now (`None`: a tombstone), behind
    /// every write handed over before it; the future resolves with where
    /// Kafka stored it once Kafka acknowledged it.
    pub fn put(
        &self,
        key: &str,
        value: Option<&[u8]>,
    ) -> impl Future<Output = Result<Delivered>> + Send + 'static {
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let handed = self
            .inner
            .send_result(record)
            .map_err(|(e, _)| Error::NotStored(e.to_string()));
        delivered(handed)
    }
}

impl TableWriter {
    /// Hands `record` to Kafka under `key` in the layout of a record in the
    /// log's topics (its payload as the value, the rest as headers; `None`:
    /// a tombstone); the future resolves once Kafka acknowledged it.
    pub fn put_record(
        &self,
        key: &str,
        record: Option<&Record>,
    ) -> impl Future<Output = Result<Delivered>> + Send + 'static {
        let mut future_record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(record) = record {
            future_record = future_record
                .payload(record.payload.as_ref())
                .headers(message::headers(record));
        }
        let handed = self
            .inner
            .send_result(future_record)
            .map_err(|(e, _)| Error::NotStored(e.to_string()));
        delivered(handed)
    }
}

/// What Kafka said of a write handed over.
async fn delivered(handed: Result<rdkafka::producer::DeliveryFuture>) -> Result<Delivered> {
    match handed?.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((e, _))) => Err(Error::NotStored(e.to_string())),
        Err(_) => Err(Error::NotStored("the producer was dropped".into())),
    }
}

/// How long a table's topic may stay unknown, or its partitions without a
/// leader, before reading it fails: a topic just created on a cluster of
/// several brokers is neither known everywhere nor led at once.
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// The partitions of `topic`, asked again while the topic is not known to
/// the broker answering yet (just created on another broker; blocking).
/// Empty when the topic does not appear within [`LEADER_WAIT`].
fn settled_partitions(
    consumer: &StreamConsumer<Context>,
    topic: &str,
) -> rdkafka::error::KafkaResult<Vec<i32>> {
    let deadline = std::time::Instant::now() + LEADER_WAIT;
    loop {
        let partitions: Vec<i32> = match consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect(),
            Err(e) if leader_pending(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        if !partitions.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(partitions);
        }
        tracing::debug!(%topic, "table topic not in the metadata yet; asking again");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A partition's low and high watermarks, asked again while the partition
/// has no leader yet (blocking).
fn settled_watermarks(
    consumer: &StreamConsumer<Context>,
    topic: &str,
    partition: i32,
) -> rdkafka::error::KafkaResult<(i64, i64)> {
    let deadline = std::time::Instant::now() + LEADER_WAIT;
    loop {
        match consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT) {
            Err(e) if leader_pending(&e) && std::time::Instant::now() < deadline => {
                tracing::debug!(%topic, partition, error = %e, "table partition without a leader yet; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Whether `e` says a partition's leadership is still being settled.
fn leader_pending(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

/// Reads the whole table from its start, then follows it.
pub struct TableReader {
    inner: StreamConsumer<Context>,
    ends: HashMap<i32, (i64, i64)>,
}

impl TableReader {
    /// Assigns every partition of `topic` from its beginning. Blocks while
    /// asking Kafka for the topic's partitions: call it off the async threads.
    pub fn new(config: &KafkaConfig, topic: &str) -> Result<TableReader> {
        let outage = Arc::new(Outage::default());
        let inner: StreamConsumer<Context> = client_config(config)
            // Needed by librdkafka's consumer, though nothing joins or commits.
            .set("group.id", format!("{}-table-reader", config.group_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Context::consumer(topic, outage))
            .map_err(|e| Error::kafka("create the table reader", e))?;
        let partitions = settled_partitions(&inner, topic)
            .map_err(|e| Error::kafka("fetch the table's metadata", e))?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for partition in partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| Error::kafka("assign the table's partitions", e))?;
            let marks = settled_watermarks(&inner, topic, partition)
                .map_err(|e| Error::kafka("fetch the table's watermarks", e))?;
            ends.insert(partition, marks);
        }
        if assignment.count() == 0 {
            return Err(Error::Config(format!(
                "Kafka has no topic {topic} (or it has no partitions)"
            )));
        }
        inner
            .assign(&assignment)
            .map_err(|e| Error::kafka("assign the table's partitions", e))?;
        Ok(TableReader { inner, ends })
    }

    /// Each partition's low and high watermarks when the reader started:
    /// the table is read whole once every partition was read up to its
    /// high mark.
    pub fn ends(&self) -> &HashMap<i32, (i64, i64)> {
        &self.ends
    }

    /// The next entry; waits for one.
    pub async fn recv(&self) -> Result<TableEntry> {
        let message = self
            .inner
            .recv()
            .await
            .map_err(|e| Error::kafka("receive", e))?;
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        Ok(TableEntry {
            key,
            value: message.payload().map(<[u8]>::to_vec),
            partition: message.partition(),
            offset: message.offset(),
            headers: message.headers().map(|h| h.detach()),
        })
    }
}
