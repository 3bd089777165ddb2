//! Throttles: logins per name, sign-ups per source address.
//!
//! Login throttling: after a few wrong passwords for one name, that name's
//! logins are refused for a while (429 with `Retry-After`), doubling with
//! each further failure, before any password is checked. Guessing a
//! password through the API then takes years instead of hours, and a flood
//! of guesses costs no Argon2 time.
//!
//! Keyed by the name asked for, known or not (so the answer reveals
//! nothing about which names exist), not by client address: the API is
//! often behind a proxy, and an attacker has many addresses. The price is
//! that someone who knows an owner's name can keep that owner from logging
//! in through the API for a while; devices (MQTT) are not affected, and a
//! successful login is not needed to keep existing tokens working.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed before a name is locked.
pub const FREE_FAILURES: u32 = 5;
/// The first lock; each further failure doubles it, up to [`MAX_LOCK`].
pub const FIRST_LOCK: Duration = Duration::from_secs(30);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A name whose last failure is older than this starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Names tracked at most (bounded memory): the oldest are dropped first.
const MAX_NAMES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    names: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait)` while `name` is locked.
    pub(crate) fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        match self.lock().get(name).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a wrong password; returns the lock it starts, if any. The
    /// caller has checked the name's syntax (`auth::check_name`): no entry
    /// is kept for a name that cannot exist.
    pub(crate) fn failed(&self, name: &str, now: Instant) -> Option<Duration> {
        debug_assert!(tributary_accounts::check_owner_name(name).is_ok());
        let mut names = self.lock();
        if names.len() >= MAX_NAMES && !names.contains_key(name) {
            names.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if names.len() >= MAX_NAMES {
                // Still full of recent failures: drop the stalest half.
                let mut lasts: Vec<Instant> = names.values().map(|f| f.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                names.retain(|_, f| f.last > cut);
            }
        }
        let entry = names.entry(name.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        let lock = lock_for(entry.count)?;
        entry.locked_until = Some(now + lock);
        Some(lock)
    }

    /// How many names have an entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// A correct password: the name's failures are forgotten.
    pub(crate) fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }
}

/// The lock after the `count`th failure in a row.
fn lock_for(count: u32) -> Option<Duration> {
    let beyond = count.checked_sub(FREE_FAILURES)?;
    let factor = 1u32.checked_shl(beyond.min(16)).unwrap_or(u32::MAX);
    Some(FIRST_LOCK.saturating_mul(factor).min(MAX_LOCK))
}

/// Sign-ups per source address: a token bucket per address that holds an
/// hour's worth of sign-ups and refills evenly over the hour. Sign-up costs
/// an Argon2 hash and a rewrite of the accounts file, and every owner made
/// is kept: a stranger must not make thousands.
///
/// IPv6 sources are keyed by their /64 prefix (one host usually holds a
/// whole /64). Behind a proxy every request comes from the proxy's address,
/// so the bound is then the proxy's, shared by everyone behind it.
#[derive(Debug)]
pub(crate) struct SignupThrottle {
    /// Sign-ups per hour and source; 0: no limit.
    per_hour: u32,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

const HOUR: Duration = Duration::from_secs(60 * 60);

impl SignupThrottle {
    pub(crate) fn new(per_hour: u32) -> SignupThrottle {
        SignupThrottle {
            per_hour,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one sign-up from `source`'s bucket; `Err(wait)` until one is
    /// there.
    pub(crate) fn take(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_hour == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_hour);
        let per_second = capacity / HOUR.as_secs_f64();
        let refilled = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second)
                .min(capacity)
        };
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = source_key(source);
        if sources.len() >= MAX_NAMES && !sources.contains_key(&key) {
            // A full bucket is the same as no entry.
            sources.retain(|_, b| refilled(b) < capacity);
            if sources.len() >= MAX_NAMES {
                let mut lasts: Vec<Instant> = sources.values().map(|b| b.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                sources.retain(|_, b| b.last > cut);
            }
        }
        let bucket = sources.entry(key).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let tokens = refilled(bucket);
        bucket.last = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / per_second))
        }
    }
}

/// The address a sign-up is counted against: IPv4 as is, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as the IPv4 address).
fn source_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_after_the_free_failures_and_double_up_to_the_maximum() {
        assert_eq!(lock_for(1), None);
        assert_eq!(lock_for(FREE_FAILURES - 1), None);
        assert_eq!(lock_for(FREE_FAILURES), Some(FIRST_LOCK));
        assert_eq!(lock_for(FREE_FAILURES + 1), Some(FIRST_LOCK * 2));
        assert_eq!(lock_for(FREE_FAILURES + 4), Some(FIRST_LOCK * 16));
        assert_eq!(lock_for(FREE_FAILURES + 5), Some(MAX_LOCK));
        assert_eq!(lock_for(u32::MAX), Some(MAX_LOCK));
    }

    #[test]
    fn a_locked_name_waits_and_a_success_forgets() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 1..FREE_FAILURES {
            assert_eq!(throttle.failed("ann", t0), None);
            assert!(throttle.check("ann", t0).is_ok());
        }
        assert_eq!(throttle.failed("ann", t0), Some(FIRST_LOCK));
        assert_eq!(throttle.check("ann", t0), Err(FIRST_LOCK));
        assert!(throttle.check("bob", t0).is_ok(), "other names are free");
        let later = t0 + FIRST_LOCK;
        assert!(throttle.check("ann", later).is_ok(), "the lock ran out");
        assert_eq!(throttle.failed("ann", later), Some(FIRST_LOCK * 2));
        throttle.succeeded("ann");
        assert!(throttle.check("ann", later).is_ok());
        assert_eq!(
            throttle.failed("ann", later),
            None,
            "counting starts afresh"
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed("ann", t0);
        }
        assert_eq!(throttle.failed("ann", t0 + FORGET_AFTER), None);
    }

    #[test]
    fn sign_ups_are_counted_per_source_and_refill_over_the_hour() {
        let throttle = SignupThrottle::new(3);
        let t0 = Instant::now();
        let ann: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..3 {
            assert!(throttle.take(ann, t0).is_ok());
        }
        let wait = throttle.take(ann, t0).expect_err("the bucket is empty");
        assert_eq!(wait.as_secs(), 20 * 60, "one sign-up every 20 minutes");
        assert!(
            throttle.take([192, 0, 2, 2].into(), t0).is_ok(),
            "another source"
        );
        assert!(throttle.take(ann, t0 + wait).is_ok(), "refilled");
        assert!(SignupThrottle::new(0).take(ann, t0).is_ok(), "0: no limit");
    }

    #[test]
    fn an_ipv6_source_is_its_64_prefix() {
        let throttle = SignupThrottle::new(1);
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert!(throttle.take(one, t0).is_ok());
        assert!(throttle.take(same_64, t0).is_err());
        assert!(throttle.take(other_64, t0).is_ok());
    }
}
