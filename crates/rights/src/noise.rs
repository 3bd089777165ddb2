//! The one source of differentially private noise: OpenDP's Laplace mechanism.
//!
//! Noise is the part of a pack release that must not be home-made
//! (principle 4): sampling a Laplace variable from a float uniform leaks
//! through the gaps in floating-point numbers, and an RNG seeded badly
//! leaks everything. OpenDP's `make_laplace` samples a discrete Laplace on a
//! fine grid with exact arithmetic from OpenSSL's CSPRNG, and its privacy
//! map says what ε a given scale and sensitivity cost; this module only
//! picks the scale and checks that map.
//!
//! The model of a release is a vector of statistics (one per day of the
//! pack); its L1 sensitivity is what one participant's data can move the
//! whole vector by, so the scale is `sensitivity / ε` and the mechanism's own
//! map must agree that it costs at most `ε`.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

/// Why noise could not be added: bad parameters (a bug in the caller or a
/// pack definition that slipped past validation) or OpenDP refusing.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("ε must be a finite number above 0, not {0}")]
    Epsilon(f64),
    #[error("sensitivity must be a finite number above 0, not {0}")]
    Sensitivity(f64),
    #[error("the Laplace mechanism refused: {0}")]
    Mechanism(String),
}

/// The published parameters of one noisy vector: what a buyer (or an
/// auditor) needs to know about the noise to interpret the numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NoiseParameters {
    /// Always "laplace" (OpenDP `make_laplace`, discrete Laplace on a fine grid).
    pub mechanism: &'static str,
    /// The L1 sensitivity of the whole vector to one participant.
    pub sensitivity: f64,
    /// The Laplace scale b: the noise's density is exp(-|x|/b) / 2b.
    pub scale: f64,
    /// What this vector costs each participant, from the mechanism's own map (≤ the ε asked for).
    pub epsilon: f64,
}

/// Adds Laplace noise to `values` so that releasing them costs each
/// participant at most `epsilon`, given that one participant moves the
/// whole vector by at most `sensitivity` in L1.
pub fn laplace(
    values: &[f64],
    sensitivity: f64,
    epsilon: f64,
) -> Result<(Vec<f64>, NoiseParameters), NoiseError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(NoiseError::Epsilon(epsilon));
    }
    if !(sensitivity.is_finite() && sensitivity > 0.0) {
        return Err(NoiseError::Sensitivity(sensitivity));
    }
    let mut scale = sensitivity / epsilon;
    // OpenDP's map rounds conservatively, so the first scale may cost a hair
    // over ε; widen it by a relative step until the map agrees. A handful of
    // steps at most.
    for _ in 0..64 {
        let measurement = measurement(scale)?;
        let cost = measurement
            .map(&sensitivity)
            .map_err(|e| NoiseError::Mechanism(e.to_string()))?;
        if cost <= epsilon {
            let noisy = measurement
                .invoke(&values.to_vec())
                .map_err(|e| NoiseError::Mechanism(e.to_string()))?;
            let parameters = NoiseParameters {
                mechanism: "laplace",
                sensitivity,
                scale,
                epsilon: cost,
            };
            return Ok((noisy, parameters));
        }
        scale *= 1.0 + 1e-9_f64.max(cost / epsilon - 1.0);
    }
    Err(NoiseError::Mechanism(format!(
        "no scale near {} costs at most ε = {epsilon}",
        sensitivity / epsilon
    )))
}

type Laplace = opendp::core::Measurement<
    VectorDomain<AtomDomain<f64>>,
    L1Distance<f64>,
    MaxDivergence,
    Vec<f64>,
>;

fn measurement(scale: f64) -> Result<Laplace, NoiseError> {
    let domain = VectorDomain::new(AtomDomain::<f64>::new_non_nan());
    make_laplace(domain, L1Distance::<f64>::default(), scale, None)
        .map_err(|e| NoiseError::Mechanism(e.to_string()))
}

/// The cumulative distribution function of Laplace(0, `scale`): what the
/// released noise must follow (the tests compare draws with it).
pub fn laplace_cdf(x: f64, scale: f64) -> f64 {
    if x < 0.0 {
        0.5 * (x / scale).exp()
    } else {
        1.0 - 0.5 * (-x / scale).exp()
    }
}
