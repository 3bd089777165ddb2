//! A pooled pack's release: who is in it, and the noisy numbers it publishes.
//!
//! A buyer's pack asks for one measurement type over a run of days, with
//! some of four aggregates per day: how many participants had data, their
//! mean, a histogram of their values, and percentiles. This module turns
//! the participants' daily values (one per participant and day, computed by
//! the store) into that release, or refuses it. No I/O: the caller loads the
//! values and the budgets, and records the ledgers this returns.
//!
//! The privacy model, in the order the code applies it:
//!
//! 1. **Budgets.** Each participant sets a ceiling on the ε spent on their
//!    data; one whose remaining budget is below the release's ε is left out
//!    (and named in [`Release::left_out`], so the caller can tell them).
//! 2. **k-anonymity of the pool.** Fewer than `min_participants` (k = 10 by
//!    default) left with data in the pack's days → refused, with the count
//!    in the reason.
//! 3. **Per-participant contribution bounds.** A participant gives at most
//!    one value per day (their daily mean), clamped to the pack's
//!    `[lower, upper]`, so one participant moves a day's count by at most 1,
//!    its sum by at most `max(|lower|, |upper|, upper − lower)`, and its
//!    histogram by at most 2 (one value leaves a bin, one enters another).
//! 4. **Noise.** Each aggregate is one vector over the days; its L1
//!    sensitivity is the per-day bound times the number of days. The
//!    release's ε is split evenly over the noisy vectors (sequential
//!    composition) and each gets Laplace noise from OpenDP ([`noise`]).
//!    Means and percentiles are computed from the noisy sums, counts and
//!    histograms (post-processing costs nothing), so they are never sampled
//!    on their own.
//!
//! Neighbouring packs differ in one participant's data (any of their values
//! changed, added or removed); the number of participants is public — it is
//! what k-anonymity checks, and buyers pay per participant.
//!
//! [`noise`]: crate::noise

use std::collections::BTreeMap;

use serde::Serialize;

use crate::noise::{self, NoiseError, NoiseParameters};

/// The least number of participants a pack is released with, unless the
/// installation sets more.
pub const DEFAULT_MIN_PARTICIPANTS: usize = 10;

/// A day of the pack, as days since 1970-01-01 (UTC).
pub type Day = i64;

/// What a buyer asks of one pack's release.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseSpec {
    /// The days of the pack, in order, each once.
    pub days: Vec<Day>,
    /// Every value is clamped into this range before it counts.
    pub lower: f64,
    pub upper: f64,
    /// What the release costs each participant.
    pub epsilon: f64,
    pub aggregates: Aggregates,
    /// k: fewer participants than this and nothing is released.
    pub min_participants: usize,
}

/// The aggregates a pack publishes per day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Aggregates {
    /// How many participants had data that day.
    pub count: bool,
    /// The mean of the participants' daily values.
    pub mean: bool,
    /// Bin edges (ascending, at least two): the number of participants
    /// whose value fell in each bin. Values are clamped first, so the
    /// first and last bins take everything below and above.
    pub histogram: Option<Vec<f64>>,
    /// Percentiles (0–100), read off the noisy histogram, so they need one.
    pub percentiles: Vec<f64>,
}

/// One participant as the release sees them: an opaque id, what is left of
/// their budget, and their value for each day they had data.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub id: String,
    pub budget_left: f64,
    pub values: BTreeMap<Day, f64>,
}

/// Why a pack was not released: for the buyer's answer.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{included} participants have budget left for ε = {epsilon} ({left_out} more are out of budget): at least {needed} are needed"
    )]
    TooFewParticipants {
        included: usize,
        left_out: usize,
        needed: usize,
        epsilon: f64,
    },
    #[error("invalid pack: {0}")]
    Invalid(String),
    #[error(transparent)]
    Noise(#[from] NoiseError),
}

/// A released pack: the noisy numbers per day, the noise's parameters, and
/// who was in it (for the budget and earnings ledgers, never published).
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub participants: usize,
    pub epsilon: f64,
    pub days: Vec<DayFigures>,
    /// One entry per noisy vector ("count", "sum", "histogram").
    pub noise: BTreeMap<&'static str, NoiseParameters>,
    pub lower: f64,
    pub upper: f64,
    pub histogram_edges: Option<Vec<f64>>,
    /// The participants whose data is in the release (charged `epsilon`).
    #[serde(skip)]
    pub included: Vec<String>,
    /// The participants left out because their budget was spent.
    #[serde(skip)]
    pub left_out: Vec<String>,
}

/// The published figures of one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayFigures {
    pub day: Day,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub percentiles: BTreeMap<String, f64>,
}

impl ReleaseSpec {
    /// Checks what no release can be made of, before anyone's budget is looked at.
    pub fn validate(&self) -> Result<(), Refusal> {
        let invalid = |what: &str| Err(Refusal::Invalid(what.to_owned()));
        if self.days.is_empty() {
            return invalid("a pack needs at least one day");
        }
        if self.days.windows(2).any(|w| w[0] >= w[1]) {
            return invalid("the days must be ascending, each once");
        }
        if !(self.lower.is_finite() && self.upper.is_finite() && self.lower < self.upper) {
            return invalid("the bounds must be finite with lower < upper");
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return invalid("ε must be a finite number above 0");
        }
        if self.min_participants < 1 {
            return invalid("the least number of participants must be at least 1");
        }
        let a = &self.aggregates;
        if let Some(edges) = &a.histogram {
            if edges.iter().any(|e| !e.is_finite()) {
                return invalid("histogram edges must be finite");
            }
            if edges.len() < 2 || edges.windows(2).any(|w| w[0] >= w[1]) {
                return invalid("histogram edges must be at least two, strictly ascending");
            }
        }
        if !a.percentiles.is_empty() && a.histogram.is_none() {
            return invalid("percentiles are read off the histogram: ask for one");
        }
        if a.percentiles.iter().any(|p| !(0.0..=100.0).contains(p)) {
            return invalid("percentiles must be between 0 and 100");
        }
        if !(a.count || a.mean || a.histogram.is_some()) {
            return invalid("a pack needs at least one aggregate");
        }
        Ok(())
    }

    /// The noisy vectors this release samples, each with its per-day
    /// sensitivity (see the module's privacy model).
    fn vectors(&self) -> Vec<(&'static str, f64)> {
        let a = &self.aggregates;
        let mut vectors = Vec::new();
        // A mean is the noisy sum over the noisy count, so it needs both.
        if a.count || a.mean {
            vectors.push(("count", 1.0));
        }
        if a.mean {
            let span = self.upper - self.lower;
            vectors.push(("sum", span.max(self.lower.abs()).max(self.upper.abs())));
        }
        if a.histogram.is_some() {
            vectors.push(("histogram", 2.0));
        }
        vectors
    }
}

/// Releases a pack of `participants` under `spec`, or says why not.
pub fn release(spec: &ReleaseSpec, participants: &[Participant]) -> Result<Release, Refusal> {
    spec.validate()?;
    // Only participants with data in the pack's days count towards k: an
    // owner who joined but measured nothing (or whose data was erased) would
    // make the pool look larger than the people in it.
    let contributing: Vec<&Participant> = participants
        .iter()
        .filter(|p| {
            spec.days
                .iter()
                .any(|d| p.values.get(d).is_some_and(|v| v.is_finite()))
        })
        .collect();
    let (included, left_out): (Vec<&Participant>, Vec<&Participant>) = contributing
        .into_iter()
        .partition(|p| p.budget_left >= spec.epsilon);
    if included.len() < spec.min_participants {
        return Err(Refusal::TooFewParticipants {
            included: included.len(),
            left_out: left_out.len(),
            needed: spec.min_participants,
            epsilon: spec.epsilon,
        });
    }

    let clamp = |v: f64| v.clamp(spec.lower, spec.upper);
    let days = spec.days.len();
    let mut counts = vec![0.0; days];
    let mut sums = vec![0.0; days];
    let edges = spec.aggregates.histogram.as_deref();
    let bins = edges.map_or(0, |e| e.len() - 1);
    let mut histogram = vec![0.0; days * bins];
    for participant in &included {
        for (i, day) in spec.days.iter().enumerate() {
            let Some(value) = participant
                .values
                .get(day)
                .copied()
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let value = clamp(value);
            counts[i] += 1.0;
            sums[i] += value;
            if let Some(edges) = edges {
                histogram[i * bins + bin_of(edges, value)] += 1.0;
            }
        }
    }

    let vectors = spec.vectors();
    let epsilon_each = spec.epsilon / vectors.len() as f64;
    let mut noise = BTreeMap::new();
    let mut noisy: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for (name, per_day) in vectors {
        let exact = match name {
            "count" => &counts,
            "sum" => &sums,
            _ => &histogram,
        };
        let (values, parameters) = noise::laplace(exact, per_day * days as f64, epsilon_each)?;
        noise.insert(name, parameters);
        noisy.insert(name, values);
    }

    let a = &spec.aggregates;
    let figures = spec
        .days
        .iter()
        .enumerate()
        .map(|(i, &day)| {
            let count = noisy.get("count").map(|c| c[i].max(0.0));
            let mean = a.mean.then(|| {
                // Post-processing: a noisy sum over a noisy count, kept inside the bounds.
                let sum = noisy["sum"][i];
                clamp(sum / count.unwrap_or(0.0).max(1.0))
            });
            let day_histogram = noisy.get("histogram").map(|h| {
                h[i * bins..(i + 1) * bins]
                    .iter()
                    .map(|c| c.max(0.0))
                    .collect::<Vec<f64>>()
            });
            let percentiles = match (&day_histogram, edges) {
                (Some(h), Some(edges)) => a
                    .percentiles
                    .iter()
                    .map(|&p| (format!("p{p}"), percentile(edges, h, p)))
                    .collect(),
                _ => BTreeMap::new(),
            };
            DayFigures {
                day,
                // Published whenever it was sampled (a mean needs it): it is paid for.
                count,
                mean,
                histogram: day_histogram,
                percentiles,
            }
        })
        .collect();

    Ok(Release {
        participants: included.len(),
        epsilon: spec.epsilon,
        days: figures,
        noise,
        lower: spec.lower,
        upper: spec.upper,
        histogram_edges: spec.aggregates.histogram.clone(),
        included: included.iter().map(|p| p.id.clone()).collect(),
        left_out: left_out.iter().map(|p| p.id.clone()).collect(),
    })
}

/// The bin a clamped value falls in: bins are `[e_i, e_i+1)`, the last one
/// closed, and values outside the edges go to the first or last bin.
fn bin_of(edges: &[f64], value: f64) -> usize {
    let bins = edges.len() - 1;
    edges[1..bins].iter().take_while(|&&e| e <= value).count()
}

/// The `p`th percentile read off a (noisy, non-negative) histogram,
/// interpolating linearly inside the bin it falls in.
fn percentile(edges: &[f64], histogram: &[f64], p: f64) -> f64 {
    let total: f64 = histogram.iter().sum();
    if total <= 0.0 {
        return (edges[0] + edges[edges.len() - 1]) / 2.0;
    }
    let target = total * p / 100.0;
    let mut below = 0.0;
    for (i, &count) in histogram.iter().enumerate() {
        if below + count >= target && count > 0.0 {
            let within = (target - below) / count;
            return edges[i] + within * (edges[i + 1] - edges[i]);
        }
        below += count;
    }
    edges[edges.len() - 1]
}

#[cfg(test)]
mod tests;
