//! Training with candle on the CPU: parameters, the differentiable building blocks the three
//! architectures share, and the training loop.
//!
//! Only composed candle operations are used (matmul, broadcasting arithmetic, `exp`, `sqrt`,
//! reductions), never candle-nn's fused CPU kernels (`rms_norm`, `softmax_last_dim`,
//! `rotary_emb`), because the fused kernels have no backward pass. Each model trains on one
//! thread (see `main.rs`, which pins candle's matmul to one thread): the zoo runs models in
//! parallel instead, which is faster for models this small and keeps every reduction's order
//! — and therefore every weight — independent of the machine's core count.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::rng::Stream;
use crate::weights::{Tensor as Stored, Values, Weights};
use crate::Error;

/// The trainable tensors of a model, by name.
pub struct Params(BTreeMap<String, Var>);

impl Params {
    /// Every float tensor of `w` as a parameter (integer tensors are left out).
    pub fn from_weights(w: &Weights) -> candle_core::Result<Params> {
        let mut vars = BTreeMap::new();
        for (name, t) in w {
            if let Values::F32(v) = &t.values {
                let tensor = Tensor::from_slice(v, t.shape.as_slice(), &Device::Cpu)?;
                vars.insert(name.clone(), Var::from_tensor(&tensor)?);
            }
        }
        Ok(Params(vars))
    }

    /// The tensor `name` (an error names it if the model has none).
    pub fn get(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.0
            .get(name)
            .map(Var::as_tensor)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            })
    }
}

/// One training batch.
pub enum Batch {
    /// Token windows: `inputs` (batch, time) u32 and next-token `targets` (batch · time) u32.
    Tokens {
        /// Input token ids.
        inputs: Tensor,
        /// Target token ids, flattened.
        targets: Tensor,
    },
    /// Labelled examples: `inputs` (batch, …) f32, `labels` (batch) u32.
    Labelled {
        /// Images (batch, 1, H, W) or feature vectors (batch, features).
        inputs: Tensor,
        /// Class labels.
        labels: Tensor,
    },
}

/// How long and how fast a training run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate (AdamW), reached after a linear warm-up over the first 10 % of
    /// steps, then decayed on a cosine to 10 % of the peak.
    pub lr: f64,
    /// Examples per batch.
    pub batch: usize,
}

impl Schedule {
    fn lr_at(&self, step: usize) -> f64 {
        let warmup = (self.steps / 10).max(1);
        if step < warmup {
            self.lr * (step + 1) as f64 / warmup as f64
        } else {
            let t = (step - warmup) as f64 / (self.steps - warmup).max(1) as f64;
            self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
        }
    }
}

/// What an architecture provides to the training loop.
pub trait Trainable {
    /// Whether tensor `name` is trained by the optimizer (BatchNorm statistics are not).
    fn trainable(&self, name: &str) -> bool;
    /// A batch of `size` examples drawn from `s`.
    fn batch(&self, size: usize, s: &mut Stream) -> Result<Batch, Error>;
    /// The mean loss of `batch`; in training mode, non-trainable buffers in `buffers`
    /// (BatchNorm running statistics) are updated.
    fn loss(&self, p: &Params, buffers: &mut Weights, batch: &Batch)
        -> candle_core::Result<Tensor>;
}

/// The result of a training run.
pub struct Trained {
    /// All tensors, trained and buffers.
    pub weights: Weights,
    /// Mean training loss over the first 10 % of steps.
    pub loss_start: f64,
    /// Mean training loss over the last 10 % of steps.
    pub loss_end: f64,
}

/// Trains `weights` with AdamW (weight decay 0.01) on batches from `net`.
pub fn train(
    net: &dyn Trainable,
    weights: Weights,
    schedule: &Schedule,
    s: &mut Stream,
) -> Result<Trained, Error> {
    let dev = Device::Cpu;
    let mut vars = BTreeMap::new();
    let mut buffers = Weights::new();
    for (name, t) in weights {
        match (&t.values, net.trainable(&name)) {
            (Values::F32(v), true) => {
                let tensor = Tensor::from_slice(v, t.shape.as_slice(), &dev)?;
                vars.insert(name, Var::from_tensor(&tensor)?);
            }
            _ => {
                buffers.insert(name, t);
            }
        }
    }
    let params = Params(vars);
    let mut opt = AdamW::new(
        params.0.values().cloned().collect(),
        ParamsAdamW {
            lr: schedule.lr,
            weight_decay: 0.01,
            ..ParamsAdamW::default()
        },
    )?;
    let window = (schedule.steps / 10).max(1);
    let (mut first, mut last) = (0f64, 0f64);
    for step in 0..schedule.steps {
        opt.set_learning_rate(schedule.lr_at(step));
        let batch = net.batch(schedule.batch, s)?;
        let loss = net.loss(&params, &mut buffers, &batch)?;
        opt.backward_step(&loss)?;
        let l = f64::from(loss.to_scalar::<f32>()?);
        if step < window {
            first += l;
        }
        if step + window >= schedule.steps {
            last += l;
        }
    }
    let mut out = buffers;
    for (name, var) in params.0 {
        let t = var.as_tensor();
        out.insert(
            name,
            Stored::f32(t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?),
        );
    }
    Ok(Trained {
        weights: out,
        loss_start: first / window as f64,
        loss_end: last / window as f64,
    })
}

/// `x · wᵀ (+ b)` on the last dimension, for `x` of any rank ≥ 2.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = dims.last().copied().unwrap_or(0);
    let rows: usize = dims.iter().product::<usize>() / inner.max(1);
    let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    if let Some(l) = out.last_mut() {
        *l = w.dim(0)?;
    }
    y.reshape(out)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w` (Llama's, eps 1e-6).
pub fn rms_norm(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + 1e-6)?.sqrt()?)?.broadcast_mul(w)
}

/// LayerNorm over the last dimension (eps 1e-5).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

/// Softmax over the last dimension.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// Mean cross-entropy of `logits` (rows, classes) against `labels` (rows) u32.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// A u32 tensor from ids.
pub fn ids(v: Vec<u32>, shape: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// An f32 tensor from values.
pub fn floats(v: Vec<f32>, shape: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::arch::{Architecture, Dataset};

    /// Two runs of the same training give the same bits (the zoo's determinism rests on it).
    #[test]
    fn training_is_reproducible() {
        for a in Architecture::ALL {
            let schedule = Schedule {
                steps: 3,
                lr: 1e-3,
                batch: 4,
            };
            let run = || {
                let job = a.job(Dataset::Base).unwrap();
                let init = a.init(&mut Stream::new(&["test", a.name()]));
                train(job.as_ref(), init, &schedule, &mut Stream::new(&["data"])).unwrap()
            };
            let (x, y) = (run(), run());
            assert_eq!(x.weights, y.weights, "{}", a.name());
            assert!(x.loss_start.is_finite());
        }
    }
}
