//! From windows to an activity timeline: batched inference, smoothing, and segments.
//!
//! The same three steps run offline (`eval`, per labelled run of the benchmark) and live (the
//! pipeline, per device stream), so the labels a device's timeline shows are the labels the
//! offline evaluation gives the same samples.

use crate::infer::Inference;
use crate::input::{ModelInput, Normalisation};
use crate::motion::{Activity, STEP, WINDOW};
use crate::net::Net;
use crate::window::Window;
use crate::Result;

/// Windows averaged by the smoother: the current one and the two before it (3.8 s of motion).
/// Causal, so a window's label is final as soon as the window ends.
pub const SMOOTHING: usize = 3;

/// A trained network ready to classify windows.
#[derive(Debug)]
pub struct Classifier {
    net: Inference,
    normalisation: Normalisation,
}

impl Classifier {
    /// `net` with its batch normalisation folded ([`Net::fold_batch_norm`]).
    pub fn new(net: &Net, normalisation: Normalisation) -> Result<Classifier> {
        Ok(Classifier {
            net: net.to_inference()?,
            normalisation,
        })
    }

    /// Class probabilities of a window, in [`Activity::ALL`] order.
    pub fn probabilities(&self, window: &Window) -> [f32; 6] {
        self.net
            .probabilities(&ModelInput::of(window, &self.normalisation))
    }
}

/// Averages each window's probabilities with those of the windows just before it in the same
/// stream; reset at a gap.
#[derive(Debug, Clone, Default)]
pub struct Smoother {
    recent: std::collections::VecDeque<[f32; 6]>,
}

impl Smoother {
    /// The smoothed label and its confidence (the averaged probability) after window `p`.
    pub fn push(&mut self, p: [f32; 6]) -> (Activity, f32) {
        if self.recent.len() == SMOOTHING {
            self.recent.pop_front();
        }
        self.recent.push_back(p);
        let mut mean = [0.0f32; 6];
        for q in &self.recent {
            for (m, v) in mean.iter_mut().zip(q) {
                *m += v / self.recent.len() as f32;
            }
        }
        most_probable(&mean)
    }

    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

/// The smoothed labels of the windows of one uninterrupted run.
pub fn smoothed(probabilities: &[[f32; 6]]) -> Vec<(Activity, f32)> {
    let mut smoother = Smoother::default();
    probabilities.iter().map(|p| smoother.push(*p)).collect()
}

/// A stretch of time with one activity, as stored and served.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub activity: Activity,
    /// Milliseconds since the epoch, inclusive.
    pub start_ms: i64,
    /// Milliseconds since the epoch, exclusive.
    pub end_ms: i64,
    /// Mean smoothed probability of the segment's windows.
    pub confidence: f32,
    /// Windows the segment is made of.
    pub windows: u32,
}

/// The part of its window a label speaks for: the middle `STEP` samples, so consecutive
/// windows (which overlap by half) tile the time line without overlapping.
pub fn labelled_span(window_start_ms: i64, sample_ms: i64) -> (i64, i64) {
    let first = window_start_ms + sample_ms * ((WINDOW - STEP) / 2) as i64;
    (first, first + sample_ms * STEP as i64)
}

/// Joins consecutive windows of one stream with the same label into segments.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    current: Option<Segment>,
}

impl Segments {
    /// Adds a labelled span; returns the segment it now belongs to (new or extended). A span
    /// that does not start where the current segment ends (a gap) starts a new segment.
    pub fn push(&mut self, activity: Activity, confidence: f32, span: (i64, i64)) -> Segment {
        match &mut self.current {
            Some(s) if s.activity == activity && s.end_ms == span.0 => {
                let n = s.windows as f32;
                s.confidence = (s.confidence * n + confidence) / (n + 1.0);
                s.windows += 1;
                s.end_ms = span.1;
            }
            current => {
                *current = Some(Segment {
                    activity,
                    start_ms: span.0,
                    end_ms: span.1,
                    confidence,
                    windows: 1,
                });
            }
        }
        self.current.clone().expect("a segment was just set")
    }
}

/// The most probable activity of a row of probabilities.
pub fn most_probable(p: &[f32; 6]) -> (Activity, f32) {
    let (i, v) = p.iter().enumerate().fold(
        (0, f32::MIN),
        |best, (i, v)| if *v > best.1 { (i, *v) } else { best },
    );
    (Activity::ALL[i], v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: usize, v: f32) -> [f32; 6] {
        let mut p = [(1.0 - v) / 5.0; 6];
        p[i] = v;
        p
    }

    #[test]
    fn smoothing_outvotes_a_single_odd_window() {
        let labels = smoothed(&[p(3, 0.9), p(3, 0.9), p(4, 0.6), p(3, 0.9)]);
        assert!(labels.iter().all(|(a, _)| *a == Activity::Sitting));
    }

    #[test]
    fn spans_of_consecutive_windows_tile_and_join_into_one_segment() {
        let mut segments = Segments::default();
        let a = labelled_span(0, 20);
        let b = labelled_span(64 * 20, 20);
        assert_eq!(a, (640, 1920));
        assert_eq!(a.1, b.0);
        segments.push(Activity::Walking, 0.8, a);
        let s = segments.push(Activity::Walking, 0.6, b);
        assert_eq!((s.start_ms, s.end_ms, s.windows), (640, 3200, 2));
        assert!((s.confidence - 0.7).abs() < 1e-6);
        let s = segments.push(Activity::Lying, 0.9, labelled_span(128 * 20, 20));
        assert_eq!(
            (s.activity, s.start_ms, s.windows),
            (Activity::Lying, 3200, 1)
        );
    }
}
