//! Counting what happened: latency histograms, sets of sequence numbers, and
//! the per-subscriber tracker that turns received payloads into received,
//! duplicated and lost counts.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::payload::Header;

/// Largest latency the histograms tell apart; longer ones count as this.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;
/// Two significant digits: percentiles within 1 %, and a histogram of about
/// 25 KiB, small enough for one per client with thousands of clients.
const LATENCY_SIGFIG: u8 = 2;

/// A latency distribution in microseconds.
///
/// The histogram is allocated on the first sample, so clients that never
/// measure anything (QoS 0 publishers, idle connections) cost nothing.
#[derive(Debug, Default, Clone)]
pub struct Latency {
    histogram: Option<Histogram<u64>>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency::default()
    }

    pub fn record(&mut self, latency: Duration) {
        self.record_micros(latency.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.histogram
            .get_or_insert_with(|| {
                Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, LATENCY_SIGFIG)
                    .expect("constant histogram bounds are valid")
            })
            .saturating_record(micros.max(1));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        let Some(theirs) = &other.histogram else {
            return;
        };
        match &mut self.histogram {
            // Same bounds on both sides, so adding cannot fail.
            Some(ours) => ours
                .add(theirs)
                .expect("histograms with equal bounds add up"),
            None => self.histogram = Some(theirs.clone()),
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.as_ref().map_or(0, |h| h.len())
    }

    /// p50, p99 and max in milliseconds; all `None` without samples.
    pub fn summary(&self) -> LatencySummary {
        let Some(h) = self.histogram.as_ref().filter(|h| !h.is_empty()) else {
            return LatencySummary::default();
        };
        let ms = |micros: u64| Some(micros as f64 / 1000.0);
        LatencySummary {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Latency percentiles in milliseconds, as they appear in the JSON summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// A set of sequence numbers as a bitmap: one bit per number from 0 to the
/// highest inserted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    pub fn new() -> SeqSet {
        SeqSet::default()
    }

    /// An empty set with room for `0..capacity` without reallocating.
    pub fn with_capacity(capacity: u64) -> SeqSet {
        SeqSet {
            words: Vec::with_capacity(capacity.div_ceil(64) as usize),
            len: 0,
        }
    }

    /// Adds `seq`; false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.words[word] & mask != 0 {
            return false;
        }
        self.words[word] |= mask;
        self.len += 1;
        true
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The highest number in the set.
    pub fn max(&self) -> Option<u64> {
        let (i, w) = self
            .words
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)?;
        Some(i as u64 * 64 + 63 - u64::from(w.leading_zeros()))
    }

    /// How many numbers of `expected` are not in this set.
    pub fn missing_from(&self, expected: &SeqSet) -> u64 {
        expected
            .words
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let ours = self.words.get(i).copied().unwrap_or(0);
                u64::from((e & !ours).count_ones())
            })
            .sum()
    }

    /// Numbers missing below the highest one: the gaps of a sequence whose
    /// expected end is unknown.
    pub fn gaps(&self) -> u64 {
        self.max().map_or(0, |max| max + 1 - self.len)
    }
}

/// What one subscriber made of one received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// A bench message seen for the first time.
    New,
    /// A bench message this subscriber had already received.
    Duplicate,
    /// Not a bench payload, or one outside the numbers this run tracks.
    Foreign,
}

/// Everything one subscriber received: which (publisher, sequence) pairs,
/// how often, and how late.
#[derive(Debug, Clone)]
pub struct ReceiveTracker {
    seen: HashMap<u32, SeqSet>,
    /// Sequence numbers at or above this are foreign: bounds the bitmap a
    /// stray payload can make us allocate.
    seq_limit: u64,
    /// Every PUBLISH received, bench or not, duplicates included.
    pub received: u64,
    /// Distinct bench messages received.
    pub distinct: u64,
    pub duplicated: u64,
    pub foreign: u64,
    /// Publish→receive latency of the distinct bench messages.
    pub latency: Latency,
}

impl ReceiveTracker {
    /// `seq_limit`: one past the highest sequence number a publisher of this
    /// run can send.
    pub fn new(seq_limit: u64) -> ReceiveTracker {
        ReceiveTracker {
            seen: HashMap::new(),
            seq_limit,
            received: 0,
            distinct: 0,
            duplicated: 0,
            foreign: 0,
            latency: Latency::new(),
        }
    }

    /// Accounts one received payload at wall-clock time `now_unix_nanos`.
    pub fn record(&mut self, payload: &[u8], now_unix_nanos: u64) -> Receipt {
        self.received += 1;
        let header = match Header::read(payload) {
            Some(h) if h.seq < self.seq_limit => h,
            _ => {
                self.foreign += 1;
                return Receipt::Foreign;
            }
        };
        if !self
            .seen
            .entry(header.publisher)
            .or_default()
            .insert(header.seq)
        {
            self.duplicated += 1;
            return Receipt::Duplicate;
        }
        self.distinct += 1;
        self.latency
            .record_micros(now_unix_nanos.saturating_sub(header.sent_unix_nanos) / 1000);
        Receipt::New
    }

    /// Messages of `expected` (indexed by publisher) never received.
    pub fn lost_against(&self, expected: &[SeqSet]) -> u64 {
        let none = SeqSet::new();
        expected
            .iter()
            .enumerate()
            .map(|(publisher, exp)| {
                self.seen
                    .get(&(publisher as u32))
                    .unwrap_or(&none)
                    .missing_from(exp)
            })
            .sum()
    }

    /// Messages of publisher `publisher`'s `expected` never received.
    pub fn lost_from(&self, publisher: usize, expected: &SeqSet) -> u64 {
        self.seen
            .get(&(publisher as u32))
            .map_or(expected.len(), |seen| seen.missing_from(expected))
    }

    /// Messages missing below each publisher's highest received sequence
    /// number, for runs that do not know what was sent.
    pub fn gaps(&self) -> u64 {
        self.seen.values().map(SeqSet::gaps).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::HEADER_LEN;

    fn payload(publisher: u32, seq: u64, sent: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 4];
        Header {
            publisher,
            seq,
            sent_unix_nanos: sent,
        }
        .write(&mut p);
        p
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut latency = Latency::new();
        for micros in 1..=1000 {
            latency.record_micros(micros);
        }
        assert_eq!(latency.count(), 1000);
        let s = latency.summary();
        // Two significant digits: within 1 %.
        assert!((s.p50.unwrap() - 0.5).abs() <= 0.005, "{s:?}");
        assert!((s.p99.unwrap() - 0.99).abs() <= 0.01, "{s:?}");
        assert!((s.max.unwrap() - 1.0).abs() <= 0.01, "{s:?}");
    }

    #[test]
    fn percentiles_survive_merging_and_empty_is_none() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
        let mut a = Latency::new();
        let mut b = Latency::new();
        for _ in 0..99 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_millis(50));
        let mut total = Latency::new();
        total.merge(&Latency::new());
        total.merge(&a);
        total.merge(&b);
        assert_eq!(total.count(), 100);
        let s = total.summary();
        assert!((0.1..=0.101).contains(&s.p50.unwrap()), "{s:?}");
        assert!((0.1..=0.101).contains(&s.p99.unwrap()), "{s:?}");
        assert!((s.max.unwrap() - 50.0).abs() <= 0.5, "{s:?}");
    }

    #[test]
    fn seq_set_counts_missing_and_gaps() {
        let mut expected = SeqSet::with_capacity(200);
        for seq in 0..200 {
            assert!(expected.insert(seq));
        }
        assert!(!expected.insert(7));
        assert_eq!(expected.len(), 200);
        assert_eq!(expected.max(), Some(199));

        let mut got = SeqSet::new();
        for seq in (0..200).filter(|s| s % 10 != 3) {
            got.insert(seq);
        }
        assert!(got.contains(0) && !got.contains(3) && !got.contains(1000));
        assert_eq!(got.missing_from(&expected), 20);
        assert_eq!(expected.missing_from(&got), 0);
        assert_eq!(got.gaps(), 20);
        assert_eq!(SeqSet::new().gaps(), 0);
        assert_eq!(SeqSet::new().max(), None);
    }

    #[test]
    fn tracker_counts_received_duplicated_lost_and_latency() {
        let mut t = ReceiveTracker::new(100);
        let sent_at = 1_000_000_000;
        for seq in 0..100 {
            if seq == 42 {
                continue;
            }
            let receipt = t.record(&payload(0, seq, sent_at), sent_at + 2_000_000);
            assert_eq!(receipt, Receipt::New);
        }
        assert_eq!(
            t.record(&payload(0, 5, sent_at), sent_at),
            Receipt::Duplicate
        );
        assert_eq!(t.record(&payload(1, 0, sent_at), sent_at), Receipt::New);
        assert_eq!(t.record(b"hello", sent_at), Receipt::Foreign);
        // Beyond what a publisher of this run sends: foreign, not a bitmap of 2^40 bits.
        assert_eq!(
            t.record(&payload(1, 1 << 40, sent_at), sent_at),
            Receipt::Foreign
        );

        assert_eq!(t.received, 103);
        assert_eq!(t.distinct, 100);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.foreign, 2);

        let mut all = SeqSet::new();
        (0..100).for_each(|s| {
            all.insert(s);
        });
        // Publisher 0: seq 42 missing; publisher 1: only seq 0 arrived.
        assert_eq!(t.lost_against(&[all.clone(), all.clone()]), 1 + 99);
        // Publisher 2 sent everything and none of it arrived.
        assert_eq!(
            t.lost_against(&[all.clone(), all.clone(), all]),
            1 + 99 + 100
        );
        assert_eq!(t.gaps(), 1);
        // Percentiles report the top of the bucket: within 1 % above.
        let p50 = t.latency.summary().p50.unwrap();
        assert!((2.0..=2.02).contains(&p50), "{p50}");
    }
}
