//! The broker's own figures for `/metrics`: messages in and out, and how
//! long the log (or Kafka) takes to make a batch of publishes durable.
//!
//! Everything here is updated on the hot path (hundreds of thousands of
//! messages a second), so it is relaxed atomics only: no lock, no
//! allocation. Connections update them once per batch (one read of the
//! socket, one delivery round), not once per message, so two cores do not
//! fight over these cache lines for every PUBLISH. Readers take a
//! snapshot that may be a few updates apart between fields; every figure
//! is monotone, which is all a Prometheus counter promises.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the append-latency buckets, in nanoseconds: 100 µs to
/// 10 s, about three per decade. A group commit on a local disk takes
/// 0.1–10 ms; Kafka with `acks=all` a few ms; seconds mean an outage.
const APPEND_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Counters of one broker.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// PUBLISH packets accepted from clients and handed to the log (those
    /// refused by the ACL or a limit are not counted).
    received: AtomicU64,
    /// PUBLISH packets written to subscribers (retries with DUP included).
    sent: AtomicU64,
    /// Log records sessions never examined because retention deleted them
    /// first (the session was away or slow past the log's bounds).
    skipped: AtomicU64,
    /// Records not sent to a subscriber because their owner was erased
    /// (the payload's key is destroyed; docs/erasure.md). Rare: added to
    /// once per record, not batched.
    erased: AtomicU64,
    /// Retained wills not published because their owner's retained
    /// messages were at `limits.max_retained_per_owner` or its bytes bound.
    wills_refused: AtomicU64,
    append: LatencyHistogram,
}

impl BrokerStats {
    pub(crate) fn add_received(&self, count: u64) {
        self.received.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn add_sent(&self, count: u64) {
        self.sent.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn add_erased(&self) {
        self.erased.fetch_add(1, Ordering::Relaxed);
    }

    /// Records not delivered because their owner was erased.
    pub fn records_of_erased_owners(&self) -> u64 {
        self.erased.load(Ordering::Relaxed)
    }

    pub(crate) fn add_will_refused(&self) {
        self.wills_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Retained wills not published: over their owner's retained bounds.
    pub fn wills_refused(&self) -> u64 {
        self.wills_refused.load(Ordering::Relaxed)
    }

    pub(crate) fn add_skipped(&self, count: u64) {
        self.skipped.fetch_add(count, Ordering::Relaxed);
    }

    /// Log records that sessions lost to retention before reading them
    /// (an upper bound on messages lost: not all were for the session).
    pub fn records_skipped_by_sessions(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// `count` publishes handed to the log together became durable after `took`.
    pub(crate) fn observe_append(&self, took: Duration, count: u64) {
        self.append.observe(took, count);
    }

    /// PUBLISH packets accepted from clients since the broker started.
    pub fn messages_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// PUBLISH packets sent to subscribers since the broker started.
    pub fn messages_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Seconds from handing a publish to the log until it was durable
    /// (fsync'd, or acknowledged by Kafka), one observation per publish.
    pub fn append_latency(&self) -> LatencySnapshot {
        self.append.snapshot()
    }
}

/// A fixed-bucket histogram of durations, each bucket an atomic.
#[derive(Debug, Default)]
struct LatencyHistogram {
    /// Per bucket, not cumulative; the last is above the largest bound.
    buckets: [AtomicU64; APPEND_BOUNDS_NS.len() + 1],
    /// Microseconds: at 400,000 observations of 1 ms a second it lasts
    /// over a thousand years; nanoseconds would wrap within two.
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, took: Duration, count: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(count, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us
            .fetch_add(us.saturating_mul(count), Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            bounds_seconds: APPEND_BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9).collect(),
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The bucket a duration of `ns` falls in: the first whose bound is at
/// least `ns` (Prometheus `le`: less than or equal), else the last.
fn bucket_of(ns: u64) -> usize {
    APPEND_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// Upper bounds, ascending, in seconds (no `+Inf`).
    pub bounds_seconds: Vec<f64>,
    /// Observations per bucket, not cumulative; one more than the bounds
    /// (the last is above the largest bound).
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_goes_to_the_first_bucket_whose_bound_is_not_below_it() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99_999), 0);
        // On the bound: `le` includes it.
        assert_eq!(bucket_of(100_000), 0);
        assert_eq!(bucket_of(100_001), 1);
        assert_eq!(bucket_of(1_000_000), 3);
        assert_eq!(bucket_of(1_000_001), 4);
        assert_eq!(bucket_of(10_000_000_000), 15);
        // Above the largest bound: the +Inf bucket.
        assert_eq!(bucket_of(10_000_000_001), 16);
        assert_eq!(bucket_of(u64::MAX), 16);
    }

    #[test]
    fn bounds_ascend_and_read_as_the_seconds_they_stand_for() {
        assert!(APPEND_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
        let snapshot = LatencyHistogram::default().snapshot();
        assert_eq!(snapshot.bounds_seconds.first(), Some(&0.0001));
        assert_eq!(snapshot.bounds_seconds.get(3), Some(&0.001));
        assert_eq!(snapshot.bounds_seconds.last(), Some(&10.0));
        assert_eq!(snapshot.counts.len(), snapshot.bounds_seconds.len() + 1);
    }

    #[test]
    fn a_batch_counts_once_per_publish_in_its_bucket() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(300), 10);
        histogram.observe(Duration::from_millis(2), 1);
        histogram.observe(Duration::from_secs(60), 2);
        let snapshot = histogram.snapshot();
        let mut want = vec![0; APPEND_BOUNDS_NS.len() + 1];
        want[2] = 10; // 300 µs ≤ 500 µs
        want[4] = 1; // 2 ms ≤ 2.5 ms
        want[16] = 2; // above 10 s
        assert_eq!(snapshot.counts, want);
        assert!((snapshot.sum_seconds - (0.003 + 0.002 + 120.0)).abs() < 1e-9);
    }

    #[test]
    fn received_and_sent_add_up() {
        let stats = BrokerStats::default();
        stats.add_received(3);
        stats.add_received(4);
        stats.add_sent(5);
        assert_eq!((stats.messages_received(), stats.messages_sent()), (7, 5));
    }
}
