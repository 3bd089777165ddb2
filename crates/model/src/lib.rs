//! The behaviour model: activity recognition from a device's motion stream.
//!
//! - [`motion`]: the channels a device sends (`acc_x` … `gyr_z`), their units and rate, and the
//!   six [`motion::Activity`] labels.
//! - [`window`]: the one windowing function (128 samples, step 64) used by training and the live
//!   pipeline, and [`input`]: the one normalisation of a window into the network's input.
//! - [`net`]: the 1-D CNN (candle, CPU), [`train`]: the seeded training loop,
//!   [`classify`]: batched inference and the smoothing of labels into segments.
//! - [`model_file`]: the model on disk (safetensors + `model.json`), refused when its input
//!   layout does not match this code's.
//! - [`har`]: the UCI HAPT benchmark under the UCI-HAR protocol.

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
