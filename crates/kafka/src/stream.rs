//! Kafka behind the backend-neutral [`tributary_log::Stream`]: appends go
//! through the idempotent producer, consumers are consumer groups named
//! after the consumer, starting at the oldest record when new.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tributary_log::{Batch, ReadToEnd, Record, Stream, StreamConsumer, StreamError};

use crate::{Consumer, KafkaConfig, Position, Producer, Start, Watermarks};

/// How long `next` waits for more records once it has one.
const LINGER: Duration = Duration::from_millis(5);

pub struct KafkaStream {
    config: KafkaConfig,
    /// Made by the first append: a stream that only consumes (the
    /// pipeline) has no producer.
    producer: std::sync::OnceLock<Producer>,
}

impl KafkaStream {
    pub fn new(config: &KafkaConfig) -> crate::Result<KafkaStream> {
        Ok(KafkaStream {
            config: config.clone(),
            producer: std::sync::OnceLock::new(),
        })
    }

    fn producer(&self) -> Result<&Producer, StreamError> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let producer = Producer::new(&self.config)?;
        Ok(self.producer.get_or_init(|| producer))
    }
}

impl Stream for KafkaStream {
    type Position = Position;
    type Consumer = KafkaStreamConsumer;

    async fn append_all(&self, records: Vec<Record>) -> Result<(), StreamError> {
        let producer = self.producer()?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            deliveries.push(producer.send(record)?);
        }
        for delivery in deliveries {
            delivery.await?;
        }
        Ok(())
    }

    fn consumer(&self, name: &str) -> Result<KafkaStreamConsumer, StreamError> {
        let consumer = Consumer::new(&self.config, name, &self.config.topics(), Start::Earliest)?;
        Ok(KafkaStreamConsumer {
            consumer,
            pending: Vec::new(),
            read: HashMap::new(),
        })
    }
}

pub struct KafkaStreamConsumer {
    consumer: Consumer,
    /// The batch being gathered, kept here rather than in `next`'s frame.
    pending: Vec<(Position, Arc<Record>)>,
    /// Per partition, the offset after the last message `next` took,
    /// records and others alike: how `reached` knows where it is.
    read: HashMap<(String, i32), i64>,
}

impl StreamConsumer for KafkaStreamConsumer {
    type Position = Position;

    /// Up to `max` records, waiting for at least one message: a batch is
    /// empty when only messages that are no record came (so that a reader
    /// looking for the end of the log learns it passed them). Cancel-safe:
    /// records received by a cancelled call are kept for the next one (a
    /// sink that waits on `next` and a timer at once loses nothing).
    async fn next(&mut self, max: usize) -> Result<Batch<Position>, StreamError> {
        let mut deadline = (!self.pending.is_empty()).then(|| tokio::time::Instant::now() + LINGER);
        while self.pending.len() < max.max(1) {
            let received = match deadline {
                None => self.consumer.recv().await,
                Some(at) => match tokio::time::timeout_at(at, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => break,
                },
            }?;
            let Position {
                topic,
                partition,
                offset,
            } = &received.position;
            let read = self
                .read
                .entry((topic.clone(), *partition))
                .or_insert(offset + 1);
            *read = (*read).max(offset + 1);
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            // Messages that are no Tributary record are skipped.
            if let Ok(record) = received.record {
                self.pending.push((received.position, Arc::new(record)));
            }
        }
        Ok(std::mem::take(&mut self.pending))
    }

    async fn commit(&mut self, done: &[Position]) -> Result<(), StreamError> {
        Ok(self.consumer.commit(done).await?)
    }

    async fn lag(&self) -> Option<u64> {
        // Records received but still in `pending` have not been read.
        match self.consumer.lag().await {
            Ok(lag) => lag.map(|lag| lag + self.pending.len() as u64),
            Err(e) => {
                tracing::debug!(error = %e, "kafka consumer lag");
                None
            }
        }
    }
}

/// The end is each partition's high watermark when `end` was called. A
/// partition is done once a message at or after its mark's predecessor was
/// read, or when it held nothing (low = high). Tributary's producer writes
/// no transactions, so its topics have no control records that could make
/// the last offset below the mark unreadable.
impl ReadToEnd for KafkaStreamConsumer {
    type End = Watermarks;

    async fn end(&self) -> Result<Watermarks, StreamError> {
        Ok(self.consumer.watermarks().await?)
    }

    fn reached(&self, end: &Watermarks) -> bool {
        end.0.iter().all(|(partition, (low, high))| {
            high <= low || self.read.get(partition).is_some_and(|read| read >= high)
        })
    }
}
