//! `tributary model`: train, evaluate and time the behaviour model (activity recognition) on
//! the UCI HAPT benchmark. The CSV comes from `scripts/har_dataset.py` (docs/model.md).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use tributary_model::har::{self, Dataset};
use tributary_model::metrics::Scores;
use tributary_model::model_file;
use tributary_model::train::{Progress, TrainConfig};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Train the activity model on the HAPT training subjects, write it (model.safetensors +
    /// model.json) into --out, and print its scores on the nine held-out subjects.
    TrainHar {
        /// The CSV written by scripts/har_dataset.py.
        #[arg(long)]
        data: PathBuf,
        /// Directory for the model files (serve reads them from [model] path).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the initial weights, the shuffles and the dropout masks.
        #[arg(long, default_value_t = TrainConfig::default().seed)]
        seed: u64,
        /// Passes over the training windows.
        #[arg(long, default_value_t = TrainConfig::default().epochs)]
        epochs: usize,
    },
    /// Print the accuracy, macro-F1 and confusion matrix of a model on the held-out subjects.
    EvalHar {
        #[arg(long)]
        data: PathBuf,
        /// Directory holding model.safetensors and model.json.
        #[arg(long)]
        model: PathBuf,
        /// Print the scores as one JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write each held-out window's labels to this CSV: subject, experiment, the
        /// run's first sample, the window's index in its run, truth, predicted, smoothed.
        #[arg(long)]
        windows: Option<PathBuf>,
    },
    /// Measure inference speed: windows classified per second on one thread (features
    /// included), over the held-out windows again and again.
    Speed {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        model: PathBuf,
        /// Seconds to keep classifying.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::TrainHar {
            data,
            out,
            seed,
            epochs,
        } => {
            anyhow::ensure!(epochs > 0, "--epochs must be at least 1");
            let config = TrainConfig {
                seed,
                epochs,
                ..TrainConfig::default()
            };
            eprintln!(
                "training on {} (seed {seed}, {epochs} epochs) into {}",
                data.display(),
                out.display()
            );
            let mut bar = ProgressBar::new();
            let metadata = har::train_har(&data, &out, &config, |p| bar.update(p))
                .with_context(|| format!("train on {}", data.display()))?;
            bar.finish();
            eprintln!(
                "trained {} on {} windows in {:.0} s; held-out subjects: {} windows",
                metadata.version,
                metadata.data.train_windows,
                metadata.training_seconds,
                metadata.data.test_windows
            );
            print_scores(&metadata.test, &metadata.test_smoothed);
            Ok(())
        }
        ModelCommand::EvalHar {
            data,
            model,
            json,
            windows,
        } => {
            let (metadata, dataset, test_windows, evaluation) = har::eval_har(&data, &model)
                .with_context(|| format!("evaluate {} on {}", model.display(), data.display()))?;
            if let Some(path) = windows {
                write_windows(&path, &dataset, &test_windows, &evaluation)?;
            }
            let (test, smoothed) = (evaluation.test, evaluation.smoothed);
            if json {
                let doc = serde_json::json!({
                    "version": metadata.version,
                    "seed": metadata.training.seed,
                    "test": test,
                    "test_smoothed": smoothed,
                });
                println!("{doc}");
            } else {
                eprintln!("{} (seed {})", metadata.version, metadata.training.seed);
                print_scores(&test, &smoothed);
            }
            Ok(())
        }
        ModelCommand::Speed {
            data,
            model,
            seconds,
        } => speed(&data, &model, seconds),
    }
}

/// One line per held-out window, in order, so a test can find each window's time in a replay.
fn write_windows(
    path: &std::path::Path,
    dataset: &Dataset,
    windows: &tributary_model::window::Windows,
    evaluation: &har::Evaluation,
) -> anyhow::Result<()> {
    let mut out = String::from("subject,experiment,run_first,index,truth,predicted,smoothed\n");
    let mut index = 0;
    for i in 0..windows.len() {
        index = if i > 0 && windows.runs[i] == windows.runs[i - 1] {
            index + 1
        } else {
            0
        };
        let run = &dataset.runs[windows.runs[i]];
        out.push_str(&format!(
            "{},{},{},{index},{},{},{}\n",
            run.subject,
            run.experiment,
            run.first,
            windows.labels[i].name(),
            evaluation.predicted[i].name(),
            evaluation.smoothed_labels[i].name()
        ));
    }
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

fn print_scores(test: &Scores, smoothed: &Scores) {
    println!(
        "accuracy {:.2} %  macro-F1 {:.2} %  ({} windows; smoothed as the timeline is: accuracy {:.2} %, macro-F1 {:.2} %)",
        100.0 * test.accuracy,
        100.0 * test.macro_f1,
        test.windows,
        100.0 * smoothed.accuracy,
        100.0 * smoothed.macro_f1
    );
    print!("{}", test.confusion_table());
}

fn speed(data: &std::path::Path, model: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    let model = model_file::load(model)?;
    let (_, test) = Dataset::read(data)?.split();
    let started = Instant::now();
    let mut windows = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        for window in &test.windows {
            std::hint::black_box(model.classifier.probabilities(window));
        }
        windows += test.windows.len();
    }
    let per_second = windows as f64 / started.elapsed().as_secs_f64();
    println!(
        "{per_second:.0} windows/s on one thread ({windows} windows in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A one-line progress bar on a terminal; a line per epoch otherwise (logs, CI).
struct ProgressBar {
    started: Instant,
    terminal: bool,
    last_epoch: usize,
}

impl ProgressBar {
    fn new() -> ProgressBar {
        ProgressBar {
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            last_epoch: 0,
        }
    }

    fn update(&mut self, p: Progress) {
        let done = (p.epoch - 1) * p.batches + p.batch;
        let total = p.epochs * p.batches;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = elapsed / done as f64 * (total - done) as f64;
        let width = 30;
        let filled = width * done / total;
        let line = format!(
            "epoch {:>3}/{} [{}{}] loss {:.4}  {:.0} s, about {:.0} s left",
            p.epoch,
            p.epochs,
            "#".repeat(filled),
            ".".repeat(width - filled),
            p.loss,
            elapsed,
            eta
        );
        if self.terminal {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else if p.batch == p.batches && p.epoch != self.last_epoch {
            self.last_epoch = p.epoch;
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
