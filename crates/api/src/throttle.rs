//! Sign-ups per source address (the login throttle is the accounts
//! crate's, shared with MQTT: `tributary_accounts::LoginThrottle`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tributary_accounts::rate::{make_room, TokenBucket};

/// Source addresses remembered at most; beyond, full buckets are
/// forgotten first, then the stalest half.
const MAX_SOURCES: usize = 100_000;

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
    sources: Mutex<HashMap<IpAddr, TokenBucket>>,
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
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = source_key(source);
        if !sources.contains_key(&key) {
            // A full bucket is the same as no entry.
            make_room(
                &mut sources,
                MAX_SOURCES,
                |b| b.is_full(now),
                TokenBucket::updated,
            );
        }
        let capacity = f64::from(self.per_hour);
        sources
            .entry(key)
            .or_insert_with(|| TokenBucket::new(capacity, capacity / HOUR.as_secs_f64(), now))
            .try_take(now)
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
