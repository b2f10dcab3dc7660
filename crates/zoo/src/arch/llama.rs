//! A tiny Llama-family causal language model, character level.
//!
//! Hugging Face `LlamaForCausalLM` names and shapes: `model.embed_tokens.weight`,
//! `model.layers.N.{input_layernorm,post_attention_layernorm}.weight` (RMSNorm),
//! `model.layers.N.self_attn.{q,k,v,o}_proj.weight` (no biases; grouped-query attention with
//! fewer key/value heads than query heads; RoPE, half-split rotation as in HF),
//! `model.layers.N.mlp.{gate,up,down}_proj.weight` (SwiGLU), `model.norm.weight` and an
//! untied `lm_head.weight`. Initialisation as `LlamaPreTrainedModel`: N(0, 0.02) for every
//! matrix, 1 for norm weights.

use candle_core::{Tensor, D};

use crate::data::TextDomain;
#[cfg(test)]
use crate::data::VOCAB;
use crate::nn::{self, Batch, Params, Trainable};
use crate::rng::Stream;
use crate::weights::{Tensor as Stored, Weights};
use crate::Error;

/// Sizes of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Vocabulary (characters).
    pub vocab: usize,
    /// Residual width.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Gated-MLP width.
    pub intermediate: usize,
    /// Training context length.
    pub context: usize,
}

/// The zoo's Llama configuration.
pub const CONFIG: Config = Config {
    vocab: 80,
    hidden: 64,
    layers: 4,
    heads: 4,
    kv_heads: 2,
    intermediate: 176,
    context: 48,
};

const ROPE_THETA: f64 = 10_000.0;

impl Config {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Fresh weights, as `LlamaPreTrainedModel` initialises them.
    pub fn init(&self, s: &mut Stream) -> Weights {
        let mut w = Weights::new();
        let (h, i, kv) = (
            self.hidden,
            self.intermediate,
            self.kv_heads * self.head_dim(),
        );
        let mut matrix = |w: &mut Weights, name: String, rows: usize, cols: usize| {
            w.insert(
                name,
                Stored::f32(vec![rows, cols], s.normals(rows * cols, 0.02)),
            );
        };
        matrix(&mut w, "model.embed_tokens.weight".into(), self.vocab, h);
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            matrix(&mut w, format!("{p}.self_attn.q_proj.weight"), h, h);
            matrix(&mut w, format!("{p}.self_attn.k_proj.weight"), kv, h);
            matrix(&mut w, format!("{p}.self_attn.v_proj.weight"), kv, h);
            matrix(&mut w, format!("{p}.self_attn.o_proj.weight"), h, h);
            matrix(&mut w, format!("{p}.mlp.gate_proj.weight"), i, h);
            matrix(&mut w, format!("{p}.mlp.up_proj.weight"), i, h);
            matrix(&mut w, format!("{p}.mlp.down_proj.weight"), h, i);
        }
        matrix(&mut w, "lm_head.weight".into(), self.vocab, h);
        for l in 0..self.layers {
            for n in ["input_layernorm", "post_attention_layernorm"] {
                w.insert(
                    format!("model.layers.{l}.{n}.weight"),
                    Stored::f32(vec![h], vec![1.0; h]),
                );
            }
        }
        w.insert(
            "model.norm.weight".into(),
            Stored::f32(vec![h], vec![1.0; h]),
        );
        w
    }

    /// cos and sin tables, (context, head_dim), each half repeated (HF `rotate_half` layout).
    fn rope_tables(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let (t, hd) = (self.context, self.head_dim());
        let (mut cos, mut sin) = (Vec::with_capacity(t * hd), Vec::with_capacity(t * hd));
        for pos in 0..t {
            for j in 0..hd {
                let k = (j % (hd / 2)) as f64;
                let angle = pos as f64 / ROPE_THETA.powf(2.0 * k / hd as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok((nn::floats(cos, &[t, hd])?, nn::floats(sin, &[t, hd])?))
    }
}

/// A training job for the Llama model on one text domain.
pub struct Job {
    /// The model's sizes.
    pub config: Config,
    /// What it reads.
    pub domain: TextDomain,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}

impl Job {
    /// The job; precomputes RoPE tables and the causal mask.
    pub fn new(config: Config, domain: TextDomain) -> Result<Job, Error> {
        let (cos, sin) = config.rope_tables()?;
        let t = config.context;
        let mask: Vec<f32> = (0..t * t)
            .map(|k| if k % t > k / t { -1e9 } else { 0.0 })
            .collect();
        Ok(Job {
            config,
            domain,
            cos,
            sin,
            mask: nn::floats(mask, &[t, t])?,
        })
    }

    fn rope(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let half = self.config.head_dim() / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?
    }

    fn attention(&self, p: &Params, l: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (hd, nh, nkv) = (c.head_dim(), c.heads, c.kv_heads);
        let pre = format!("model.layers.{l}.self_attn");
        let heads = |name: &str, n: usize| -> candle_core::Result<Tensor> {
            nn::linear(x, p.get(&format!("{pre}.{name}.weight"))?, None)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)
        };
        let q = self.rope(&heads("q_proj", nh)?)?;
        let k = self.rope(&heads("k_proj", nkv)?)?;
        let v = heads("v_proj", nkv)?;
        // Grouped-query attention: each key/value head serves nh / nkv query heads.
        let repeat = |x: Tensor| -> candle_core::Result<Tensor> {
            x.unsqueeze(2)?
                .expand((b, nkv, nh / nkv, t, hd))?
                .reshape((b, nh, t, hd))
        };
        let (k, v) = (repeat(k)?, repeat(v)?);
        let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? / (hd as f64).sqrt())?
            .broadcast_add(&self.mask)?;
        let out = nn::softmax(&scores)?
            .matmul(&v.contiguous()?)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        nn::linear(&out, p.get(&format!("{pre}.o_proj.weight"))?, None)
    }

    fn mlp(&self, p: &Params, l: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = |n: &str| p.get(&format!("model.layers.{l}.mlp.{n}.weight"));
        let gate = nn::linear(x, w("gate_proj")?, None)?.silu()?;
        let up = nn::linear(x, w("up_proj")?, None)?;
        nn::linear(&(gate * up)?, w("down_proj")?, None)
    }
}

impl Trainable for Job {
    fn trainable(&self, _name: &str) -> bool {
        true
    }

    fn batch(&self, size: usize, s: &mut Stream) -> Result<Batch, Error> {
        let t = self.config.context;
        let (mut inputs, mut targets) =
            (Vec::with_capacity(size * t), Vec::with_capacity(size * t));
        for _ in 0..size {
            // A window starting at a random point of freshly generated text.
            let skip = s.below(64);
            let tokens = self.domain.tokens(s, skip + t + 1);
            let w = &tokens[skip..];
            inputs.extend_from_slice(&w[..t]);
            targets.extend_from_slice(&w[1..]);
        }
        Ok(Batch::Tokens {
            inputs: nn::ids(inputs, &[size, t])?,
            targets: nn::ids(targets, &[size * t])?,
        })
    }

    fn loss(
        &self,
        p: &Params,
        _buffers: &mut Weights,
        batch: &Batch,
    ) -> candle_core::Result<Tensor> {
        let Batch::Tokens { inputs, targets } = batch else {
            return Err(candle_core::Error::Msg("llama needs token batches".into()));
        };
        nn::cross_entropy(&self.forward(p, inputs)?, targets)
    }
}

impl Job {
    /// The next-token logits of `tokens` (one sequence of exactly `context` tokens, each
    /// below `vocab`) under the weights `w`: `context · vocab` values, row-major by position.
    pub fn logits(&self, w: &Weights, tokens: &[u32]) -> Result<Vec<f32>, Error> {
        let p = Params::from_weights(w)?;
        let inputs = nn::ids(tokens.to_vec(), &[1, tokens.len()])?;
        Ok(self.forward(&p, &inputs)?.flatten_all()?.to_vec1()?)
    }

    /// Logits (batch · time, vocab) of token windows `inputs` (batch, time).
    fn forward(&self, p: &Params, inputs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = inputs.dims2()?;
        let c = &self.config;
        let mut x = p
            .get("model.embed_tokens.weight")?
            .index_select(&inputs.flatten_all()?, 0)?
            .reshape((b, t, c.hidden))?;
        for l in 0..c.layers {
            let n = |name: &str| p.get(&format!("model.layers.{l}.{name}.weight"));
            let h = nn::rms_norm(&x, n("input_layernorm")?)?;
            x = (x + self.attention(p, l, &h)?)?;
            let h = nn::rms_norm(&x, n("post_attention_layernorm")?)?;
            x = (x + self.mlp(p, l, &h)?)?;
        }
        let x = nn::rms_norm(&x, p.get("model.norm.weight")?)?;
        nn::linear(&x, p.get("lm_head.weight")?, None)?.reshape((b * t, c.vocab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_matches_the_config() {
        assert_eq!(VOCAB.chars().count(), CONFIG.vocab);
    }
}
