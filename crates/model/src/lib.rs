//! The behaviour model: activity recognition from a device's motion stream.
//!
//! - [`motion`]: the channels a device sends (`acc_x` … `gyr_z`), their units and rate, and the
//!   six [`motion::Activity`] labels.
//! - [`window`]: the one windowing function (128 samples, step 64) used by training and the live
//!   pipeline, and [`input`]: the one normalisation of a window into the network's input.
//! - [`net`]: the 1-D CNN (candle, CPU), [`train`]: the seeded training loop, [`infer`]: the
//!   trained network as plain loops, [`classify`]: classifying windows and the smoothing of
//!   labels into segments, [`metrics`]: accuracy, macro-F1, confusion.
//! - [`model_file`]: the model on disk (safetensors + `model.json`), refused when its input
//!   layout does not match this code's.
//! - [`har`]: the UCI HAPT benchmark under the UCI-HAR protocol.
//!
//! # Example
//!
//! A device's stream becomes windows, each window a label, consecutive labels a segment:
//!
//! ```
//! use tributary_model::classify::{labelled_span, Segments, Smoother};
//! use tributary_model::motion::{Activity, STEP, WINDOW};
//! use tributary_model::window::Windower;
//!
//! let mut windower = Windower::new();
//! let still = [0.0, 0.0, 9.81, 0.0, 0.0, 0.0]; // acc_x … gyr_z, m/s² and rad/s
//! let starts: Vec<u64> = (0..WINDOW + STEP)
//!     .filter_map(|_| windower.push(still).map(|(first, _window)| first))
//!     .collect();
//! assert_eq!(starts, [0, STEP as u64]);
//!
//! // A trained model gives each window six probabilities
//! // (`model_file::load(dir)?.classifier.probabilities(&window)`); say both said lying:
//! let (mut smoother, mut segments) = (Smoother::default(), Segments::default());
//! let lying = [0.0, 0.0, 0.0, 0.05, 0.05, 0.9];
//! for first in starts {
//!     let (activity, confidence) = smoother.push(lying);
//!     let span = labelled_span(first as i64 * 20, 20); // sample times in ms, 50 Hz
//!     let segment = segments.push(activity, confidence, span);
//!     assert_eq!((segment.activity, segment.start_ms), (Activity::Lying, 640));
//! }
//! ```

pub mod classify;
pub mod har;
pub mod infer;
pub mod input;
pub mod metrics;
pub mod model_file;
pub mod motion;
pub mod net;
mod rng;
pub mod train;
pub mod window;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The training or evaluation data are missing or malformed.
    #[error("data: {0}")]
    Data(String),
    /// A model file is missing, damaged, or made for another input layout.
    #[error("model file: {0}")]
    ModelFile(String),
    /// The tensor library failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
