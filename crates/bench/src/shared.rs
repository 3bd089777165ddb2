//! State the clients of one run share with the coordinator: live counters for
//! the progress line and the stop condition, and the tally of errors.
//!
//! Clients add to the counters once per batch of packets, not per message, so
//! the atomics stay off the hot path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::payload::Clock;
use crate::Error;

/// Distinct error messages kept; further ones are only counted.
const MAX_DISTINCT_ERRORS: usize = 20;

pub(crate) struct Shared {
    pub clock: Clock,
    /// Cancelled when the run stops: every client winds down.
    pub cancel: CancellationToken,
    /// PUBLISH packets queued by publishers.
    pub sent: AtomicU64,
    /// Publishes completed by PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub acked: AtomicU64,
    /// Publishes the broker answered with a failure reason code (5.0).
    pub rejected: AtomicU64,
    /// PUBLISH packets received by subscribers, duplicates included.
    pub received: AtomicU64,
    /// Distinct bench messages received, one counter per subscriber: the run
    /// is complete when each has everything that was acknowledged.
    pub distinct: Vec<AtomicU64>,
    /// Nanoseconds since `clock.start()` of the first and last receive.
    pub first_receive: AtomicU64,
    pub last_receive: AtomicU64,
    /// Clients that connected (and subscribed, for subscribers).
    pub ready: AtomicU64,
    /// Connections currently open (conn mode).
    pub connected: AtomicU64,
    /// Clients that failed to connect or lost their connection.
    pub failed: AtomicU64,
    /// Nanoseconds since `clock.start()` when the last publisher ended, done
    /// or failed (conn mode: when the last connection attempt ended).
    pub last_finish: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn new(subscribers: usize) -> Shared {
        Shared {
            clock: Clock::new(),
            cancel: CancellationToken::new(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            received: AtomicU64::new(0),
            distinct: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            first_receive: AtomicU64::new(u64::MAX),
            last_receive: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_finish: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Nanoseconds since the run's clock started.
    pub fn nanos_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.clock.start()).as_nanos() as u64
    }

    pub fn instant_at(&self, nanos: u64) -> Instant {
        self.clock.start() + Duration::from_nanos(nanos)
    }

    /// Counts a failed client and remembers why.
    pub fn fail(&self, context: &str, error: &Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let message = format!("{context}: {error}");
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < MAX_DISTINCT_ERRORS || errors.contains_key(&message) {
            *errors.entry(message).or_default() += 1;
        } else {
            *errors.entry("(other errors)".into()).or_default() += 1;
        }
    }

    /// Each distinct error message with how often it happened.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}
