//! The `[archive]` table of the config file: where the archive sink writes
//! (the archive's own [`ArchiveConfig`]) and when (its [`FlushPolicy`]).

use std::time::Duration;

use serde::Deserialize;
use tributary_archive::ArchiveConfig;

use crate::{Error, FlushPolicy, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveFileConfig {
    /// `false`: no archive is written.
    pub enabled: bool,
    /// A directory (relative to the data dir) or `file:///PATH`, or
    /// `s3://BUCKET[/PREFIX]` [default: DATA_DIR/archive].
    pub url: Option<String>,
    /// S3: the endpoint of an S3-compatible service.
    pub endpoint: Option<String>,
    /// S3: the region.
    pub region: Option<String>,
    /// S3: allow an `http://` endpoint.
    pub allow_http: bool,
    /// A batch is written once it holds this many measurements…
    pub max_rows: usize,
    /// …or once its oldest record waited this long.
    pub max_age_secs: f64,
    /// Distinct UTC days (`date=` partitions) one message's measurements
    /// may fall on; a message spanning more is a dead letter. 0: no limit.
    pub max_days_per_message: u32,
}

impl Default for ArchiveFileConfig {
    fn default() -> Self {
        let policy = FlushPolicy::default();
        ArchiveFileConfig {
            enabled: true,
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            max_rows: policy.max_rows,
            max_age_secs: policy.max_age.as_secs_f64(),
            max_days_per_message: policy.max_days_per_message,
        }
    }
}

impl ArchiveFileConfig {
    /// Where the archive is.
    pub fn archive(&self) -> ArchiveConfig {
        ArchiveConfig {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
        }
    }

    /// The flush policy, each value checked with a message naming its key.
    pub fn policy(&self) -> Result<FlushPolicy> {
        if !(1..=10_000_000).contains(&self.max_rows) {
            return Err(Error::Config(
                "archive.max_rows must be from 1 to 10000000".into(),
            ));
        }
        if !(self.max_age_secs.is_finite() && (0.01..=86_400.0).contains(&self.max_age_secs)) {
            return Err(Error::Config(
                "archive.max_age_secs must be from 0.01 to 86400".into(),
            ));
        }
        Ok(FlushPolicy {
            max_rows: self.max_rows,
            max_age: Duration::from_secs_f64(self.max_age_secs),
            max_days_per_message: self.max_days_per_message,
            erased: crate::erasure::Tombstones::default(),
        })
    }
}

/// The `[model]` table: the behaviour model (activity recognition) and raw motion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelFileConfig {
    /// `false`: no activity recognition, even with a model present.
    pub enabled: bool,
    /// The directory with `model.safetensors` and `model.json` (`tributary model train-har
    /// --out`), relative to the data dir [default: DATA_DIR/model]. Absent at the default
    /// place, activity recognition is off; absent or invalid where configured, `serve` refuses
    /// to start.
    pub path: Option<std::path::PathBuf>,
    /// `true`: raw motion (`acc_x` … `gyr_z`, 300 rows/s per person at 50 Hz) is also kept in
    /// the measurements store; the archive always keeps it.
    pub store_motion: bool,
}

impl Default for ModelFileConfig {
    fn default() -> Self {
        ModelFileConfig {
            enabled: true,
            path: None,
            store_motion: false,
        }
    }
}

/// The model directory used when `[model] path` is not set, relative to the data dir.
pub const DEFAULT_MODEL_DIR: &str = "model";

impl ModelFileConfig {
    /// Where the model is, and whether that place was configured (then it must hold a model).
    pub fn location(&self, data_dir: &std::path::Path) -> (std::path::PathBuf, bool) {
        match &self.path {
            Some(p) => (data_dir.join(p), true),
            None => (data_dir.join(DEFAULT_MODEL_DIR), false),
        }
    }

    /// Which rows the measurement store keeps.
    pub fn motion_rows(&self) -> crate::MotionRows {
        if self.store_motion {
            crate::MotionRows::Store
        } else {
            crate::MotionRows::Skip
        }
    }
}
