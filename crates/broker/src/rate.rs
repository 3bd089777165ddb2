//! Token buckets for the abuse limits: per-client message and byte rates,
//! and connection attempts per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket that refills at `rate` per second up to one second's worth.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub fn new(rate: f64, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// Takes `amount` (the balance may go negative: the message was already
    /// read) and returns how long the client must wait until the balance is
    /// positive again, if at all.
    pub fn take(&mut self, amount: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.tokens -= amount;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Connection attempts per source address.
#[derive(Debug, Default)]
pub struct SourceLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Sources not seen for this long are forgotten (bounded memory).
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// The table is swept when it grows past this many sources.
const SWEEP_AT: usize = 10_000;

impl SourceLimiter {
    /// True when `source` may open one more connection now.
    pub fn admit(&self, source: IpAddr, per_sec: u32, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("source limiter lock poisoned");
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| now.saturating_duration_since(b.updated) < FORGET_AFTER);
        }
        buckets
            .entry(source)
            .or_insert_with(|| Bucket::new(f64::from(per_sec), now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_second_of_burst_then_asks_to_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        for _ in 0..10 {
            assert_eq!(b.take(1.0, t0), None);
        }
        let wait = b.take(1.0, t0).expect("over the rate");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(
            b.take(0.0, t0 + Duration::from_millis(200)),
            None,
            "refilled"
        );
    }

    #[test]
    fn sources_are_limited_separately() {
        let t0 = Instant::now();
        let limiter = SourceLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(limiter.admit(a, 2, t0));
        assert!(limiter.admit(a, 2, t0));
        assert!(!limiter.admit(a, 2, t0));
        assert!(limiter.admit(b, 2, t0));
        assert!(limiter.admit(a, 2, t0 + Duration::from_millis(600)));
        assert!(limiter.admit(a, 0, t0), "0 means no limit");
    }
}
