//! What the network sees of a window: the normalised signal and summary features.
//!
//! One function, [`ModelInput::of`], makes it for training, evaluation and the live pipeline, so
//! the three cannot drift apart.
//!
//! - The signal rows are each channel with the window's own mean removed, scaled by the
//!   channel's training spread: the convolutions see movement, not how the device happens to
//!   sit on the body (which differs from person to person and is the main source of error
//!   across people).
//! - The summary features carry what was removed and what a short convolution sees poorly:
//!   the direction of gravity (which tells sitting from standing from lying), per-channel
//!   statistics over the whole window, the correlations between axes, and the energy in five
//!   frequency bands.

use serde::{Deserialize, Serialize};

use crate::motion::{SAMPLE_HZ, WINDOW};
use crate::window::Window;

/// Series the features are taken of: the six channels, then |acc| and |gyr|.
const SERIES: usize = 8;
/// Statistics per series: mean, std, min, max, median, interquartile range, mean absolute
/// deviation, mean square.
const STATS: usize = 8;
/// Frequency bands (Hz) whose energy is a feature: posture drift, steps, their harmonics.
const BANDS_HZ: [(f32, f32); 5] = [
    (0.3, 1.0),
    (1.0, 3.0),
    (3.0, 6.0),
    (6.0, 12.0),
    (12.0, 25.0),
];
/// Correlations: acc x–y, x–z, y–z and the same for gyr.
const CORRELATIONS: usize = 6;
/// Number of summary features.
pub const FEATURES: usize = SERIES * STATS + CORRELATIONS + SERIES * BANDS_HZ.len() + 3;

/// Per-input mean and standard deviation, measured on the training windows and stored in the
/// model file, so live data are scaled exactly as the training data were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Unused for centring (each window removes its own mean); kept for the record.
    pub signal_mean: Vec<f32>,
    pub signal_std: Vec<f32>,
    pub feature_mean: Vec<f32>,
    pub feature_std: Vec<f32>,
}

/// A window as the network takes it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// 6 × WINDOW, channel-major: each channel minus its window mean, over its training spread.
    pub signal: Vec<f32>,
    /// [`FEATURES`] summary features, scaled by the normalisation.
    pub features: Vec<f32>,
}

impl ModelInput {
    /// The network's input for `window`.
    pub fn of(window: &Window, norm: &Normalisation) -> ModelInput {
        let mut signal = window.values.clone();
        for c in 0..6 {
            let row = &mut signal[c * WINDOW..(c + 1) * WINDOW];
            let mean = row.iter().sum::<f32>() / WINDOW as f32;
            let s = norm.signal_std[c];
            for v in row.iter_mut() {
                *v = (*v - mean) / s;
            }
        }
        let mut features = summary_features(window);
        for (i, v) in features.iter_mut().enumerate() {
            *v = (*v - norm.feature_mean[i]) / norm.feature_std[i];
        }
        ModelInput { signal, features }
    }
}

/// The unscaled summary features of a window.
pub fn summary_features(window: &Window) -> Vec<f32> {
    let magnitude = |first: usize| -> Vec<f32> {
        (0..WINDOW)
            .map(|t| {
                (0..3)
                    .map(|k| window.values[(first + k) * WINDOW + t].powi(2))
                    .sum::<f32>()
                    .sqrt()
            })
            .collect()
    };
    let acc_norm = magnitude(0);
    let gyr_norm = magnitude(3);
    let series: Vec<&[f32]> = (0..6)
        .map(|c| window.channel(c))
        .chain([&acc_norm[..], &gyr_norm[..]])
        .collect();
    let mut out = Vec::with_capacity(FEATURES);
    let mut means = [0.0f32; SERIES];
    let mut stds = [0.0f32; SERIES];
    let mut sorted = [0.0f32; WINDOW];
    for (i, s) in series.iter().enumerate() {
        let n = WINDOW as f32;
        let mean = s.iter().sum::<f32>() / n;
        let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        let mad = s.iter().map(|v| (v - mean).abs()).sum::<f32>() / n;
        let energy = s.iter().map(|v| v * v).sum::<f32>() / n;
        // Order statistics by selection (linear time) rather than a full sort: after
        // `select_nth_unstable` at i, everything before i is no larger than the value at i.
        sorted.copy_from_slice(s);
        let q3 = *sorted
            .select_nth_unstable_by(3 * WINDOW / 4, f32::total_cmp)
            .1;
        let upper_median = *sorted[..3 * WINDOW / 4]
            .select_nth_unstable_by(WINDOW / 2, f32::total_cmp)
            .1;
        let lower_median = *sorted[..WINDOW / 2]
            .select_nth_unstable_by(WINDOW / 2 - 1, f32::total_cmp)
            .1;
        let q1 = *sorted[..WINDOW / 2 - 1]
            .select_nth_unstable_by(WINDOW / 4, f32::total_cmp)
            .1;
        let min = s.iter().copied().fold(f32::INFINITY, f32::min);
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        means[i] = mean;
        stds[i] = var.sqrt();
        out.extend([
            mean,
            var.sqrt(),
            min,
            max,
            (lower_median + upper_median) / 2.0,
            q3 - q1,
            mad,
            energy,
        ]);
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)] {
        let cov = series[a]
            .iter()
            .zip(series[b])
            .map(|(x, y)| (x - means[a]) * (y - means[b]))
            .sum::<f32>()
            / WINDOW as f32;
        let denominator = stds[a] * stds[b];
        out.push(if denominator > 1e-9 {
            cov / denominator
        } else {
            0.0
        });
    }
    let bands = band_bins();
    for (i, s) in series.iter().enumerate() {
        let power = power_spectrum(s, means[i]);
        for bins in bands {
            let e: f32 = power[bins.clone()].iter().sum();
            out.push((e + 1e-6).ln());
        }
    }
    let g = (means[0].powi(2) + means[1].powi(2) + means[2].powi(2))
        .sqrt()
        .max(1e-6);
    out.extend([means[0] / g, means[1] / g, means[2] / g]);
    out
}

/// The FFT bins of each band of `BANDS_HZ`: bin k is k·50/128 Hz, in a band when lo ≤ f < hi.
fn band_bins() -> &'static [std::ops::Range<usize>; BANDS_HZ.len()] {
    static BINS: std::sync::OnceLock<[std::ops::Range<usize>; BANDS_HZ.len()]> =
        std::sync::OnceLock::new();
    BINS.get_or_init(|| {
        let hz_per_bin = SAMPLE_HZ as f32 / WINDOW as f32;
        let in_band = |k: usize, (lo, hi): (f32, f32)| {
            let f = k as f32 * hz_per_bin;
            f >= lo && f < hi
        };
        BANDS_HZ.map(|band| {
            let first = (0..=WINDOW / 2).find(|&k| in_band(k, band)).unwrap_or(0);
            let end = (first..=WINDOW / 2)
                .find(|&k| !in_band(k, band))
                .unwrap_or(WINDOW / 2 + 1);
            first..end
        })
    })
}

/// (sin, cos) of −2πj/N for j in 0..N/2: every twiddle factor of the FFT below.
fn twiddles() -> &'static [(f32, f32); WINDOW / 2] {
    static TWIDDLES: std::sync::OnceLock<[(f32, f32); WINDOW / 2]> = std::sync::OnceLock::new();
    TWIDDLES.get_or_init(|| {
        std::array::from_fn(|j| (-2.0 * std::f32::consts::PI * j as f32 / WINDOW as f32).sin_cos())
    })
}

/// |X_k|² / N for k in 0..=N/2 of the series minus `mean`: an in-place radix-2 FFT of the 128
/// samples (a power of two), a few thousand operations per series.
fn power_spectrum(s: &[f32], mean: f32) -> Vec<f32> {
    const N: usize = WINDOW;
    const { assert!(N.is_power_of_two()) };
    let bits = N.trailing_zeros();
    let mut re = [0.0f32; N];
    let mut im = [0.0f32; N];
    for (i, v) in s.iter().enumerate() {
        re[i.reverse_bits() >> (usize::BITS - bits)] = v - mean;
    }
    let twiddles = twiddles();
    let mut len = 2;
    while len <= N {
        for start in (0..N).step_by(len) {
            for k in 0..len / 2 {
                let (sin, cos) = twiddles[k * (N / len)];
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * cos - im[b] * sin;
                let ti = re[b] * sin + im[b] * cos;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len *= 2;
    }
    (0..=N / 2)
        .map(|k| (re[k] * re[k] + im[k] * im[k]) / N as f32)
        .collect()
}

/// Measures the normalisation on training windows (population mean and standard deviation;
/// the signal's spread is taken around each window's own mean, as [`ModelInput::of`] centres).
pub fn fit_normalisation(windows: &[Window]) -> Normalisation {
    let (signal_mean, signal_std) = mean_std(
        6,
        windows.iter().flat_map(|w| {
            (0..6).flat_map(move |c| {
                let row = w.channel(c);
                let mean = row.iter().sum::<f32>() / WINDOW as f32;
                row.iter().map(move |v| (c, *v - mean))
            })
        }),
    );
    let features: Vec<Vec<f32>> = windows.iter().map(summary_features).collect();
    let (feature_mean, feature_std) = mean_std(
        FEATURES,
        features.iter().flat_map(|f| f.iter().copied().enumerate()),
    );
    Normalisation {
        signal_mean,
        signal_std,
        feature_mean,
        feature_std,
    }
}

/// Mean and standard deviation of each of `n` inputs, from (input, value) pairs; a constant
/// input gets a standard deviation of 1 so scaling never divides by zero.
fn mean_std(n: usize, values: impl Iterator<Item = (usize, f32)>) -> (Vec<f32>, Vec<f32>) {
    let mut sum = vec![0.0f64; n];
    let mut sq = vec![0.0f64; n];
    let mut count = vec![0u64; n];
    for (i, v) in values {
        sum[i] += f64::from(v);
        sq[i] += f64::from(v) * f64::from(v);
        count[i] += 1;
    }
    let mut mean = vec![0.0f32; n];
    let mut std = vec![1.0f32; n];
    for i in 0..n {
        if count[i] == 0 {
            continue;
        }
        let m = sum[i] / count[i] as f64;
        let var = (sq[i] / count[i] as f64 - m * m).max(0.0);
        mean[i] = m as f32;
        if var > 1e-12 {
            std[i] = var.sqrt() as f32;
        }
    }
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_of_a_sine_peaks_at_its_frequency() {
        // 5 cycles in the window: bin 5.
        let s: Vec<f32> = (0..WINDOW)
            .map(|t| (2.0 * std::f32::consts::PI * 5.0 * t as f32 / WINDOW as f32).sin())
            .collect();
        let p = power_spectrum(&s, 0.0);
        let peak = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k);
        assert_eq!(peak, Some(5));
        // Parseval: N/2 · 1/2 spread over bins ±5 → |X_5|²/N = N/4.
        assert!((p[5] - WINDOW as f32 / 4.0).abs() < 1e-2, "{}", p[5]);
    }

    #[test]
    fn order_statistics_by_selection_equal_those_of_a_sorted_copy() {
        let w = Window {
            values: (0..6 * WINDOW)
                .map(|i| ((i * 7919) % 257) as f32 - 100.0)
                .collect(),
        };
        let features = summary_features(&w);
        for c in 0..6 {
            let mut sorted = w.channel(c).to_vec();
            sorted.sort_by(f32::total_cmp);
            let stats = &features[c * STATS..(c + 1) * STATS];
            assert_eq!(stats[2], sorted[0], "min of channel {c}");
            assert_eq!(stats[3], sorted[WINDOW - 1], "max of channel {c}");
            assert_eq!(
                stats[4],
                (sorted[WINDOW / 2 - 1] + sorted[WINDOW / 2]) / 2.0,
                "median of channel {c}"
            );
            assert_eq!(
                stats[5],
                sorted[3 * WINDOW / 4] - sorted[WINDOW / 4],
                "IQR of channel {c}"
            );
        }
    }

    #[test]
    fn features_have_the_declared_count() {
        let w = Window {
            values: (0..6 * WINDOW).map(|i| (i % 17) as f32).collect(),
        };
        assert_eq!(summary_features(&w).len(), FEATURES);
    }
}
