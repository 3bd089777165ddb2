//! What a consumer of the log needs, whatever the backend: append records
//! durably, read them back under a consumer name from where that name last
//! committed. The embedded [`Log`] implements it here; the Kafka backend
//! (crate `tributary-kafka`) implements it on consumer groups. Processors
//! written against [`Stream`] run on both, and [`conformance`] is the test
//! body both backends pass.
//!
//! Every call fails with a [`StreamError`], whose variant says who is at
//! fault and so what a caller does next: call again later, start again from
//! where the stream now begins, stop, or give up and tell an operator.

use std::future::Future;
use std::sync::Arc;

use crate::{Error, Log, Offset, Record, Result};

/// The cause a backend gives, kept as it is: it belongs to the backend's crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a [`Stream`], [`StreamConsumer`] or [`ReadToEnd`] call failed,
/// grouped by who is at fault. The message is the cause's own (which names
/// what failed); the variant is what callers decide on
/// ([`StreamError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The backend cannot serve the call now: Kafka is unreachable or did
    /// not answer in time, a queue is full, the embedded log is full until
    /// a consumer moves on. The same call may succeed later.
    #[error("{0}")]
    Unavailable(#[source] BoxError),
    /// The position to read from is gone: retention deleted it before it
    /// was read. Reading it again fails again; a new consumer under the
    /// same name starts where the stream now begins.
    #[error("{0}")]
    PositionGone(#[source] BoxError),
    /// The stream was closed (shutdown, or the embedded log's writer
    /// failed): nothing more will come through this handle.
    #[error("{0}")]
    Closed(#[source] BoxError),
    /// The backend's own storage failed in a way waiting does not mend: a
    /// disk error, data that cannot be decoded.
    #[error("{0}")]
    Storage(#[source] BoxError),
    /// The call or the configuration is wrong: a consumer name the backend
    /// refuses, a topic Kafka does not have, access Kafka denies, a record
    /// too large. Retrying does not help until someone changes something.
    #[error("{0}")]
    Invalid(#[source] BoxError),
}

impl StreamError {
    /// Whether the same call may succeed later (only for
    /// [`StreamError::Unavailable`]: the backend is away, not wrong).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StreamError::Unavailable(_))
    }
}

/// The embedded log's errors by who is at fault.
impl From<Error> for StreamError {
    fn from(e: Error) -> StreamError {
        match e {
            // Back-pressure: appends resume once a consumer commits.
            Error::Full { .. } => StreamError::Unavailable(e.into()),
            Error::OffsetOutOfRange { .. } => StreamError::PositionGone(e.into()),
            Error::Closed => StreamError::Closed(e.into()),
            // An over-long consumer name (`check_consumer_name`).
            Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
                StreamError::Invalid(e.into())
            }
            Error::Corrupt(_) | Error::Locked { .. } | Error::Io { .. } => {
                StreamError::Storage(e.into())
            }
        }
    }
}

/// What a consumer reads at once: records with their positions, shared
/// (the embedded log hands out its cached records without a copy).
pub type Batch<P> = Vec<(P, Arc<Record>)>;

/// A log as consumers see it.
pub trait Stream: Send + Sync {
    type Position: Clone + Send + std::fmt::Debug;
    type Consumer: StreamConsumer<Position = Self::Position>;

    /// Resolves once every record is durable.
    fn append_all(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), StreamError>> + Send;

    /// A consumer named `name`: it starts after the last position committed
    /// under that name, or at the oldest record when there is none.
    fn consumer(&self, name: &str) -> Result<Self::Consumer, StreamError>;
}

pub trait StreamConsumer: Send {
    type Position: Clone + Send + std::fmt::Debug;

    /// Up to `max` records, waiting for at least one. Cancel-safe: a call
    /// dropped before it resolved loses no record (the next call returns
    /// it), so callers may wait for it with a timeout.
    fn next(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Batch<Self::Position>, StreamError>> + Send;

    /// Marks everything up to and including `done` as processed.
    fn commit(
        &mut self,
        done: &[Self::Position],
    ) -> impl Future<Output = Result<(), StreamError>> + Send;

    /// How many durable records this consumer has not read yet (`next`
    /// returned them: a record read but not committed is not lag); 0 when
    /// it is caught up. `None` when the backend cannot tell right now.
    fn lag(&self) -> impl Future<Output = Option<u64>> + Send;
}

/// A consumer that can tell when it has read everything the log held at
/// one moment: where a batch job over the whole log (`tributary reprocess`)
/// stops, however many records are appended meanwhile.
pub trait ReadToEnd: StreamConsumer {
    /// Where the log ends, per backend: one offset, or one per partition.
    type End: Send + Sync + std::fmt::Debug;

    /// Where the log ends now.
    fn end(&self) -> impl Future<Output = Result<Self::End, StreamError>> + Send;

    /// Whether `next` has returned (or passed over, when it is no record)
    /// everything before `end`. Checked between calls of `next`, which
    /// waits when there is nothing more.
    fn reached(&self, end: &Self::End) -> bool;
}

impl Stream for Log {
    type Position = Offset;
    type Consumer = LogConsumer;

    async fn append_all(&self, records: Vec<Record>) -> Result<(), StreamError> {
        if records.is_empty() {
            return Ok(());
        }
        self.append_batch(records).await?;
        Ok(())
    }

    fn consumer(&self, name: &str) -> Result<LogConsumer, StreamError> {
        let next = self.committed_offset(name).unwrap_or(self.start_offset());
        Ok(LogConsumer {
            log: self.clone(),
            name: name.to_owned(),
            next,
        })
    }
}

/// A named reader of the embedded log; its commits are the log's consumer offsets.
pub struct LogConsumer {
    log: Log,
    name: String,
    next: Offset,
}

impl StreamConsumer for LogConsumer {
    type Position = Offset;

    /// Records made durable before the log closed are still returned;
    /// then [`StreamError::Closed`].
    async fn next(&mut self, max: usize) -> Result<Batch<Offset>, StreamError> {
        loop {
            let batch = self.log.read(self.next, max).await?;
            if let Some((last, _)) = batch.last() {
                self.next = Offset(last.0 + 1);
                // Shared with the log's cache: no copy per consumer.
                return Ok(batch);
            }
            // `wait_beyond` returns at once on a closed log: without this
            // the loop would spin for ever.
            if self.log.is_closed() {
                return Err(Error::Closed.into());
            }
            self.log.wait_beyond(self.next).await;
        }
    }

    async fn commit(&mut self, done: &[Offset]) -> Result<(), StreamError> {
        match done.iter().max() {
            Some(last) => Ok(self.log.commit_offset(&self.name, Offset(last.0 + 1))?),
            None => Ok(()),
        }
    }

    async fn lag(&self) -> Option<u64> {
        // Records below the log start were deleted by retention before this
        // consumer read them: they are gone, not waiting.
        let next = self.next.max(self.log.start_offset());
        Some(self.log.end_offset().0.saturating_sub(next.0))
    }
}

impl ReadToEnd for LogConsumer {
    type End = Offset;

    async fn end(&self) -> Result<Offset, StreamError> {
        Ok(self.log.end_offset())
    }

    fn reached(&self, end: &Offset) -> bool {
        self.next >= *end
    }
}

/// The test body every backend passes (run by each backend's own tests):
/// records appended durably are read back by a named consumer; a consumer
/// that commits half and starts again under the same name gets every
/// uncommitted record and none it committed; another name reads everything.
/// Payloads must be unique per call: pass a fresh `tag`.
pub mod conformance {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::{BoxError, ReadToEnd, Stream, StreamConsumer};
    use crate::Record;

    const COUNT: usize = 200;
    const PATIENCE: Duration = Duration::from_secs(30);

    fn payload(tag: &str, i: usize) -> String {
        format!("{tag}-{i:05}")
    }

    /// `COUNT` records of four devices whose payloads are `{tag}-00000`…
    fn numbered(tag: &str) -> Vec<Record> {
        (0..COUNT)
            .map(|i| Record {
                topic: format!("tributary/v1/conformance/{}", i % 4),
                device: format!("conformance-{}", i % 4),
                payload: payload(tag, i).into(),
                qos: 1,
                ..Record::default()
            })
            .collect()
    }

    /// Reads until `want` distinct payloads of this run were seen (bounded in time).
    async fn read_until<C: StreamConsumer>(
        consumer: &mut C,
        tag: &str,
        want: usize,
        commit_after: Option<usize>,
    ) -> Result<BTreeSet<String>, BoxError> {
        let mut seen = BTreeSet::new();
        // Everything read so far is committed at once: on a partitioned
        // backend each partition's progress is its own.
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while seen.len() < want {
            let batch = tokio::time::timeout_at(deadline, consumer.next(64))
                .await
                .map_err(|_| {
                    format!("only {} of {want} records within {PATIENCE:?}", seen.len())
                })??;
            for (position, record) in batch {
                let text = String::from_utf8_lossy(&record.payload).into_owned();
                if !text.starts_with(tag) {
                    continue;
                }
                seen.insert(text);
                read.push(position);
                if commit_after == Some(seen.len()) {
                    consumer.commit(&read).await?;
                    return Ok(seen);
                }
            }
        }
        Ok(seen)
    }

    pub async fn consume_commit_resume<S: Stream>(stream: &S, tag: &str) -> Result<(), BoxError> {
        stream.append_all(numbered(tag)).await?;

        let first_name = format!("{tag}-first");
        let mut first = stream.consumer(&first_name)?;
        let half = read_until(&mut first, tag, COUNT, Some(COUNT / 2)).await?;
        drop(first);
        // Within one key, records are read in the order they were appended,
        // so what was committed is a prefix of each key's records.
        let mut again = stream.consumer(&first_name)?;
        let rest = read_until(&mut again, tag, COUNT - half.len(), None).await?;
        let all: BTreeSet<String> = (0..COUNT).map(|i| payload(tag, i)).collect();
        let union: BTreeSet<String> = half.union(&rest).cloned().collect();
        if union != all {
            return Err(format!(
                "resumed consumer missed {} records",
                all.difference(&union).count()
            )
            .into());
        }
        let repeated = half.intersection(&rest).count();
        if repeated > 0 {
            return Err(format!("{repeated} committed records were read again").into());
        }
        let mut other = stream.consumer(&format!("{tag}-other"))?;
        let everything = read_until(&mut other, tag, COUNT, None).await?;
        if everything != all {
            return Err("a new consumer name did not read every record".into());
        }
        Ok(())
    }

    /// A consumer reads up to the end it saw and knows it is there, while
    /// records appended after that moment keep arriving: every record
    /// appended before `end` was read when `reached` says so, and `reached`
    /// says so (within the patience) although the log keeps growing.
    pub async fn read_to_end<S>(stream: &S, tag: &str) -> Result<(), BoxError>
    where
        S: Stream,
        S::Consumer: ReadToEnd,
    {
        stream
            .append_all(numbered(&format!("{tag}-before")))
            .await?;
        let mut consumer = stream.consumer(&format!("{tag}-to-end"))?;
        let end = consumer.end().await?;
        stream.append_all(numbered(&format!("{tag}-after"))).await?;
        let before = format!("{tag}-before-");
        let mut seen = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !consumer.reached(&end) {
            let batch = tokio::time::timeout_at(deadline, consumer.next(64))
                .await
                .map_err(|_| {
                    format!(
                        "end {end:?} not reached within {PATIENCE:?} ({} of {COUNT} records before it read)",
                        seen.len()
                    )
                })??;
            for (_, record) in batch {
                let text = String::from_utf8_lossy(&record.payload).into_owned();
                if text.starts_with(&before) {
                    seen.insert(text);
                }
            }
        }
        if seen.len() != COUNT {
            return Err(format!(
                "reached the end having read {} of the {COUNT} records before it",
                seen.len()
            )
            .into());
        }
        Ok(())
    }

    /// Waits (bounded) until the consumer's lag is `want`.
    async fn lag_becomes<C: StreamConsumer>(consumer: &C, want: u64) -> Result<(), BoxError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let lag = consumer.lag().await;
            if lag == Some(want) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("lag is {lag:?}, not {want}, after {PATIENCE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A consumer's lag counts the records it has not read: all of them
    /// before it starts (where the backend already knows its share), those
    /// left after it read some, 0 once it read everything. The stream must
    /// hold only this call's records (a fresh log or topic).
    pub async fn lag_counts_unread_records<S: Stream>(
        stream: &S,
        tag: &str,
    ) -> Result<(), BoxError> {
        stream.append_all(numbered(tag)).await?;
        let mut consumer = stream.consumer(&format!("{tag}-lag"))?;
        // A Kafka consumer has no partitions before it joined its group.
        match consumer.lag().await {
            None => {}
            Some(lag) if lag == COUNT as u64 => {}
            Some(lag) => return Err(format!("lag {lag} before reading, not {COUNT}").into()),
        }
        let mut read = 0;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while read < COUNT / 2 {
            let batch = tokio::time::timeout_at(deadline, consumer.next(10))
                .await
                .map_err(|_| format!("only {read} of {COUNT} records within {PATIENCE:?}"))??;
            read += batch.len();
        }
        lag_becomes(&consumer, (COUNT - read) as u64).await?;
        while read < COUNT {
            let batch = tokio::time::timeout_at(deadline, consumer.next(64))
                .await
                .map_err(|_| format!("only {read} of {COUNT} records within {PATIENCE:?}"))??;
            read += batch.len();
        }
        lag_becomes(&consumer, 0).await
    }
}
