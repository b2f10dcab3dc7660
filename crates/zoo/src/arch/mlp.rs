//! A residual MLP classifier for the tabular task.
//!
//! No Hugging Face family is a plain MLP, so the names follow the common PyTorch pattern of a
//! pre-norm residual stack: `model.embed.{weight,bias}` (input projection),
//! `model.layers.N.norm.{weight,bias}` (LayerNorm), `model.layers.N.fc.{weight,bias}`
//! (hidden × hidden, GELU), `model.norm.{weight,bias}` and `classifier.{weight,bias}`.
//! Initialisation as PyTorch's defaults: U(±1/√fan_in) for linear weights and biases,
//! LayerNorm weight 1 and bias 0.

use candle_core::Tensor;

use crate::data::{MixtureDomain, FEATURES, MIXTURE_CLASSES};
use crate::nn::{self, Batch, Params, Trainable};
use crate::rng::Stream;
use crate::weights::{Tensor as Stored, Weights};
use crate::Error;

/// Sizes of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Input features.
    pub features: usize,
    /// Residual width.
    pub hidden: usize,
    /// Residual layers.
    pub layers: usize,
    /// Classes.
    pub classes: usize,
}

/// The zoo's MLP configuration.
pub const CONFIG: Config = Config {
    features: FEATURES,
    hidden: 128,
    layers: 4,
    classes: MIXTURE_CLASSES,
};

fn linear(w: &mut Weights, s: &mut Stream, name: &str, out: usize, inp: usize) {
    let bound = 1.0 / (inp as f32).sqrt();
    let weight = (0..out * inp).map(|_| s.between(-bound, bound)).collect();
    let bias = (0..out).map(|_| s.between(-bound, bound)).collect();
    w.insert(
        format!("{name}.weight"),
        Stored::f32(vec![out, inp], weight),
    );
    w.insert(format!("{name}.bias"), Stored::f32(vec![out], bias));
}

fn norm(w: &mut Weights, name: &str, n: usize) {
    w.insert(format!("{name}.weight"), Stored::f32(vec![n], vec![1.0; n]));
    w.insert(format!("{name}.bias"), Stored::f32(vec![n], vec![0.0; n]));
}

impl Config {
    /// Fresh weights, as PyTorch initialises `nn.Linear` and `nn.LayerNorm`.
    pub fn init(&self, s: &mut Stream) -> Weights {
        let mut w = Weights::new();
        linear(&mut w, s, "model.embed", self.hidden, self.features);
        for l in 0..self.layers {
            norm(&mut w, &format!("model.layers.{l}.norm"), self.hidden);
            linear(
                &mut w,
                s,
                &format!("model.layers.{l}.fc"),
                self.hidden,
                self.hidden,
            );
        }
        norm(&mut w, "model.norm", self.hidden);
        linear(&mut w, s, "classifier", self.classes, self.hidden);
        w
    }
}

/// A training job for the MLP on one tabular task.
pub struct Job {
    /// The model's sizes.
    pub config: Config,
    /// The task.
    pub domain: MixtureDomain,
    centres: Vec<Vec<f32>>,
}

impl Job {
    /// The job (draws the task's cluster centres).
    pub fn new(config: Config, domain: MixtureDomain) -> Job {
        Job {
            config,
            domain,
            centres: domain.centres(),
        }
    }
}

impl Trainable for Job {
    fn trainable(&self, _name: &str) -> bool {
        true
    }

    fn batch(&self, size: usize, s: &mut Stream) -> Result<Batch, Error> {
        let (mut x, mut y) = (
            Vec::with_capacity(size * FEATURES),
            Vec::with_capacity(size),
        );
        for _ in 0..size {
            let (v, label) = MixtureDomain::sample(&self.centres, s);
            x.extend(v);
            y.push(label);
        }
        Ok(Batch::Labelled {
            inputs: nn::floats(x, &[size, FEATURES])?,
            labels: nn::ids(y, &[size])?,
        })
    }

    fn loss(
        &self,
        p: &Params,
        _buffers: &mut Weights,
        batch: &Batch,
    ) -> candle_core::Result<Tensor> {
        let Batch::Labelled { inputs, labels } = batch else {
            return Err(candle_core::Error::Msg("mlp needs labelled batches".into()));
        };
        let lin = |x: &Tensor, name: &str| -> candle_core::Result<Tensor> {
            nn::linear(
                x,
                p.get(&format!("{name}.weight"))?,
                Some(p.get(&format!("{name}.bias"))?),
            )
        };
        let ln = |x: &Tensor, name: &str| -> candle_core::Result<Tensor> {
            nn::layer_norm(
                x,
                p.get(&format!("{name}.weight"))?,
                p.get(&format!("{name}.bias"))?,
            )
        };
        let mut x = lin(inputs, "model.embed")?;
        for l in 0..self.config.layers {
            let h = ln(&x, &format!("model.layers.{l}.norm"))?;
            x = (x + lin(&h, &format!("model.layers.{l}.fc"))?.gelu()?)?;
        }
        let logits = lin(&ln(&x, "model.norm")?, "classifier")?;
        nn::cross_entropy(&logits, labels)
    }
}
