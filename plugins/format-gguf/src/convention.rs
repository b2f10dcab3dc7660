//! Undoing what llama.cpp's converter did to tensor values, per architecture.
//!
//! `convert_hf_to_gguf.py` does not only rename tensors. For the families this crate maps it
//! also changes values, and a comparison with the Hugging Face parent must undo that:
//!
//! * **RoPE row permutation** (arch `llama`, which Llama, Mistral and Mixtral checkpoints
//!   convert to): `LlamaModel.modify_tensors` passes `q_proj` and `k_proj` weights and biases
//!   through `LlamaModel.permute(w, n_head, n_head_kv)`, which regroups each head's rows from
//!   Hugging Face's rotate-half order into GGML's interleaved-pair order:
//!   `w.reshape(n_head, 2, rows / n_head / 2, …).swapaxes(1, 2).reshape(w.shape)`, with
//!   `n_head_kv` heads for K. Reading back, row `r = h·d + i·d/2 + j` of the Hugging Face
//!   tensor (head `h` of `d` rows, half `i`, pair `j`) is stored row `h·d + 2j + i`. Because
//!   whole rows move, the inverse is a row remap applied while streaming ([`Remap`]) and works
//!   for quantized tensors, whose rows are whole blocks. The head counts come from
//!   `llama.attention.head_count` / `head_count_kv` (per-layer arrays accepted).
//! * **`+1` in RMSNorm weights** (archs `gemma`, `gemma2`, `gemma3`): Gemma's RMSNorm
//!   multiplies by `1 + w`, llama.cpp's by `w`, so `GemmaModel`, `Gemma2Model` and
//!   `Gemma3Model` (`norm_shift`) add 1 to every tensor whose name ends in `norm.weight`. We
//!   subtract it again. The converter upcasts bf16 to f32 before adding, so for bf16 parents
//!   the round trip is exact whenever `1 + w` is exact in f32 (`|w| ≥ 2^-16` or `w = 0`); for
//!   f16 parents it adds in f16 and the result can differ from `w` by up to 2^-11.
//!
//! Conventions found in the converter but **not** undone, because the data is gone: Gemma 3
//! drops the rows of `embed_tokens` beyond the tokenizer's vocabulary (shapes then differ and
//! the pair is reported as a shape mismatch), RoBERTa-style BERTs drop the first
//! `pad_token_id + 1` position embeddings, and MoE experts are stacked into one tensor per
//! layer (those keep their GGUF names). Qwen2 / Qwen2-VL / Qwen3, Phi-3 and BERT weights are
//! otherwise stored as they are.

use weightkin_core::Transform;

use crate::header::{Header, Value};
use crate::Problem;

/// Architectures whose `q_proj` / `k_proj` rows the converter permutes for RoPE.
pub const ROPE_PERMUTED_ARCHS: &[&str] = &["llama"];

/// Architectures whose converter adds 1 to every `*norm.weight`.
pub const NORM_PLUS_ONE_ARCHS: &[&str] = &["gemma", "gemma2", "gemma3"];

/// How the rows of a presented (Hugging Face) tensor map to stored rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remap {
    /// Row `r` is stored row `r`.
    None,
    /// The inverse of `LlamaModel.permute` with heads of `head_dim` rows of `cols` elements.
    Rope {
        /// Rows per head.
        head_dim: usize,
        /// Elements per row.
        cols: usize,
    },
}

impl Remap {
    /// The RoPE remap of a tensor with `rows` rows and `numel` elements split among `heads`
    /// heads; `None` if the rows cannot be split into heads of paired halves.
    pub fn rope(rows: usize, numel: usize, heads: usize) -> Option<Remap> {
        if heads == 0 || rows == 0 || !rows.is_multiple_of(2 * heads) {
            return None;
        }
        Some(Remap::Rope {
            head_dim: rows / heads,
            cols: numel / rows,
        })
    }

    /// Elements per row (1 for [`Remap::None`], where rows do not matter).
    pub fn cols(self) -> usize {
        match self {
            Remap::None => 1,
            Remap::Rope { cols, .. } => cols.max(1),
        }
    }

    /// The stored row holding presented row `row`.
    pub fn source_row(self, row: usize) -> usize {
        match self {
            Remap::None => row,
            Remap::Rope { head_dim, .. } => {
                let half = head_dim / 2;
                let (head, within) = (row / head_dim, row % head_dim);
                let (i, j) = (within / half, within % half);
                head * head_dim + 2 * j + i
            }
        }
    }
}

/// A head count: one for all layers, or one per layer.
#[derive(Debug, Clone)]
enum Heads {
    Absent,
    All(u64),
    PerLayer(Vec<u64>),
}

/// The conventions that apply to one file.
#[derive(Debug)]
pub struct Conventions {
    arch: String,
    rope: bool,
    norm_plus_one: bool,
    n_head: Heads,
    n_head_kv: Heads,
}

impl Conventions {
    /// The conventions of a file of architecture `arch`, with the hyper-parameters they need
    /// read from `header`.
    pub fn for_file(arch: &str, header: &Header) -> Result<Conventions, Problem> {
        let rope = ROPE_PERMUTED_ARCHS.contains(&arch);
        let (n_head, n_head_kv) = if rope {
            let key = format!("{arch}.attention.head_count");
            let kv_key = format!("{arch}.attention.head_count_kv");
            let n_head = heads(header, &key)?;
            let n_head_kv = match heads(header, &kv_key)? {
                // llama.cpp defaults head_count_kv to head_count (llama-model.cpp).
                Heads::Absent => n_head.clone(),
                h => h,
            };
            (n_head, n_head_kv)
        } else {
            (Heads::Absent, Heads::Absent)
        };
        Ok(Conventions {
            arch: arch.to_owned(),
            rope,
            norm_plus_one: NORM_PLUS_ONE_ARCHS.contains(&arch),
            n_head,
            n_head_kv,
        })
    }

    /// For a tensor presented as `hf_name`, the number of heads its rows were permuted with,
    /// if they were.
    pub fn rope_heads(&self, hf_name: &str) -> Result<Option<usize>, Problem> {
        if !self.rope {
            return Ok(None);
        }
        let Some(rest) = hf_name.strip_prefix("model.layers.") else {
            return Ok(None);
        };
        let Some((layer, tail)) = rest.split_once('.') else {
            return Ok(None);
        };
        let (heads, key) = match tail {
            "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => (&self.n_head, "head_count"),
            "self_attn.k_proj.weight" | "self_attn.k_proj.bias" => {
                (&self.n_head_kv, "head_count_kv")
            }
            _ => return Ok(None),
        };
        let key = format!("{}.attention.{key}", self.arch);
        let bad = || Problem::BadValue {
            key: key.clone(),
            expected: "a positive head count (or one per layer)",
        };
        let n = match heads {
            Heads::Absent => {
                return Err(Problem::MissingKey {
                    key: key.clone(),
                    why: "to undo llama.cpp's RoPE row permutation of attn_q / attn_k",
                })
            }
            Heads::All(n) => *n,
            Heads::PerLayer(v) => {
                let layer: usize = layer.parse().map_err(|_| bad())?;
                *v.get(layer).ok_or_else(bad)?
            }
        };
        match usize::try_from(n) {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad()),
        }
    }

    /// Whether the converter added 1 to the tensor presented as `hf_name`.
    pub fn norm_plus_one(&self, hf_name: &str) -> bool {
        self.norm_plus_one && hf_name.ends_with("norm.weight")
    }
}

/// Reads a head count: an integer, or an array of integers (one per layer).
fn heads(header: &Header, key: &str) -> Result<Heads, Problem> {
    let bad = || Problem::BadValue {
        key: key.to_owned(),
        expected: "an integer or an array of integers",
    };
    match header.get(key) {
        None => Ok(Heads::Absent),
        Some(Value::Array(a)) => {
            let items = a.items.as_ref().ok_or_else(bad)?;
            items
                .iter()
                .map(|v| v.as_u64().ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()
                .map(Heads::PerLayer)
        }
        Some(v) => v.as_u64().map(Heads::All).ok_or_else(bad),
    }
}

/// The transform record of the RoPE un-permutation.
pub fn rope_transform(arch: &str, tensors: usize) -> Transform {
    Transform {
        name: "rope-unpermute".to_owned(),
        detail: format!(
            "Undid the RoPE row permutation convert_hf_to_gguf.py applies to `{arch}` q_proj / \
             k_proj (LlamaModel.permute with n_head / n_head_kv): presented row h·d + i·d/2 + j \
             is read from stored row h·d + 2j + i."
        ),
        tensors,
    }
}

/// The transform record of the Gemma norm shift.
pub fn norm_transform(arch: &str, tensors: usize) -> Transform {
    Transform {
        name: "gemma-norm-minus-one".to_owned(),
        detail: format!(
            "Subtracted the 1 that convert_hf_to_gguf.py adds to every `{arch}` *norm.weight \
             (Gemma's RMSNorm scales by 1 + w, llama.cpp's by w)."
        ),
        tensors,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// `LlamaModel.permute` written out on row indices, as the converter applies it.
    fn permute_rows(rows: usize, heads: usize) -> Vec<usize> {
        // permuted[p] = original[q]: reshape(heads, 2, half).swapaxes(1, 2) flattened.
        let half = rows / heads / 2;
        let mut order = Vec::new();
        for h in 0..heads {
            for j in 0..half {
                for i in 0..2 {
                    order.push(h * 2 * half + i * half + j);
                }
            }
        }
        order
    }

    #[test]
    fn remap_inverts_the_converter_permutation() {
        for (rows, heads) in [(8, 1), (576, 9), (192, 3), (12, 3)] {
            let stored = permute_rows(rows, heads); // stored row p holds HF row stored[p]
            let remap = Remap::rope(rows, rows * 5, heads).unwrap();
            for (p, &hf) in stored.iter().enumerate() {
                assert_eq!(remap.source_row(hf), p, "{rows}/{heads}");
            }
        }
        assert_eq!(Remap::rope(10, 10, 3), None);
        assert_eq!(Remap::rope(12, 12, 0), None);
        assert_eq!(Remap::rope(0, 0, 1), None);
    }
}
