//! The trained network as plain loops, for classifying windows one at a time.
//!
//! The tensor library allocates a buffer per operation and copies data between layouts; for a
//! network this small that overhead was most of the time (`tributary model speed`: 14 k windows/s
//! on one core through candle). Here each layer is a loop over its weights with the output row
//! kept in a stack array, compiled twice — for any x86-64 and for AVX2 + FMA, chosen at run
//! time — so a window costs its multiply-adds and little else. The weights are the candle
//! network's after batch normalisation was folded in; net.rs's tests check both give the same
//! probabilities.

use crate::input::ModelInput;
use crate::motion::WINDOW;
use crate::Result;

/// Floats in each of the two activation buffers (on the stack): channels × samples of the
/// widest layer output; [`Inference::new`] refuses a network that needs more.
const ACTIVATIONS: usize = 64 * WINDOW;
/// Floats of the padded copy of a layer's input: up to 64 channels of 128 samples and 4 zeros.
const PADDED: usize = 64 * (WINDOW + 4);

/// One 1-D convolution with "same" padding, then ReLU.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub inputs: usize,
    pub outputs: usize,
    pub kernel: usize,
    /// (outputs, inputs, kernel), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A dense layer.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    /// (outputs, inputs), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The folded network (its shape is drawn in net.rs).
#[derive(Debug, Clone)]
pub struct Inference {
    pub(crate) conv: [Conv; 3],
    pub(crate) dense: Dense,
    pub(crate) out: Dense,
    /// AVX2 and FMA were detected on this CPU.
    wide: bool,
}

impl Inference {
    pub(crate) fn new(conv: [Conv; 3], dense: Dense, out: Dense) -> Result<Inference> {
        let (mut width, mut len) = (6, WINDOW);
        for c in &conv {
            if c.inputs != width
                || c.weight.len() != c.outputs * c.inputs * c.kernel
                || c.bias.len() != c.outputs
                || c.outputs * len > ACTIVATIONS
                || c.inputs * (len + 2 * (c.kernel / 2)) > PADDED
                || c.kernel > 5
                || len % BLOCK != 0
            {
                return Err(crate::Error::ModelFile(
                    "convolution weights of the wrong size".into(),
                ));
            }
            width = c.outputs;
            len /= 2;
        }
        for d in [&dense, &out] {
            if d.weight.len() != d.outputs * d.inputs || d.bias.len() != d.outputs {
                return Err(crate::Error::ModelFile(
                    "dense weights of the wrong size".into(),
                ));
            }
        }
        #[cfg(target_arch = "x86_64")]
        let wide = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        Ok(Inference {
            conv,
            dense,
            out,
            wide,
        })
    }

    /// Class probabilities of one window.
    pub fn probabilities(&self, input: &ModelInput) -> [f32; 6] {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: `wide` is true only when AVX2 and FMA were detected on this CPU.
            return unsafe { forward_avx2(self, input) };
        }
        forward(self, input)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(net: &Inference, input: &ModelInput) -> [f32; 6] {
    forward(net, input)
}

/// The whole network on one window. `inline(always)`, so each caller gets its own copy
/// compiled for its target features.
#[inline(always)]
fn forward(net: &Inference, input: &ModelInput) -> [f32; 6] {
    let mut a = [0.0f32; ACTIVATIONS];
    let mut b = [0.0f32; ACTIVATIONS];
    let mut len = WINDOW;
    a[..6 * WINDOW].copy_from_slice(&input.signal);
    conv_relu(&net.conv[0], &a, &mut b, len);
    len = max_pool2(&mut b, net.conv[0].outputs, len);
    conv_relu(&net.conv[1], &b, &mut a, len);
    len = max_pool2(&mut a, net.conv[1].outputs, len);
    conv_relu(&net.conv[2], &a, &mut b, len);
    let channels = net.conv[2].outputs;
    let mut joined = Vec::with_capacity(net.dense.inputs);
    joined
        .extend((0..channels).map(|c| b[c * len..(c + 1) * len].iter().sum::<f32>() / len as f32));
    joined.extend((0..channels).map(|c| {
        b[c * len..(c + 1) * len]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }));
    joined.extend_from_slice(&input.features);
    let mut hidden = dense(&net.dense, &joined);
    for h in &mut hidden {
        *h = h.max(0.0);
    }
    let logits = dense(&net.out, &hidden);
    softmax(&logits)
}

/// Output samples computed together, their sums kept in registers (four AVX2 registers) while
/// every input channel and tap is added: each multiply-add then costs one load, where adding
/// into the output row in memory cost a load and a store more.
const BLOCK: usize = 32;

/// `output[o][t] = relu(bias[o] + Σ_i Σ_k w[o][i][k] · input[i][t + k − pad])`, channel-major rows
/// of `len` samples (a multiple of [`BLOCK`]), zero outside the row.
#[inline(always)]
fn conv_relu(conv: &Conv, input: &[f32], output: &mut [f32], len: usize) {
    let pad = conv.kernel / 2;
    // The input rows with `pad` zeros at both ends, so no tap needs a bounds case.
    let stride = len + 2 * pad;
    let mut padded = [0.0f32; PADDED];
    for i in 0..conv.inputs {
        padded[i * stride + pad..i * stride + pad + len]
            .copy_from_slice(&input[i * len..(i + 1) * len]);
    }
    let taps = conv.inputs * conv.kernel;
    for o in 0..conv.outputs {
        let weights = &conv.weight[o * taps..(o + 1) * taps];
        for start in (0..len).step_by(BLOCK) {
            let mut sums = [conv.bias[o]; BLOCK];
            for i in 0..conv.inputs {
                let x = &padded[i * stride + start..i * stride + start + BLOCK + conv.kernel - 1];
                for k in 0..conv.kernel {
                    let w = weights[i * conv.kernel + k];
                    let x: &[f32; BLOCK] = x[k..k + BLOCK].try_into().expect("a block of samples");
                    for j in 0..BLOCK {
                        sums[j] += w * x[j];
                    }
                }
            }
            for (y, s) in output[o * len + start..o * len + start + BLOCK]
                .iter_mut()
                .zip(sums)
            {
                *y = s.max(0.0);
            }
        }
    }
}

/// Max of each pair of samples, in place; returns the new row length.
#[inline(always)]
fn max_pool2(rows: &mut [f32], channels: usize, len: usize) -> usize {
    let half = len / 2;
    for c in 0..channels {
        for t in 0..half {
            rows[c * half + t] = rows[c * len + 2 * t].max(rows[c * len + 2 * t + 1]);
        }
    }
    half
}

#[inline(always)]
fn dense(layer: &Dense, x: &[f32]) -> Vec<f32> {
    (0..layer.outputs)
        .map(|o| {
            let w = &layer.weight[o * layer.inputs..(o + 1) * layer.inputs];
            layer.bias[o] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
        })
        .collect()
}

fn softmax(logits: &[f32]) -> [f32; 6] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p = [0.0f32; 6];
    let mut sum = 0.0;
    for (p, l) in p.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    p.map(|v| v / sum)
}
