//! Reading records back from Kafka on a consumer group, committing offsets
//! only when the caller says what it has made durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tributary_log::Record;

use crate::context::{Context, Outage};
use crate::producer::client_config;
use crate::{message, Error, KafkaConfig, Result};

/// How long one question to Kafka behind [`Consumer::lag`] may take.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record Kafka still has (a new processor).
    Earliest,
    /// Records produced from now on (a new node's router).
    Latest,
}

/// A record's place in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One message read: the record it carries, or why it carries none.
#[derive(Debug)]
pub struct Received {
    pub position: Position,
    pub record: Result<Record, message::NotARecord>,
}

pub struct Consumer {
    /// Shared with the blocking thread a commit runs on.
    inner: Arc<StreamConsumer<Context>>,
    outage: Arc<Outage>,
    /// What it subscribed to: the topics `watermarks` looks at.
    topics: Vec<String>,
    /// Where a partition it has read nothing from starts, for [`Consumer::lag`].
    start: Start,
}

/// Each partition's offsets at one moment: `(low, high)`, the oldest
/// record Kafka keeps and the offset the next record gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks(pub HashMap<(String, i32), (i64, i64)>);

impl Watermarks {
    /// Records between the low and high marks, summed over the partitions.
    pub fn records(&self) -> u64 {
        self.0
            .values()
            .map(|(low, high)| u64::try_from(high - low).unwrap_or(0))
            .sum()
    }
}

/// How long one metadata or watermark request may take.
const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Consumer {
    /// Joins `group` and subscribes to `topics`.
    pub fn new(
        config: &KafkaConfig,
        group: &str,
        topics: &[String],
        start: Start,
    ) -> Result<Consumer> {
        let outage = Arc::new(Outage::default());
        let inner: StreamConsumer<Context> = client_config(config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                match start {
                    Start::Earliest => "earliest",
                    Start::Latest => "latest",
                },
            )
            .set("session.timeout.ms", "6000")
            .set(
                "max.partition.fetch.bytes",
                crate::producer::MAX_MESSAGE_BYTES.to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(Context::consumer(group, outage.clone()))
            .map_err(|e| Error::kafka("create the consumer", e))?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        inner
            .subscribe(&topics)
            .map_err(|e| Error::kafka("subscribe", e))?;
        Ok(Consumer {
            inner: Arc::new(inner),
            outage,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            start,
        })
    }

    /// The low and high watermarks of every partition of the subscribed
    /// topics, asked of Kafka now (on a blocking thread: each request
    /// waits for Kafka's answer). A topic Kafka does not have is an error.
    pub async fn watermarks(&self) -> Result<Watermarks> {
        let inner = self.inner.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || {
            let mut marks = HashMap::new();
            for topic in topics {
                let metadata = inner
                    .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
                    .map_err(|e| Error::kafka("fetch topic metadata", e))?;
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if partitions.is_empty() {
                    return Err(Error::Config(format!(
                        "Kafka has no topic {topic} (or it has no partitions)"
                    )));
                }
                for partition in partitions {
                    let (low, high) = inner
                        .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                        .map_err(|e| Error::kafka("fetch watermarks", e))?;
                    marks.insert((topic.clone(), partition), (low, high));
                }
            }
            Ok(Watermarks(marks))
        })
        .await
        .map_err(|e| Error::NotStored(format!("fetch watermarks: {e}")))?
    }

    /// The next message; waits for one.
    pub async fn recv(&self) -> Result<Received> {
        let message = self
            .inner
            .recv()
            .await
            .map_err(|e| Error::kafka("receive", e))?;
        self.outage.reachable();
        Ok(Received {
            position: Position {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            },
            record: message::record(message.headers(), message.payload()),
        })
    }

    /// Commits everything up to and including each partition's highest
    /// position in `done` (a restart resumes after it). The commit waits
    /// for Kafka's answer on a blocking thread: while Kafka is away it can
    /// take seconds, which must not hold up the runtime's threads.
    pub async fn commit(&self, done: &[Position]) -> Result<()> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for p in done {
            let entry = next.entry((p.topic.as_str(), p.partition)).or_insert(0);
            *entry = (*entry).max(p.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| Error::kafka("commit", e))?;
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.commit(&list, CommitMode::Sync))
            .await
            .map_err(|e| Error::NotStored(format!("commit: {e}")))?
            .map_err(|e| Error::kafka("commit", e))
    }

    /// Records in this consumer's partitions it has not received yet: per
    /// assigned partition, the high watermark minus the position (the next
    /// offset `recv` returns; for a partition it has read nothing from yet,
    /// the committed offset, else where `start` says). `None` while no
    /// partition is assigned (before the group is joined). The watermarks
    /// are asked of Kafka on a blocking thread, like a commit.
    pub async fn lag(&self) -> Result<Option<u64>> {
        let inner = self.inner.clone();
        let start = self.start;
        tokio::task::spawn_blocking(move || lag_of(&inner, start))
            .await
            .map_err(|e| Error::NotStored(format!("lag: {e}")))?
    }
}

impl Consumer {
    /// Whether this consumer's position in every assigned partition is at
    /// or past `target`'s high watermark of it (a partition `target` does
    /// not name counts as reached): it has read everything that was in
    /// Kafka when `target` was taken. `None` while no partition is
    /// assigned. Asks Kafka on a blocking thread, like a commit.
    pub async fn reached(&self, target: &Watermarks) -> Result<Option<bool>> {
        let inner = self.inner.clone();
        let start = self.start;
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            let Some(positions) = positions_of(&inner, start)? else {
                return Ok(None);
            };
            Ok(Some(positions.iter().all(
                |((topic, partition), position)| {
                    target
                        .0
                        .get(&(topic.clone(), *partition))
                        .is_none_or(|(_, high)| position >= high)
                },
            )))
        })
        .await
        .map_err(|e| Error::NotStored(format!("reached: {e}")))?
    }
}

/// Each assigned partition's position: the next offset `recv` returns; for
/// a partition read nothing from yet, the committed offset, else where
/// `start` says. `None` while no partition is assigned.
fn positions_of(
    consumer: &StreamConsumer<Context>,
    start: Start,
) -> Result<Option<HashMap<(String, i32), i64>>> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("read the assignment", e))?;
    if assignment.count() == 0 {
        return Ok(None);
    }
    let positions = consumer
        .position()
        .map_err(|e| Error::kafka("read the positions", e))?;
    let mut committed: Option<TopicPartitionList> = None;
    let mut out = HashMap::new();
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let position = match positions
            .find_partition(topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(position)) => position,
            _ => {
                if committed.is_none() {
                    committed = Some(
                        consumer
                            .committed(LAG_TIMEOUT)
                            .map_err(|e| Error::kafka("read the committed offsets", e))?,
                    );
                }
                match committed
                    .as_ref()
                    .and_then(|c| c.find_partition(topic, partition))
                    .map(|p| p.offset())
                {
                    Some(Offset::Offset(offset)) => offset,
                    _ => {
                        let (low, high) = consumer
                            .fetch_watermarks(topic, partition, LAG_TIMEOUT)
                            .map_err(|e| Error::kafka("fetch the watermarks", e))?;
                        match start {
                            Start::Earliest => low,
                            Start::Latest => high,
                        }
                    }
                }
            }
        };
        out.insert((topic.to_owned(), partition), position);
    }
    Ok(Some(out))
}

fn lag_of(consumer: &StreamConsumer<Context>, start: Start) -> Result<Option<u64>> {
    let Some(positions) = positions_of(consumer, start)? else {
        return Ok(None);
    };
    let mut lag = 0u64;
    for ((topic, partition), position) in positions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, LAG_TIMEOUT)
            .map_err(|e| Error::kafka("fetch the watermarks", e))?;
        // Below the low watermark means deleted before it was read: gone, not waiting.
        lag += u64::try_from(high - position.max(low)).unwrap_or(0);
    }
    Ok(Some(lag))
}

/// Where a partition starts for a consumer group that has committed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
}

/// For a group that has no committed offset on any partition of `topics`
/// (a new group), commits where each partition is to start
/// (`start(topic, partition)`), so that the group's first member begins
/// there; returns whether it did. A group that committed before is left
/// alone. Blocks (asks Kafka): call it off the async threads.
pub fn seed_group(
    config: &KafkaConfig,
    group: &str,
    topics: &[String],
    start: impl Fn(&str, i32) -> StartAt,
) -> Result<bool> {
    let consumer: rdkafka::consumer::BaseConsumer = client_config(config)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Error::kafka("create the consumer", e))?;
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| Error::kafka("fetch topic metadata", e))?;
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                all.add_partition(topic, p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(all.clone(), METADATA_TIMEOUT)
        .map_err(|e| Error::kafka("read the committed offsets", e))?;
    if committed
        .elements()
        .iter()
        .any(|e| matches!(e.offset(), Offset::Offset(_)))
    {
        return Ok(false);
    }
    let mut seed = TopicPartitionList::new();
    for element in all.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let offset = match start(topic, partition) {
            StartAt::Offset(offset) => offset,
            edge => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                    .map_err(|e| Error::kafka("fetch the watermarks", e))?;
                if edge == StartAt::Earliest {
                    low
                } else {
                    high
                }
            }
        };
        seed.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| Error::kafka("seed the group", e))?;
    }
    consumer
        .commit(&seed, CommitMode::Sync)
        .map_err(|e| Error::kafka("seed the group", e))?;
    Ok(true)
}
