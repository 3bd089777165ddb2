//! What the bridge counts: the progress line every few seconds and the
//! summary at the end.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Counters since start; every field is a count of messages unless named
/// otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// PUBLISHes taken from the source (redeliveries included).
    pub received: u64,
    /// Of `received`, those the source marked DUP: sent before, on a
    /// connection that ended before the bridge acknowledged them.
    pub redelivered: u64,
    /// Acknowledged by Kafka.
    pub forwarded: u64,
    /// PUBACKs sent to the source.
    pub acked: u64,
    /// QoS 1 messages Kafka did not acknowledge (the connection was dropped
    /// so that the source sends them again).
    pub not_stored: u64,
    /// QoS 0 messages Kafka did not acknowledge: lost, as the source keeps
    /// no copy.
    pub lost_qos0: u64,
    /// Connections to the source that got as far as CONNACK.
    pub connections: u64,
    pub elapsed: Duration,
    /// From the first message received to the last one Kafka acknowledged:
    /// the time the bridge had work, which `forwarded` is divided by for
    /// the rate.
    pub busy: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "bridge summary after {secs:.1} s:")?;
        writeln!(
            f,
            "  received from the source  {} ({} redelivered)",
            self.received, self.redelivered
        )?;
        writeln!(
            f,
            "  forwarded to Kafka        {} ({:.0} msg/s over {:.1} s from the first received to the last forwarded)",
            self.forwarded,
            self.forwarded as f64 / self.busy.as_secs_f64().max(1e-3),
            self.busy.as_secs_f64()
        )?;
        writeln!(f, "  acknowledged to source    {}", self.acked)?;
        writeln!(
            f,
            "  not stored by Kafka       {} QoS 1 (redelivered by the source), {} QoS 0 (lost)",
            self.not_stored, self.lost_qos0
        )?;
        writeln!(f, "  connections to the source {}", self.connections)
    }
}

/// The live counters, shared by the connection and the progress line.
pub(crate) struct Counters {
    started: Instant,
    /// Nanoseconds after `started`; `u64::MAX` until the first message.
    first_received_ns: AtomicU64,
    last_forwarded_ns: AtomicU64,
    pub received: AtomicU64,
    pub redelivered: AtomicU64,
    pub forwarded: AtomicU64,
    pub acked: AtomicU64,
    pub not_stored: AtomicU64,
    pub lost_qos0: AtomicU64,
    pub connections: AtomicU64,
    /// Messages in the ack queue now.
    pub in_flight: AtomicU64,
}

impl Counters {
    pub fn new() -> Counters {
        Counters {
            started: Instant::now(),
            first_received_ns: AtomicU64::new(u64::MAX),
            last_forwarded_ns: AtomicU64::new(0),
            received: AtomicU64::default(),
            redelivered: AtomicU64::default(),
            forwarded: AtomicU64::default(),
            acked: AtomicU64::default(),
            not_stored: AtomicU64::default(),
            lost_qos0: AtomicU64::default(),
            connections: AtomicU64::default(),
            in_flight: AtomicU64::default(),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn received(&self, dup: bool) {
        Self::add(&self.received, 1);
        if dup {
            Self::add(&self.redelivered, 1);
        }
        self.first_received_ns
            .fetch_min(self.now_ns(), Ordering::Relaxed);
    }

    pub fn forwarded(&self) {
        Self::add(&self.forwarded, 1);
        self.last_forwarded_ns
            .fetch_max(self.now_ns(), Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn summary(&self) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (first, last) = (get(&self.first_received_ns), get(&self.last_forwarded_ns));
        Summary {
            busy: Duration::from_nanos(last.saturating_sub(first)),
            received: get(&self.received),
            redelivered: get(&self.redelivered),
            forwarded: get(&self.forwarded),
            acked: get(&self.acked),
            not_stored: get(&self.not_stored),
            lost_qos0: get(&self.lost_qos0),
            connections: get(&self.connections),
            elapsed: self.started.elapsed(),
        }
    }

    /// Logs one progress line every `interval` until `done`; the rate is
    /// over the last interval.
    pub async fn report_progress(&self, interval: Duration, done: &CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let (mut last_at, mut last_forwarded) = (Instant::now(), 0);
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = Instant::now();
            let c = self.summary();
            let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
            let rate = (c.forwarded - last_forwarded) as f64 / secs;
            tracing::info!(
                received = c.received,
                forwarded = c.forwarded,
                acked = c.acked,
                msg_per_s = rate.round() as u64,
                in_flight = self.in_flight.load(Ordering::Relaxed),
                "progress"
            );
            (last_at, last_forwarded) = (now, c.forwarded);
        }
    }
}
