//! The model on disk: `model.safetensors` (the weights) beside `model.json` (what they are).
//!
//! `model.json` says how the model was made and what it expects: the input layout (rate,
//! window, channels and units, features, classes), the normalisation, the training settings
//! and seed, the data's provenance and hash, the scores on the held-out subjects, and the
//! sha256 of the weights. [`load`] refuses a model whose layout is not this code's, or whose
//! weights are not the ones `model.json` describes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classify::Classifier;
use crate::input::{Normalisation, FEATURES};
use crate::metrics::Scores;
use crate::motion::{Activity, CHANNELS, SAMPLE_HZ, STEP, WINDOW};
use crate::net::{Net, Shape};
use crate::train::{TrainConfig, Trained};
use crate::{Error, Result};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const METADATA_FILE: &str = "model.json";
/// The architecture's name; with the weights' hash, the version stored with each segment.
pub const ARCHITECTURE: &str = "har-cnn1";

/// What the network takes and gives; a model file must match the code's exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub sample_hz: u32,
    pub window: usize,
    pub step: usize,
    /// `name:unit` of each input row, in order.
    pub channels: Vec<String>,
    pub features: usize,
    pub classes: Vec<String>,
}

impl Layout {
    /// The layout of this code.
    pub fn current() -> Layout {
        Layout {
            sample_hz: SAMPLE_HZ,
            window: WINDOW,
            step: STEP,
            channels: CHANNELS
                .iter()
                .map(|c| format!("{}:{}", c.name, c.unit))
                .collect(),
            features: FEATURES,
            classes: Activity::ALL.iter().map(|a| a.name().to_owned()).collect(),
        }
    }
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: String,
    pub licence: String,
    /// sha256 of the CSV the model was trained on.
    pub data_sha256: String,
    pub train_windows: usize,
    pub test_windows: usize,
    pub test_subjects: Vec<u32>,
}

/// The contents of `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub architecture: String,
    /// `ARCHITECTURE` + the first 12 hex digits of the weights' sha256: stored with every
    /// activity segment the model writes.
    pub version: String,
    pub tributary_version: String,
    pub layout: Layout,
    pub shape: Shape,
    pub normalisation: Normalisation,
    pub training: TrainConfig,
    pub training_seconds: f64,
    pub data: Provenance,
    /// Per-window scores on the held-out subjects (the protocol's figure).
    pub test: Scores,
    /// The same after smoothing (what the timeline shows).
    pub test_smoothed: Scores,
    pub weights_sha256: String,
}

/// A loaded model.
#[derive(Debug)]
pub struct Model {
    pub metadata: Metadata,
    pub classifier: Classifier,
}

fn weights_path(dir: &Path) -> PathBuf {
    dir.join(WEIGHTS_FILE)
}

fn metadata_path(dir: &Path) -> PathBuf {
    dir.join(METADATA_FILE)
}

fn io<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    let what = what.to_owned();
    move |e| Error::ModelFile(format!("{what} {}: {e}", path.display()))
}

/// Writes the weights and `model.json` into `dir`; `metadata.weights_sha256` and
/// `metadata.version` are filled in from the weights written. Returns the metadata.
pub fn save(dir: &Path, trained: &Trained, mut metadata: Metadata) -> Result<Metadata> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tensors: HashMap<String, Tensor> = trained
        .varmap
        .data()
        .lock()
        .expect("the var map lock is not poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let weights = weights_path(dir);
    candle_core::safetensors::save(&tensors, &weights)?;
    let bytes = std::fs::read(&weights).map_err(io("read", &weights))?;
    metadata.weights_sha256 = hex::encode(Sha256::digest(&bytes));
    metadata.version = format!("{ARCHITECTURE}-{}", &metadata.weights_sha256[..12]);
    write_metadata(dir, &metadata)?;
    Ok(metadata)
}

/// (Re)writes `model.json` in `dir`.
pub fn write_metadata(dir: &Path, metadata: &Metadata) -> Result<()> {
    let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
    let path = metadata_path(dir);
    std::fs::write(&path, json).map_err(io("write", &path))
}

/// Reads and checks the model in `dir`.
pub fn load(dir: &Path) -> Result<Model> {
    let path = metadata_path(dir);
    let json = std::fs::read(&path).map_err(io("read", &path))?;
    let metadata: Metadata = serde_json::from_slice(&json)
        .map_err(|e| Error::ModelFile(format!("{}: {e}", path.display())))?;
    if metadata.architecture != ARCHITECTURE {
        return Err(Error::ModelFile(format!(
            "{}: architecture {:?}, this build runs {ARCHITECTURE:?}",
            path.display(),
            metadata.architecture
        )));
    }
    let layout = Layout::current();
    if metadata.layout != layout {
        return Err(Error::ModelFile(format!(
            "{}: the model's input layout {:?} is not this build's {:?}; train the model again",
            path.display(),
            metadata.layout,
            layout
        )));
    }
    let norm = &metadata.normalisation;
    if norm.signal_mean.len() != CHANNELS.len()
        || norm.signal_std.len() != CHANNELS.len()
        || norm.feature_mean.len() != FEATURES
        || norm.feature_std.len() != FEATURES
    {
        return Err(Error::ModelFile(format!(
            "{}: normalisation of the wrong size",
            path.display()
        )));
    }
    let weights = weights_path(dir);
    let bytes = std::fs::read(&weights).map_err(io("read", &weights))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != metadata.weights_sha256 {
        return Err(Error::ModelFile(format!(
            "{}: sha256 {sha} is not the {} model.json names",
            weights.display(),
            metadata.weights_sha256
        )));
    }
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)?;
    let net = Net::new(metadata.shape, vb)
        .map_err(|e| Error::ModelFile(format!("{}: {e}", weights.display())))?
        .fold_batch_norm()?;
    let classifier = Classifier::new(&net, metadata.normalisation.clone())?;
    Ok(Model {
        metadata,
        classifier,
    })
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io("read", path))?;
    Ok(hex::encode(hasher.finalize()))
}
