//! [`Unsealed`]: a `Stream` whose consumers hand the sinks plaintext. Each
//! record of an owner is opened with the owner's key (looked up once per
//! owner per batch: the keyring's cache answers the rest); a record whose
//! key is gone comes out blanked — no owner, no device, no payload — so
//! that every sink passes over it as it does anonymous data, and its
//! position is still committed. Never an error loop: a blanked record is
//! counted, and logged once per owner.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tributary_log::{Batch, ReadToEnd, Record, Stream, StreamConsumer, StreamError};
use tributary_rights::owner_keys::{Keyring, Opened};

/// Owners remembered as "already logged" at most; beyond, an erased owner
/// may be logged again (a log line, never unbounded memory).
const LOGGED_OWNERS: usize = 10_000;

/// What erasure made the sinks skip, since start (for `/metrics`).
#[derive(Debug, Default)]
pub struct ErasureStats {
    /// Records passed over because their owner's key is destroyed.
    pub key_gone: AtomicU64,
    /// Records passed over because their sealed payload does not open
    /// (tampered, or written under another master key).
    pub unopenable: AtomicU64,
    logged: Mutex<HashSet<String>>,
}

impl ErasureStats {
    fn key_gone(&self, owner: &str, consumer: &str) {
        self.key_gone.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < LOGGED_OWNERS && logged.insert(owner.to_owned()) {
            tracing::info!(
                owner,
                consumer,
                "records of an erased owner are skipped (their key is destroyed)"
            );
        }
    }
}

/// `S` read through the keyring; appends pass through unchanged (they come
/// from the broker, which sealed them).
pub struct Unsealed<'a, S> {
    inner: &'a S,
    keyring: Arc<Keyring>,
    stats: Arc<ErasureStats>,
}

impl<'a, S> Unsealed<'a, S> {
    pub fn new(inner: &'a S, keyring: Arc<Keyring>, stats: Arc<ErasureStats>) -> Self {
        Unsealed {
            inner,
            keyring,
            stats,
        }
    }
}

impl<S: Stream> Stream for Unsealed<'_, S>
where
    S::Consumer: Sync,
    S::Position: Sync,
{
    type Position = S::Position;
    type Consumer = UnsealedConsumer<S::Consumer>;

    async fn append_all(&self, records: Vec<Record>) -> Result<(), StreamError> {
        self.inner.append_all(records).await
    }

    fn consumer(&self, name: &str) -> Result<Self::Consumer, StreamError> {
        Ok(UnsealedConsumer::new(
            self.inner.consumer(name)?,
            Arc::clone(&self.keyring),
            Arc::clone(&self.stats),
            name,
        ))
    }
}

/// A consumer whose batches are opened (see the module docs).
pub struct UnsealedConsumer<C: StreamConsumer> {
    inner: C,
    keyring: Arc<Keyring>,
    stats: Arc<ErasureStats>,
    name: String,
    /// A batch read but not yet opened (the key store was away, or the
    /// call was dropped): handed out first, so no record is lost.
    pending: Option<Batch<C::Position>>,
}

impl<C: StreamConsumer> UnsealedConsumer<C> {
    pub fn new(inner: C, keyring: Arc<Keyring>, stats: Arc<ErasureStats>, name: &str) -> Self {
        UnsealedConsumer {
            inner,
            keyring,
            stats,
            name: name.to_owned(),
            pending: None,
        }
    }

    /// The batch with every sealed payload opened or blanked. A key store
    /// error leaves `batch` as it was for the next try.
    async fn open(&self, batch: &Batch<C::Position>) -> Result<Batch<C::Position>, StreamError> {
        let mut opened = Vec::with_capacity(batch.len());
        // Per batch, each owner's key once (the cache makes repeats cheap,
        // this makes them free).
        let mut gone: HashMap<&str, bool> = HashMap::new();
        for (position, record) in batch {
            // What no sink decodes stays sealed (and costs nothing here).
            if crate::process::senml_format(record).is_none()
                || !tributary_rights::seal::is_sealed(&record.payload)
            {
                opened.push((position.clone(), Arc::clone(record)));
                continue;
            }
            if gone.get(record.owner.as_str()) == Some(&true) {
                opened.push((position.clone(), blank(record)));
                continue;
            }
            let outcome = self.keyring.open(&record.owner, &record.payload).await;
            let record = match outcome {
                Ok(Opened::Plain) => Arc::clone(record),
                Ok(Opened::Unsealed(plain)) => {
                    gone.insert(&record.owner, false);
                    let mut copy = (**record).clone();
                    copy.payload = plain.into();
                    Arc::new(copy)
                }
                Ok(Opened::KeyGone) => {
                    gone.insert(&record.owner, true);
                    self.stats.key_gone(&record.owner, &self.name);
                    blank(record)
                }
                Err(tributary_rights::Error::KeyStore(e)) => {
                    return Err(StreamError::Unavailable(
                        format!("read owners' keys: {e}").into(),
                    ));
                }
                Err(e) => {
                    self.stats.unopenable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(owner = %record.owner, consumer = %self.name, error = %e, "a sealed payload does not open; passed over");
                    blank(record)
                }
            };
            opened.push((position.clone(), record));
        }
        Ok(opened)
    }
}

/// The record with nothing of its owner left: sinks pass it over as anonymous.
fn blank(record: &Record) -> Arc<Record> {
    Arc::new(Record {
        owner: String::new(),
        device: String::new(),
        payload: bytes::Bytes::new(),
        properties: bytes::Bytes::new(),
        ..record.clone()
    })
}

impl<C: StreamConsumer + Sync> StreamConsumer for UnsealedConsumer<C>
where
    C::Position: Sync,
{
    type Position = C::Position;

    async fn next(&mut self, max: usize) -> Result<Batch<C::Position>, StreamError> {
        if self.pending.is_none() {
            self.pending = Some(self.inner.next(max).await?);
        }
        let batch = self.pending.as_ref().expect("set above");
        let opened = self.open(batch).await?;
        self.pending = None;
        Ok(opened)
    }

    async fn commit(&mut self, done: &[C::Position]) -> Result<(), StreamError> {
        self.inner.commit(done).await
    }

    async fn lag(&self) -> Option<u64> {
        self.inner.lag().await
    }
}

impl<C: ReadToEnd + Sync> ReadToEnd for UnsealedConsumer<C>
where
    C::Position: Sync,
{
    type End = C::End;

    async fn end(&self) -> Result<C::End, StreamError> {
        self.inner.end().await
    }

    fn reached(&self, end: &C::End) -> bool {
        // A pending batch is not handed out yet: not reached before it is.
        self.pending.is_none() && self.inner.reached(end)
    }
}
