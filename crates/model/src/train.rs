//! Training: mini-batch AdamW with a cosine learning-rate schedule, every random choice drawn
//! from one seed.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};

use crate::input::{fit_normalisation, ModelInput, Normalisation};
use crate::motion::WINDOW;
use crate::net::{batch_tensors, init, Net, Shape};
use crate::rng::Rng;
use crate::window::{Window, Windows};
use crate::Result;

/// The settings of a training run; written into `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub shape: Shape,
    /// Largest random rotation (degrees) applied to a training window, about a random axis,
    /// to both acc and gyr: people wear devices at slightly different angles. 0: none.
    pub rotate_degrees: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1,
            epochs: 30,
            batch: 64,
            learning_rate: 3e-3,
            weight_decay: 1e-2,
            shape: Shape::default(),
            rotate_degrees: 15.0,
        }
    }
}

/// Reported after each epoch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub batch: usize,
    pub batches: usize,
    pub loss: f64,
}

/// A trained network with the normalisation it was trained with.
pub struct Trained {
    pub varmap: VarMap,
    pub net: Net,
    pub normalisation: Normalisation,
}

/// Trains on `data`, calling `progress` after every batch.
pub fn train(
    data: &Windows,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress),
) -> Result<Trained> {
    let normalisation = fit_normalisation(&data.windows);
    let mut inputs: Vec<ModelInput> = data
        .windows
        .iter()
        .map(|w| ModelInput::of(w, &normalisation))
        .collect();
    let mut augment_rng = Rng::new(config.seed ^ 0xa09e);
    let (varmap, net) = init(config.shape, config.seed)?;
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: config.weight_decay,
        ..Default::default()
    };
    let mut optimiser = AdamW::new(varmap.all_vars(), params)?;
    let mut rng = Rng::new(config.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    let batches = inputs.len().div_ceil(config.batch);
    let total_steps = (config.epochs * batches) as f64;
    let mut step = 0usize;
    for epoch in 0..config.epochs {
        if config.rotate_degrees > 0.0 && epoch > 0 {
            inputs = data
                .windows
                .iter()
                .map(|w| {
                    ModelInput::of(
                        &rotated(w, config.rotate_degrees, &mut augment_rng),
                        &normalisation,
                    )
                })
                .collect();
        }
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(config.batch).enumerate() {
            // A batch of one breaks batch-norm's variance: the shuffled tail joins the batch before.
            if chunk.len() < 2 {
                continue;
            }
            let lr = config.learning_rate
                * 0.5
                * (1.0 + (std::f64::consts::PI * step as f64 / total_steps).cos());
            optimiser.set_learning_rate(lr);
            let (signal, features) = batch_tensors(chunk.iter().map(|&i| &inputs[i]))?;
            let labels: Vec<u32> = chunk
                .iter()
                .map(|&i| data.labels[i].index() as u32)
                .collect();
            let labels = Tensor::from_vec(labels, chunk.len(), &Device::Cpu)?;
            let logits = net.forward(&signal, &features, Some(&mut rng))?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            optimiser.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            step += 1;
            progress(Progress {
                epoch: epoch + 1,
                epochs: config.epochs,
                batch: b + 1,
                batches,
                loss: loss_sum / (b + 1) as f64,
            });
        }
    }
    Ok(Trained {
        varmap,
        net,
        normalisation,
    })
}

/// `window` turned by a random rotation of at most `degrees` about a random axis (Rodrigues'
/// formula), acc and gyr alike, as if the device sat at another angle.
fn rotated(window: &Window, degrees: f32, rng: &mut Rng) -> Window {
    let axis = loop {
        let v = [
            rng.uniform(-1.0, 1.0),
            rng.uniform(-1.0, 1.0),
            rng.uniform(-1.0, 1.0),
        ];
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if n > 0.1 && n <= 1.0 {
            break [v[0] / n, v[1] / n, v[2] / n];
        }
    };
    let angle = rng.uniform(-degrees, degrees).to_radians();
    let (s, c) = angle.sin_cos();
    let [x, y, z] = axis;
    let t = 1.0 - c;
    let r = [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ];
    let mut out = window.clone();
    for first in [0, 3] {
        for i in 0..WINDOW {
            let v = [0, 1, 2].map(|k| window.values[(first + k) * WINDOW + i]);
            for (row, coefficients) in r.iter().enumerate() {
                out.values[(first + row) * WINDOW + i] =
                    coefficients[0] * v[0] + coefficients[1] * v[1] + coefficients[2] * v[2];
            }
        }
    }
    out
}
