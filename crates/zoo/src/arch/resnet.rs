//! A tiny ResNet image classifier (conv + BatchNorm), in Hugging Face `ResNetForImageClassification`
//! names.
//!
//! `resnet.embedder.embedder.{convolution,normalization}`, then stages of basic blocks
//! `resnet.encoder.stages.S.layers.L.layer.{0,1}.{convolution,normalization}` with a 1 × 1
//! `shortcut` where a block changes width or stride, global average pooling, and
//! `classifier.1.{weight,bias}`. Convolutions have no bias; every normalization is a
//! BatchNorm with `weight`, `bias`, `running_mean`, `running_var` and an i64
//! `num_batches_tracked`, updated in training as PyTorch does (momentum 0.1, unbiased running
//! variance). Initialisation as HF: Kaiming normal (fan-out, ReLU) for convolutions, BatchNorm
//! weight 1 and bias 0, PyTorch's default uniform for the classifier. Differences from
//! ResNet-18, for size: 1 input channel, a 3 × 3 stem without max-pooling, widths 16 and 32.

use candle_core::Tensor;

use crate::data::{ImageDomain, IMAGE};
use crate::nn::{self, Batch, Params, Trainable};
use crate::rng::Stream;
use crate::weights::{Tensor as Stored, Values, Weights};
use crate::Error;

/// Sizes of the model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Channels of each stage (the stem has the first stage's width).
    pub widths: [usize; 2],
    /// Basic blocks per stage.
    pub blocks: usize,
    /// Classes.
    pub classes: usize,
}

/// The zoo's ResNet configuration.
pub const CONFIG: Config = Config {
    widths: [16, 32],
    blocks: 2,
    classes: 10,
};

const MOMENTUM: f32 = 0.1;
const EPS: f64 = 1e-5;

fn conv(w: &mut Weights, s: &mut Stream, name: &str, out: usize, inp: usize, k: usize) {
    // kaiming_normal_(mode="fan_out", nonlinearity="relu"): sd = sqrt(2 / (out · k · k)).
    let sd = (2.0 / (out * k * k) as f32).sqrt();
    w.insert(
        format!("{name}.convolution.weight"),
        Stored::f32(vec![out, inp, k, k], s.normals(out * inp * k * k, sd)),
    );
    w.insert(
        format!("{name}.normalization.weight"),
        Stored::f32(vec![out], vec![1.0; out]),
    );
    w.insert(
        format!("{name}.normalization.bias"),
        Stored::f32(vec![out], vec![0.0; out]),
    );
    w.insert(
        format!("{name}.normalization.running_mean"),
        Stored::f32(vec![out], vec![0.0; out]),
    );
    w.insert(
        format!("{name}.normalization.running_var"),
        Stored::f32(vec![out], vec![1.0; out]),
    );
    w.insert(
        format!("{name}.normalization.num_batches_tracked"),
        Stored {
            shape: vec![],
            values: Values::I64(vec![0]),
        },
    );
}

/// One residual block's place in the network.
struct Block {
    prefix: String,
    input: usize,
    output: usize,
    stride: usize,
}

impl Config {
    fn blocks(&self) -> Vec<Block> {
        let mut v = Vec::new();
        let mut input = self.widths[0];
        for (st, &width) in self.widths.iter().enumerate() {
            for l in 0..self.blocks {
                v.push(Block {
                    prefix: format!("resnet.encoder.stages.{st}.layers.{l}"),
                    input,
                    output: width,
                    stride: if st > 0 && l == 0 { 2 } else { 1 },
                });
                input = width;
            }
        }
        v
    }

    /// Fresh weights, as HF's `ResNetPreTrainedModel` initialises them.
    pub fn init(&self, s: &mut Stream) -> Weights {
        let mut w = Weights::new();
        conv(&mut w, s, "resnet.embedder.embedder", self.widths[0], 1, 3);
        for b in self.blocks() {
            conv(
                &mut w,
                s,
                &format!("{}.layer.0", b.prefix),
                b.output,
                b.input,
                3,
            );
            conv(
                &mut w,
                s,
                &format!("{}.layer.1", b.prefix),
                b.output,
                b.output,
                3,
            );
            if b.input != b.output || b.stride != 1 {
                conv(
                    &mut w,
                    s,
                    &format!("{}.shortcut", b.prefix),
                    b.output,
                    b.input,
                    1,
                );
            }
        }
        let last = self.widths[self.widths.len() - 1];
        let bound = 1.0 / (last as f32).sqrt();
        let n = self.classes * last;
        let uniform = |s: &mut Stream, n: usize| (0..n).map(|_| s.between(-bound, bound)).collect();
        w.insert(
            "classifier.1.weight".into(),
            Stored::f32(vec![self.classes, last], uniform(s, n)),
        );
        w.insert(
            "classifier.1.bias".into(),
            Stored::f32(vec![self.classes], uniform(s, self.classes)),
        );
        w
    }
}

/// A training job for the ResNet on one image domain.
pub struct Job {
    /// The model's sizes.
    pub config: Config,
    /// What it sees.
    pub domain: ImageDomain,
}

impl Job {
    /// Convolution, BatchNorm (batch statistics; running statistics updated in `buffers`),
    /// optional ReLU.
    fn conv_bn(
        &self,
        p: &Params,
        buffers: &mut Weights,
        name: &str,
        x: &Tensor,
        stride: usize,
        relu: bool,
    ) -> candle_core::Result<Tensor> {
        let w = p.get(&format!("{name}.convolution.weight"))?;
        let pad = w.dim(2)? / 2;
        let y = x.conv2d(w, pad, stride, 1, 1)?;
        let (b, c, h, wd) = y.dims4()?;
        let mean = y.mean_keepdim((0, 2, 3))?;
        let centred = y.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
        let norm = centred.broadcast_div(&(var.clone() + EPS)?.sqrt()?)?;
        let gamma = p
            .get(&format!("{name}.normalization.weight"))?
            .reshape((1, c, 1, 1))?;
        let beta = p
            .get(&format!("{name}.normalization.bias"))?
            .reshape((1, c, 1, 1))?;
        let y = norm.broadcast_mul(&gamma)?.broadcast_add(&beta)?;
        // Running statistics, outside the graph (PyTorch: unbiased variance, momentum 0.1).
        let n = (b * h * wd) as f32;
        let mean = mean.flatten_all()?.to_vec1::<f32>()?;
        let var = var.flatten_all()?.to_vec1::<f32>()?;
        let stat = |buffers: &mut Weights, key: &str, batch: &[f32], scale: f32| {
            if let Some(Values::F32(r)) = buffers
                .get_mut(&format!("{name}.normalization.{key}"))
                .map(|t| &mut t.values)
            {
                for (r, v) in r.iter_mut().zip(batch) {
                    *r = (1.0 - MOMENTUM) * *r + MOMENTUM * v * scale;
                }
            }
        };
        stat(buffers, "running_mean", &mean, 1.0);
        stat(buffers, "running_var", &var, n / (n - 1.0).max(1.0));
        if let Some(Values::I64(c)) = buffers
            .get_mut(&format!("{name}.normalization.num_batches_tracked"))
            .map(|t| &mut t.values)
        {
            for c in c.iter_mut() {
                *c += 1;
            }
        }
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

impl Trainable for Job {
    fn trainable(&self, name: &str) -> bool {
        !(name.ends_with(".running_mean")
            || name.ends_with(".running_var")
            || name.ends_with(".num_batches_tracked"))
    }

    fn batch(&self, size: usize, s: &mut Stream) -> Result<Batch, Error> {
        let (mut x, mut y) = (
            Vec::with_capacity(size * IMAGE * IMAGE),
            Vec::with_capacity(size),
        );
        for _ in 0..size {
            let (img, label) = self.domain.sample(s);
            x.extend(img);
            y.push(label);
        }
        Ok(Batch::Labelled {
            inputs: nn::floats(x, &[size, 1, IMAGE, IMAGE])?,
            labels: nn::ids(y, &[size])?,
        })
    }

    fn loss(
        &self,
        p: &Params,
        buffers: &mut Weights,
        batch: &Batch,
    ) -> candle_core::Result<Tensor> {
        let Batch::Labelled { inputs, labels } = batch else {
            return Err(candle_core::Error::Msg(
                "resnet needs labelled batches".into(),
            ));
        };
        let mut x = self.conv_bn(p, buffers, "resnet.embedder.embedder", inputs, 1, true)?;
        for b in self.config.blocks() {
            let h = self.conv_bn(
                p,
                buffers,
                &format!("{}.layer.0", b.prefix),
                &x,
                b.stride,
                true,
            )?;
            let h = self.conv_bn(p, buffers, &format!("{}.layer.1", b.prefix), &h, 1, false)?;
            let shortcut = if b.input != b.output || b.stride != 1 {
                self.conv_bn(
                    p,
                    buffers,
                    &format!("{}.shortcut", b.prefix),
                    &x,
                    b.stride,
                    false,
                )?
            } else {
                x
            };
            x = (h + shortcut)?.relu()?;
        }
        let pooled = x.mean((2, 3))?;
        let logits = nn::linear(
            &pooled,
            p.get("classifier.1.weight")?,
            Some(p.get("classifier.1.bias")?),
        )?;
        nn::cross_entropy(&logits, labels)
    }
}
