//! Connection attempts per source address (the per-client message and byte
//! rates are `TokenBucket`s of the connection; both are the accounts
//! crate's `rate` module's buckets).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tributary_accounts::rate::{make_room, TokenBucket};

/// Connection attempts per source address.
#[derive(Debug, Default)]
pub struct SourceLimiter {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Sources not seen for this long are forgotten (bounded memory).
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// Sources tracked at most: at this many, those not seen for
/// [`FORGET_AFTER`] are forgotten, then the stalest half.
const SWEEP_AT: usize = 10_000;

impl SourceLimiter {
    /// True when `source` may open one more connection now.
    pub fn admit(&self, source: IpAddr, per_sec: u32, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("source limiter lock poisoned");
        if !buckets.contains_key(&source) {
            make_room(
                &mut buckets,
                SWEEP_AT,
                |b| now.saturating_duration_since(b.updated()) >= FORGET_AFTER,
                TokenBucket::updated,
            );
        }
        buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::per_second(f64::from(per_sec), now))
            .try_take(now)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
