//! The two pieces every abuse limit is built from, in one place for the
//! broker (message, byte and connection rates) and the HTTP API (sign-ups
//! per source): a token bucket, and the rule that keeps a table of
//! per-name or per-address state bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: holds up to `capacity` tokens, starts full and refills
/// at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket of `capacity` tokens refilled at `per_second`.
    pub fn new(capacity: f64, per_second: f64, now: Instant) -> Self {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            updated: now,
        }
    }

    /// A bucket of one second's worth of `rate` per second (a burst of one
    /// second, then the rate).
    pub fn per_second(rate: f64, now: Instant) -> Self {
        TokenBucket::new(rate, rate, now)
    }

    /// The tokens at `now`, without taking any.
    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * self.per_second).min(self.capacity)
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = self.refilled(now);
        self.updated = now;
    }

    /// Takes `amount` (the balance may go negative: what it pays for has
    /// already happened, a message read, say) and returns how long until
    /// the balance is positive again, if it is not.
    pub fn take(&mut self, amount: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        self.tokens -= amount;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_second))
    }

    /// Takes one token if there is one; `Err(wait)` until there is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }

    /// True when the bucket would be full at `now`: the same as a bucket
    /// never used, so a table may forget it.
    pub fn is_full(&self, now: Instant) -> bool {
        self.refilled(now) >= self.capacity
    }

    /// When it was last taken from.
    pub fn updated(&self) -> Instant {
        self.updated
    }
}

/// Makes room for one more entry in `table`, which must hold fewer than
/// `max`: first drops the entries `forgettable` says hold nothing worth
/// keeping, then, if still full, the stalest half by `last`. Bounded memory
/// whatever a flood of names or addresses does, at the price of forgetting
/// some state under such a flood.
pub fn make_room<K: Eq + Hash, V>(
    table: &mut HashMap<K, V>,
    max: usize,
    forgettable: impl Fn(&V) -> bool,
    last: impl Fn(&V) -> Instant,
) {
    if table.len() < max {
        return;
    }
    table.retain(|_, v| !forgettable(v));
    if table.len() >= max {
        let mut lasts: Vec<Instant> = table.values().map(&last).collect();
        lasts.sort_unstable();
        let cut = lasts[lasts.len() / 2];
        table.retain(|_, v| last(v) > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_second(10.0, t0);
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
    fn try_take_says_how_long_until_the_next_token() {
        let t0 = Instant::now();
        // Three an hour: one every 20 minutes once the three are used.
        let mut b = TokenBucket::new(3.0, 3.0 / 3600.0, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        assert!(!b.is_full(t0));
        let wait = b.try_take(t0).expect_err("empty");
        assert_eq!(wait.as_secs(), 20 * 60);
        assert_eq!(b.try_take(t0 + wait), Ok(()));
        assert!(b.is_full(t0 + Duration::from_secs(3600 * 2)));
    }

    #[test]
    fn make_room_forgets_what_it_may_then_the_stalest_half() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (forgettable, last)
        let mut table: HashMap<u32, (bool, Instant)> =
            (0..4).map(|i| (i, (i == 0, at(u64::from(i))))).collect();
        make_room(&mut table, 5, |v| v.0, |v| v.1);
        assert_eq!(table.len(), 4, "below the bound nothing goes");
        make_room(&mut table, 4, |v| v.0, |v| v.1);
        assert_eq!(table.len(), 3, "the forgettable one went");
        make_room(&mut table, 3, |_| false, |v| v.1);
        let mut left: Vec<u32> = table.into_keys().collect();
        left.sort_unstable();
        assert_eq!(left, [3], "the stalest half (and the median) went");
    }
}
