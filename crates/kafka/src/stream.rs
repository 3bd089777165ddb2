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
    producer: Producer,
}

impl KafkaStream {
    pub fn new(config: &KafkaConfig) -> crate::Result<KafkaStream> {
        Ok(KafkaStream {
            config: config.clone(),
            producer: Producer::new(config)?,
        })
    }
}

impl Stream for KafkaStream {
    type Position = Position;
    type Consumer = KafkaStreamConsumer;

    async fn append_all(&self, records: Vec<Record>) -> Result<(), String> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            deliveries.push(self.producer.send(record).map_err(|e| e.to_string())?);
        }
        for delivery in deliveries {
            delivery.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn consumer(&self, name: &str) -> Result<KafkaStreamConsumer, String> {
        let consumer = Consumer::new(&self.config, name, &self.config.topics(), Start::Earliest)
            .map_err(|e| e.to_string())?;
        Ok(KafkaStreamConsumer { consumer })
    }
}

pub struct KafkaStreamConsumer {
    consumer: Consumer,
}

impl StreamConsumer for KafkaStreamConsumer {
    type Position = Position;

    async fn next(&mut self, max: usize) -> Result<Vec<(Position, Record)>, String> {
        let mut batch = Vec::new();
        let mut deadline = None;
        while batch.len() < max.max(1) {
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
                batch.push((received.position, record));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            }
        }
        Ok(batch)
    }

    fn commit(&mut self, done: &[Position]) -> Result<(), String> {
        self.consumer.commit(done).map_err(|e| e.to_string())
    }
}
