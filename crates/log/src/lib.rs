//! The durable log at the centre of Tributary: every message is appended here
//! before it is acknowledged, and every consumer (routing to subscribers,
//! later processing and storage) reads from here and commits its offset.
//!
//! API CONTRACT (the broker codes against exactly this; bodies are to be written):

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested offset was removed by retention; the oldest kept is `start`.
    #[error("offset {requested} is before the log start {start}")]
    OffsetOutOfRange { requested: u64, start: u64 },
    /// The log is at `max_bytes` and retention may not delete the oldest
    /// segment because a consumer still needs it: appends are refused.
    #[error("log is full ({bytes} bytes) and its oldest segment is still needed by consumer {consumer}")]
    Full { bytes: u64, consumer: String },
    /// The log was closed (shutdown) or its writer failed earlier.
    #[error("log is closed")]
    Closed,
    #[error("corrupt log: {0}")]
    Corrupt(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// A position in the log; the first record has offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

/// Unique id of a message, assigned by the broker on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MessageId(pub u128);

/// One received message with everything later consumers need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Unix time in milliseconds when the broker received the message.
    pub receive_time_ms: u64,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5.0 properties of the PUBLISH in wire encoding (without the
    /// property length prefix), empty for 3.1.1.
    pub properties: Bytes,
    pub payload: Bytes,
    pub client_id: String,
    pub message_id: MessageId,
    /// Authenticated owner and device; empty until accounts exist.
    pub owner: String,
    pub device: String,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_age: Option<Duration>,
}

#[derive(Clone)]
pub struct Log {}

impl Log {
    pub fn open(_config: LogConfig) -> Result<Log> {
        todo!()
    }
    /// Resolves once the record is durable (fsync'd, group commit).
    pub async fn append(&self, _record: Record) -> Result<Offset> {
        todo!()
    }
    /// Offset the next record will get; every record below is durable and readable.
    pub fn end_offset(&self) -> Offset {
        todo!()
    }
    pub fn start_offset(&self) -> Offset {
        todo!()
    }
    /// Up to `max` durable records from `from`; empty when `from == end_offset()`.
    pub async fn read(&self, _from: Offset, _max: usize) -> Result<Vec<(Offset, Arc<Record>)>> {
        todo!()
    }
    /// Resolves when `end_offset() > offset`, or when the log closes. Cancel-safe.
    pub async fn wait_beyond(&self, _offset: Offset) {
        todo!()
    }
    pub fn commit_offset(&self, _consumer: &str, _next: Offset) -> Result<()> {
        todo!()
    }
    pub fn committed_offset(&self, _consumer: &str) -> Option<Offset> {
        todo!()
    }
    pub fn remove_consumer(&self, _consumer: &str) -> Result<()> {
        todo!()
    }
    /// Flushes offsets and stops the writer; later appends fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        todo!()
    }
}
