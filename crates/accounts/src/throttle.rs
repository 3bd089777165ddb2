//! Login throttling: after a few wrong passwords for one name, that name's
//! logins are refused for a while, doubling with each further failure,
//! before any password is checked. Guessing a password then takes years
//! instead of hours, and a flood of guesses costs no Argon2 time.
//!
//! One [`LoginThrottle`] belongs to [`crate::Accounts`]
//! ([`crate::Accounts::login_throttle`]), so the HTTP API's login (429 with
//! `Retry-After`) and MQTT CONNECT
//! ([`crate::Accounts::authenticate_guarded`], CONNACK 0x86) count the
//! same failures: a guesser gains nothing by switching between them.
//!
//! Keyed by the name asked for, not by client address: the API and the
//! broker are often behind a proxy, and an attacker has many addresses.
//! The price is that someone who knows an owner's name can keep that owner
//! from logging in for a while; devices and services are never locked
//! (their 256-bit tokens cannot be guessed, and a lock would let anyone
//! who knows a device's name keep it offline), and a successful login is
//! not needed to keep existing tokens working.

use std::collections::HashMap;
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
pub struct LoginThrottle {
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
    pub fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        match self.lock().get(name).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a wrong password; returns the lock it starts, if any. No
    /// entry is kept for a name that cannot exist (`check_owner_name`), so
    /// made-up names cost no memory here.
    pub fn failed(&self, name: &str, now: Instant) -> Option<Duration> {
        if crate::check_owner_name(name).is_err() {
            return None;
        }
        let mut names = self.lock();
        if !names.contains_key(name) {
            crate::rate::make_room(
                &mut names,
                MAX_NAMES,
                |f| now.duration_since(f.last) >= FORGET_AFTER,
                |f| f.last,
            );
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

    /// How many names have an entry (for tests and figures).
    pub fn tracked_names(&self) -> usize {
        self.lock().len()
    }

    /// A correct password: the name's failures are forgotten.
    pub fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }
}

/// The lock after the `count`th failure in a row.
fn lock_for(count: u32) -> Option<Duration> {
    let beyond = count.checked_sub(FREE_FAILURES)?;
    let factor = 1u32.checked_shl(beyond.min(16)).unwrap_or(u32::MAX);
    Some(FIRST_LOCK.saturating_mul(factor).min(MAX_LOCK))
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
}
