//! Cutting a stream of samples into the model's windows: 128 samples, a new window every 64.
//!
//! Training cuts each labelled run of the data set with a [`Windower`], and the pipeline feeds
//! each device's live stream through one, so a live window is the same samples in the same order
//! as the offline window of the same stretch: streaming equals offline by construction.

use crate::motion::{Activity, Sample, STEP, WINDOW};

/// One window, channel-major: `values[channel * WINDOW + t]`, the layout of the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub values: Vec<f32>,
}

impl Window {
    /// The samples of channel `c`, oldest first.
    pub fn channel(&self, c: usize) -> &[f32] {
        &self.values[c * WINDOW..(c + 1) * WINDOW]
    }
}

/// Turns samples, pushed one at a time, into overlapping windows.
#[derive(Debug, Clone, Default)]
pub struct Windower {
    /// The last `WINDOW` samples, as a ring: `ring[pushed % WINDOW]` is overwritten next.
    ring: Vec<Sample>,
    /// Samples pushed since the start (or the last [`Windower::reset`]).
    pushed: u64,
}

impl Windower {
    pub fn new() -> Windower {
        Windower {
            ring: Vec::with_capacity(WINDOW),
            pushed: 0,
        }
    }

    /// Adds a sample; returns a window when this sample completes one, with the index (counted
    /// from the start of the stream) of the window's first sample.
    pub fn push(&mut self, sample: Sample) -> Option<(u64, Window)> {
        let slot = (self.pushed % WINDOW as u64) as usize;
        if self.ring.len() < WINDOW {
            self.ring.push(sample);
        } else {
            self.ring[slot] = sample;
        }
        self.pushed += 1;
        let full = self.pushed >= WINDOW as u64;
        if !full || (self.pushed - WINDOW as u64) % STEP as u64 != 0 {
            return None;
        }
        let first = self.pushed - WINDOW as u64;
        let mut values = vec![0.0; 6 * WINDOW];
        for t in 0..WINDOW {
            let sample = &self.ring[((first + t as u64) % WINDOW as u64) as usize];
            for (c, v) in sample.iter().enumerate() {
                values[c * WINDOW + t] = *v;
            }
        }
        Some((first, Window { values }))
    }

    /// Forgets the samples so far: the next window starts with the next sample (after a gap).
    pub fn reset(&mut self) {
        self.ring.clear();
        self.pushed = 0;
    }

    /// Samples pushed since the start or the last reset.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }
}

/// Labelled windows, ready for training or evaluation.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    pub windows: Vec<Window>,
    pub labels: Vec<Activity>,
    /// The index (in `har::Dataset::runs`) of the run each window comes from: smoothing restarts
    /// at each run, as the live pipeline's restarts at each gap.
    pub runs: Vec<usize>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// Every window of one uninterrupted run of samples (the tail shorter than a window is dropped).
pub fn windows_of_run(samples: &[Sample]) -> Vec<Window> {
    let mut windower = Windower::new();
    samples
        .iter()
        .filter_map(|s| windower.push(*s).map(|(_, w)| w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        [i as f32, 0.0, 0.0, 0.0, 0.0, -(i as f32)]
    }

    #[test]
    fn windows_start_every_step_and_hold_the_samples_in_order() {
        let samples: Vec<Sample> = (0..300).map(sample).collect();
        let windows = windows_of_run(&samples);
        // 128, 192, 256 samples complete a window; 300 does not complete the fourth.
        assert_eq!(windows.len(), 3);
        for (k, w) in windows.iter().enumerate() {
            let first = k * STEP;
            let expected: Vec<f32> = (first..first + WINDOW).map(|i| i as f32).collect();
            assert_eq!(w.channel(0), &expected[..]);
            assert_eq!(w.channel(5)[0], -(first as f32));
        }
    }

    #[test]
    fn a_reset_starts_the_next_window_afresh() {
        let mut w = Windower::new();
        for i in 0..100 {
            assert!(w.push(sample(i)).is_none());
        }
        w.reset();
        let got: Vec<u64> = (0..256)
            .filter_map(|i| w.push(sample(i)).map(|(f, _)| f))
            .collect();
        assert_eq!(got, vec![0, 64, 128]);
    }
}
