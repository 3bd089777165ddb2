//! The network: three 1-D convolutions over the window, pooled, joined with the summary
//! features, then two dense layers.
//!
//! ```text
//! signal (B, 6, 128) ─ conv 5 ─ BN ─ ReLU ─ max-pool 2 ─ conv 5 ─ BN ─ ReLU ─ max-pool 2
//!                    ─ conv 3 ─ BN ─ ReLU ─ [global mean ‖ global max] ─┐
//! features (B, F) ───────────────────────────────────────────────────────┴─ dense ─ ReLU ─ dropout ─ dense (6)
//! ```
//!
//! Weight names (`conv1.weight`, `bn1.running_mean`, …) are the tensor names in the model file.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{BatchNorm, Conv1d, Conv1dConfig, Linear, VarBuilder, VarMap};

use crate::infer::{Conv, Dense, Inference};
use crate::input::FEATURES;
use crate::motion::{Activity, WINDOW};
use crate::rng::Rng;
use crate::Result;

/// The layer widths; part of the model file's input layout check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub conv1: usize,
    pub conv2: usize,
    pub conv3: usize,
    pub dense: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            conv1: 16,
            conv2: 32,
            conv3: 48,
            dense: 64,
        }
    }
}

/// Probability that a dense unit is dropped while training.
const DROPOUT: f32 = 0.3;

#[derive(Debug)]
pub struct Net {
    conv1: Conv1d,
    /// `None` once folded into the convolution before it ([`Net::fold_batch_norm`]).
    bn1: Option<BatchNorm>,
    conv2: Conv1d,
    bn2: Option<BatchNorm>,
    conv3: Conv1d,
    bn3: Option<BatchNorm>,
    dense: Linear,
    out: Linear,
    shape: Shape,
}

impl Net {
    /// Builds the layers on `vb` (fresh variables from a `VarMap`, or a model file's tensors).
    pub fn new(shape: Shape, vb: VarBuilder<'_>) -> Result<Net> {
        let conv = |cin, cout, k, name: &str| {
            candle_nn::conv1d(
                cin,
                cout,
                k,
                Conv1dConfig {
                    padding: k / 2,
                    ..Default::default()
                },
                vb.pp(name),
            )
        };
        let bn = |n, name: &str| candle_nn::batch_norm(n, 1e-5, vb.pp(name)).map(Some);
        Ok(Net {
            conv1: conv(6, shape.conv1, 5, "conv1")?,
            bn1: bn(shape.conv1, "bn1")?,
            conv2: conv(shape.conv1, shape.conv2, 5, "conv2")?,
            bn2: bn(shape.conv2, "bn2")?,
            conv3: conv(shape.conv2, shape.conv3, 3, "conv3")?,
            bn3: bn(shape.conv3, "bn3")?,
            dense: candle_nn::linear(2 * shape.conv3 + FEATURES, shape.dense, vb.pp("dense"))?,
            out: candle_nn::linear(shape.dense, Activity::ALL.len(), vb.pp("out"))?,
            shape,
        })
    }

    /// Logits (B, 6) for a batch. `dropout` is given while training: the seeded source of the
    /// dropout masks; `None` evaluates.
    pub fn forward(
        &self,
        signal: &Tensor,
        features: &Tensor,
        dropout: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let train = dropout.is_some();
        let conv = |conv: &Conv1d, bn: &Option<BatchNorm>, x: &Tensor| -> Result<Tensor> {
            let x = conv.forward(x)?;
            let x = match bn {
                Some(bn) => bn.forward_t(&x, train)?,
                None => x,
            };
            Ok(x.relu()?)
        };
        let x = max_pool2(&conv(&self.conv1, &self.bn1, signal)?)?;
        let x = max_pool2(&conv(&self.conv2, &self.bn2, &x)?)?;
        let x = conv(&self.conv3, &self.bn3, &x)?;
        let pooled = Tensor::cat(&[x.mean(2)?, x.max(2)?], 1)?;
        let x = Tensor::cat(&[pooled, features.clone()], 1)?;
        let mut x = self.dense.forward(&x)?.relu()?;
        if let Some(rng) = dropout {
            let keep = 1.0 / (1.0 - DROPOUT);
            let mask: Vec<f32> = (0..x.elem_count())
                .map(|_| if rng.unit() < DROPOUT { 0.0 } else { keep })
                .collect();
            let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
            x = (x * mask)?;
        }
        Ok(self.out.forward(&x)?)
    }

    /// The same network for inference, each batch normalisation folded into the convolution
    /// before it (its running statistics are constants then): three passes fewer per layer.
    pub fn fold_batch_norm(self) -> Result<Net> {
        Ok(Net {
            conv1: fold(self.conv1, self.bn1)?,
            bn1: None,
            conv2: fold(self.conv2, self.bn2)?,
            bn2: None,
            conv3: fold(self.conv3, self.bn3)?,
            bn3: None,
            ..self
        })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The network as plain loops ([`crate::infer`]); batch normalisation must be folded first.
    pub fn to_inference(&self) -> Result<Inference> {
        if self.bn1.is_some() || self.bn2.is_some() || self.bn3.is_some() {
            return Err(crate::Error::ModelFile(
                "fold the batch normalisation first".into(),
            ));
        }
        let values = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let bias = |b: Option<&Tensor>, outputs: usize| match b {
            Some(b) => values(b),
            None => Ok(vec![0.0; outputs]),
        };
        let conv = |c: &Conv1d| -> Result<Conv> {
            let (outputs, inputs, kernel) = c.weight().dims3()?;
            let bias = bias(c.bias(), outputs)?;
            Ok(Conv {
                inputs,
                outputs,
                kernel,
                weight: values(c.weight())?,
                bias,
            })
        };
        let dense = |l: &Linear| -> Result<Dense> {
            let (outputs, inputs) = l.weight().dims2()?;
            let bias = bias(l.bias(), outputs)?;
            Ok(Dense {
                inputs,
                outputs,
                weight: values(l.weight())?,
                bias,
            })
        };
        Inference::new(
            [conv(&self.conv1)?, conv(&self.conv2)?, conv(&self.conv3)?],
            dense(&self.dense)?,
            dense(&self.out)?,
        )
    }
}

/// `bn(conv(x))` as one convolution: scale = γ/√(var+ε) per output channel, weights × scale,
/// bias (b − mean) × scale + β.
fn fold(conv: Conv1d, bn: Option<BatchNorm>) -> Result<Conv1d> {
    let Some(bn) = bn else { return Ok(conv) };
    let (gamma, beta) = match bn.weight_and_bias() {
        Some((w, b)) => (w.clone(), b.clone()),
        None => {
            let n = bn.running_mean().dim(0)?;
            (
                Tensor::ones(n, DType::F32, &Device::Cpu)?,
                Tensor::zeros(n, DType::F32, &Device::Cpu)?,
            )
        }
    };
    let scale = (gamma / (bn.running_var() + bn.eps())?.sqrt()?)?;
    let weight = conv.weight().broadcast_mul(&scale.reshape(((), 1, 1))?)?;
    let bias = match conv.bias() {
        Some(b) => b.clone(),
        None => Tensor::zeros(scale.dim(0)?, DType::F32, &Device::Cpu)?,
    };
    let bias = ((bias - bn.running_mean())? * &scale)?.add(&beta)?;
    Ok(Conv1d::new(weight, Some(bias), *conv.config()))
}

/// Max-pooling by 2 along time.
fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, l) = x.dims3()?;
    Ok(x.reshape((b, c, l / 2, 2))?.max(3)?)
}

/// Fresh variables for `shape`, initialised from `seed` (PyTorch's default scheme: uniform in
/// ±1/√fan_in for weights and biases; batch-norm scale 1, shift 0, running mean 0, variance 1).
pub fn init(shape: Shape, seed: u64) -> Result<(VarMap, Net)> {
    let varmap = VarMap::new();
    let net = Net::new(
        shape,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut rng = Rng::new(seed);
    let vars = varmap
        .data()
        .lock()
        .expect("the var map lock is not poisoned");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        if name.starts_with("bn") {
            continue;
        }
        let var = &vars[name];
        let layer = name.split('.').next().unwrap_or_default();
        let fan_in = match layer {
            "conv1" => 6 * 5,
            "conv2" => shape.conv1 * 5,
            "conv3" => shape.conv2 * 3,
            "dense" => 2 * shape.conv3 + FEATURES,
            _ => shape.dense,
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.uniform(-bound, bound))
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu)?)?;
    }
    drop(vars);
    Ok((varmap, net))
}

/// The input tensors of a batch of model inputs.
pub fn batch_tensors<'a>(
    inputs: impl ExactSizeIterator<Item = &'a crate::input::ModelInput>,
) -> Result<(Tensor, Tensor)> {
    let n = inputs.len();
    let mut signal = Vec::with_capacity(n * 6 * WINDOW);
    let mut features = Vec::with_capacity(n * FEATURES);
    for input in inputs {
        signal.extend_from_slice(&input.signal);
        features.extend_from_slice(&input.features);
    }
    Ok((
        Tensor::from_vec(signal, (n, 6, WINDOW), &Device::Cpu)?,
        Tensor::from_vec(features, (n, FEATURES), &Device::Cpu)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::{init, Shape};
    use crate::input::{ModelInput, FEATURES};
    use crate::motion::WINDOW;
    use crate::rng::Rng;

    #[test]
    fn the_loops_give_the_tensor_librarys_probabilities() -> crate::Result<()> {
        let (_vars, net) = init(Shape::default(), 3)?;
        // Train-mode batch statistics are not used: evaluation reads the running ones.
        let net = net.fold_batch_norm()?;
        let fast = net.to_inference()?;
        let mut rng = Rng::new(11);
        let inputs: Vec<ModelInput> = (0..8)
            .map(|_| ModelInput {
                signal: (0..6 * WINDOW).map(|_| rng.uniform(-2.0, 2.0)).collect(),
                features: (0..FEATURES).map(|_| rng.uniform(-2.0, 2.0)).collect(),
            })
            .collect();
        let (signal, features) = super::batch_tensors(inputs.iter())?;
        let logits = net.forward(&signal, &features, None)?;
        let expected = candle_nn::ops::softmax(&logits, 1)?.to_vec2::<f32>()?;
        for (input, want) in inputs.iter().zip(expected) {
            let got = fast.probabilities(input);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
        Ok(())
    }
}
