//! The header every bench payload starts with, so that subscribers — in this
//! process or another — can tell who sent a message, which one it was, and
//! when.
//!
//! ```text
//! byte  0        magic and layout version: 0xB1
//! bytes 1..5     publisher index, u32 big-endian
//! bytes 5..13    sequence number within that publisher, u64 big-endian, from 0
//! bytes 13..21   send time, u64 big-endian, nanoseconds since the Unix epoch
//! bytes 21..     padding (zero) up to the configured payload size
//! ```
//!
//! The send time is wall-clock time so that a `sub` run in another process
//! (on the same machine, or one with synchronised clocks) can compute
//! publish→receive latency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// First byte of every bench payload; a payload starting with anything else
/// is someone else's message.
pub const MAGIC: u8 = 0xB1;
/// Bytes of header at the start of each payload: the smallest `--size`.
pub const HEADER_LEN: usize = 21;

/// The decoded header of one bench payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub publisher: u32,
    pub seq: u64,
    /// Nanoseconds since the Unix epoch when the publisher queued the message.
    pub sent_unix_nanos: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    ///
    /// # Panics
    /// When `out` is shorter than [`HEADER_LEN`]; callers size payloads from a
    /// validated config.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = MAGIC;
        out[1..5].copy_from_slice(&self.publisher.to_be_bytes());
        out[5..13].copy_from_slice(&self.seq.to_be_bytes());
        out[13..21].copy_from_slice(&self.sent_unix_nanos.to_be_bytes());
    }

    /// Reads the header from the front of a received payload; `None` when the
    /// payload is too short or is not a bench payload.
    pub fn read(payload: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
        if bytes[0] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut publisher = [0u8; 4];
        publisher.copy_from_slice(&bytes[1..5]);
        Some(Header {
            publisher: u32::from_be_bytes(publisher),
            seq: u64_at(5),
            sent_unix_nanos: u64_at(13),
        })
    }
}

/// Wall-clock nanoseconds derived from one monotonic clock.
///
/// Reading `Instant` and adding the offset measured once at start gives
/// timestamps that never go backwards within a run and cost one clock read,
/// while staying comparable with another process's wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_nanos: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let start_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as u64;
        Clock {
            start: Instant::now(),
            start_unix_nanos,
        }
    }

    /// The instant the clock was created.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Wall-clock nanoseconds at `at`.
    pub fn unix_nanos_at(&self, at: Instant) -> u64 {
        self.start_unix_nanos + at.saturating_duration_since(self.start).as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_at_the_documented_offsets() {
        let header = Header {
            publisher: 0x0102_0304,
            seq: 0x1112_1314_1516_1718,
            sent_unix_nanos: 0x2122_2324_2526_2728,
        };
        let mut payload = vec![0u8; 32];
        header.write(&mut payload);
        #[rustfmt::skip]
        let expected: [u8; HEADER_LEN] = [
            0xB1,
            0x01, 0x02, 0x03, 0x04,
            0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
            0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
        ];
        assert_eq!(&payload[..HEADER_LEN], &expected);
        assert!(payload[HEADER_LEN..].iter().all(|&b| b == 0));
        assert_eq!(Header::read(&payload), Some(header));
        assert_eq!(Header::read(&payload[..HEADER_LEN]), Some(header));
    }

    #[test]
    fn foreign_and_short_payloads_are_not_headers() {
        assert_eq!(Header::read(b""), None);
        assert_eq!(Header::read(&[MAGIC; HEADER_LEN - 1]), None);
        let mut payload = [0u8; HEADER_LEN];
        Header {
            publisher: 1,
            seq: 2,
            sent_unix_nanos: 3,
        }
        .write(&mut payload);
        payload[0] = b'{';
        assert_eq!(Header::read(&payload), None);
    }

    #[test]
    fn clock_is_monotonic_and_near_wall_time() {
        let clock = Clock::new();
        let a = clock.unix_nanos_at(Instant::now());
        let b = clock.unix_nanos_at(Instant::now());
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(b) < 1_000_000_000);
    }
}
