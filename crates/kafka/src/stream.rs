//! Kafka behind the backend-neutral [`tributary_log::Stream`]: appends go
//! through the idempotent producer, consumers are consumer groups named
//! after the consumer, starting at the oldest record when new.

use std::time::Duration;

use tributary_log::{Record, Stream, StreamConsumer};

use crate::{Consumer, KafkaConfig, Position, Producer, Start};

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

    fn producer(&self) -> Result<&Producer, String> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let producer = Producer::new(&self.config).map_err(|e| e.to_string())?;
        Ok(self.producer.get_or_init(|| producer))
    }
}

impl Stream for KafkaStream {
    type Position = Position;
    type Consumer = KafkaStreamConsumer;

    async fn append_all(&self, records: Vec<Record>) -> Result<(), String> {
        let producer = self.producer()?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            deliveries.push(producer.send(record).map_err(|e| e.to_string())?);
        }
        for delivery in deliveries {
            delivery.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn consumer(&self, name: &str) -> Result<KafkaStreamConsumer, String> {
        let consumer = Consumer::new(&self.config, name, &self.config.topics(), Start::Earliest)
            .map_err(|e| e.to_string())?;
        Ok(KafkaStreamConsumer {
            consumer,
            pending: Vec::new(),
        })
    }
}

pub struct KafkaStreamConsumer {
    consumer: Consumer,
    /// Records received by a `next` that was dropped before it returned
    /// them (the pipeline waits for `next` with a timeout): the next call
    /// starts with them, so `next` is cancel-safe.
    pending: Vec<(Position, Record)>,
}

impl StreamConsumer for KafkaStreamConsumer {
    type Position = Position;

    async fn next(&mut self, max: usize) -> Result<Vec<(Position, Record)>, String> {
        // Cancel-safe: what arrives is kept in `self.pending` at once (and
        // `recv` itself loses nothing when dropped).
        let mut deadline = (!self.pending.is_empty()).then(|| tokio::time::Instant::now() + LINGER);
        while self.pending.len() < max.max(1) {
            let received = match deadline {
                None => self.consumer.recv().await,
                Some(at) => match tokio::time::timeout_at(at, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => break,
                },
            }
            .map_err(|e| e.to_string())?;
            // Messages that are no Tributary record are skipped.
            if let Ok(record) = received.record {
                self.pending.push((received.position, record));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            }
        }
        Ok(std::mem::take(&mut self.pending))
    }

    async fn commit(&mut self, done: &[Position]) -> Result<(), String> {
        self.consumer.commit(done).await.map_err(|e| e.to_string())
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
