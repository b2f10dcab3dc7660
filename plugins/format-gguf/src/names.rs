//! GGUF tensor names → Hugging Face names, per architecture.
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`) renames every tensor through gguf-py's
//! `TensorNameMap` (`gguf/tensor_mapping.py`): many Hugging Face spellings map to one GGUF
//! name. Going back we must choose one spelling per architecture: the one the architecture's
//! reference `transformers` checkpoints use on disk (`model.layers.N.self_attn.q_proj.weight`
//! for llama, `encoder.layer.N.attention.self.query.weight` for a bare BERT). The golden test
//! `tests/gguf/names.rs` checks every pair against gguf-py's own mapping
//! (`tests/golden/names.tsv`, made by `tests/golden/gen.py`), so a GGUF name maps back to a
//! Hugging Face name that gguf-py maps forward to it.
//!
//! Names a map does not cover (llama.cpp-only tensors such as `rope_freqs.weight`, stacked
//! MoE experts, vision projectors) keep their GGUF name: they then appear as unpaired in a
//! comparison, with that name, rather than vanishing.

/// A Hugging Face name family: where layers live and what each GGUF tensor is called.
#[derive(Debug)]
pub struct Family {
    /// GGUF architectures (`general.architecture`) this family serves.
    pub archs: &'static [&'static str],
    /// Prefix of a layer's tensors, before the layer index (`model.layers.`).
    pub layer_prefix: &'static str,
    /// Tensors outside layers: GGUF base name → Hugging Face base name.
    pub globals: &'static [(&'static str, &'static str)],
    /// Tensors inside layer `N`: GGUF base name (after `blk.N.`) → Hugging Face base name
    /// (after the layer prefix and `N.`).
    pub layers: &'static [(&'static str, &'static str)],
}

/// Decoder-only models in the llama layout.
const LLAMA_GLOBALS: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// Attention and MLP of the llama layout (also Qwen2/Qwen3 and Gemma 1, whose q/k/v biases
/// and q/k norms share it).
const LLAMA_LAYERS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Llama and Mistral (whose Hugging Face checkpoints convert to arch `llama`): the llama
/// layout plus Mixtral's router (`ffn_gate_inp`).
const LLAMA_MOE_LAYERS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("ffn_gate_inp", "block_sparse_moe.gate"),
];

/// Gemma 2 and 3: four norms per layer. Note `ffn_norm` is the *pre*-feedforward norm here,
/// while in the llama layout it is `post_attention_layernorm`.
const GEMMA2_LAYERS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Phi-3: fused QKV and fused gate/up projections, kept fused by the converter.
const PHI3_LAYERS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_up", "mlp.gate_up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// BERT as `BertModel` saves it (no `bert.` prefix: the converter strips it, and
/// sentence-transformers checkpoints such as all-MiniLM-L6-v2 have none).
const BERT_GLOBALS: &[(&str, &str)] = &[
    ("token_embd", "embeddings.word_embeddings"),
    ("token_types", "embeddings.token_type_embeddings"),
    ("position_embd", "embeddings.position_embeddings"),
    ("token_embd_norm", "embeddings.LayerNorm"),
];

/// A BERT encoder layer.
const BERT_LAYERS: &[(&str, &str)] = &[
    ("attn_q", "attention.self.query"),
    ("attn_k", "attention.self.key"),
    ("attn_v", "attention.self.value"),
    ("attn_output", "attention.output.dense"),
    ("attn_output_norm", "attention.output.LayerNorm"),
    ("ffn_up", "intermediate.dense"),
    ("ffn_down", "output.dense"),
    ("layer_output_norm", "output.LayerNorm"),
];

/// Every family, looked up by `general.architecture`.
pub const FAMILIES: &[Family] = &[
    Family {
        archs: &["llama"],
        layer_prefix: "model.layers.",
        globals: LLAMA_GLOBALS,
        layers: LLAMA_MOE_LAYERS,
    },
    Family {
        archs: &["qwen2", "qwen2vl", "qwen3", "gemma"],
        layer_prefix: "model.layers.",
        globals: LLAMA_GLOBALS,
        layers: LLAMA_LAYERS,
    },
    Family {
        archs: &["gemma2", "gemma3"],
        layer_prefix: "model.layers.",
        globals: LLAMA_GLOBALS,
        layers: GEMMA2_LAYERS,
    },
    Family {
        archs: &["phi3"],
        layer_prefix: "model.layers.",
        globals: LLAMA_GLOBALS,
        layers: PHI3_LAYERS,
    },
    Family {
        archs: &["bert"],
        layer_prefix: "encoder.layer.",
        globals: BERT_GLOBALS,
        layers: BERT_LAYERS,
    },
];

/// The family serving architecture `arch`.
pub fn family(arch: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.archs.contains(&arch))
}

/// A GGUF tensor name taken apart: `blk.N.base.suffix` or `base.suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufName<'a> {
    /// The layer index, for `blk.N.` names.
    pub layer: Option<usize>,
    /// The name between the layer and the suffix (`attn_q`).
    pub base: &'a str,
    /// `weight` or `bias`.
    pub suffix: &'a str,
}

impl<'a> GgufName<'a> {
    /// Splits `name`; `None` unless it ends in `.weight` or `.bias`.
    pub fn parse(name: &'a str) -> Option<GgufName<'a>> {
        let (rest, suffix) = name.rsplit_once('.')?;
        if suffix != "weight" && suffix != "bias" {
            return None;
        }
        if let Some(after) = rest.strip_prefix("blk.") {
            let (n, base) = after.split_once('.')?;
            // Canonical decimal only (`blk.01.` is not layer 1 to llama.cpp either).
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || (n.len() > 1 && n.starts_with('0'))
            {
                return None;
            }
            return Some(GgufName {
                layer: Some(n.parse().ok()?),
                base,
                suffix,
            });
        }
        Some(GgufName {
            layer: None,
            base: rest,
            suffix,
        })
    }
}

impl Family {
    /// The Hugging Face name of GGUF tensor `name`, if this family maps it.
    pub fn hf_name(&self, name: &str) -> Option<String> {
        let parsed = GgufName::parse(name)?;
        match parsed.layer {
            Some(n) => {
                let hf = lookup(self.layers, parsed.base)?;
                Some(format!("{}{n}.{hf}.{}", self.layer_prefix, parsed.suffix))
            }
            None => {
                let hf = lookup(self.globals, parsed.base)?;
                Some(format!("{hf}.{}", parsed.suffix))
            }
        }
    }
}

fn lookup(table: &[(&str, &'static str)], base: &str) -> Option<&'static str> {
    table.iter().find(|(g, _)| *g == base).map(|(_, hf)| *hf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_layer_names_strictly() {
        assert_eq!(
            GgufName::parse("blk.12.attn_q.weight"),
            Some(GgufName {
                layer: Some(12),
                base: "attn_q",
                suffix: "weight"
            })
        );
        assert_eq!(GgufName::parse("blk.01.attn_q.weight"), None);
        assert_eq!(GgufName::parse("blk..attn_q.weight"), None);
        assert_eq!(GgufName::parse("blk.1x.attn_q.weight"), None);
        assert_eq!(
            GgufName::parse("blk.99999999999999999999999.attn_q.weight"),
            None
        );
        assert_eq!(GgufName::parse("token_embd.scale"), None);
        assert_eq!(
            GgufName::parse("output.weight").map(|n| (n.layer, n.base)),
            Some((None, "output"))
        );
    }

    #[test]
    fn maps_each_family_and_leaves_unknown_names() {
        let llama = family("llama").unwrap();
        assert_eq!(
            llama.hf_name("blk.0.attn_q.weight").as_deref(),
            Some("model.layers.0.self_attn.q_proj.weight")
        );
        assert_eq!(llama.hf_name("rope_freqs.weight"), None);
        assert_eq!(llama.hf_name("blk.0.ffn_gate_exps.weight"), None);
        let gemma2 = family("gemma2").unwrap();
        assert_eq!(
            gemma2.hf_name("blk.3.ffn_norm.weight").as_deref(),
            Some("model.layers.3.pre_feedforward_layernorm.weight")
        );
        let bert = family("bert").unwrap();
        assert_eq!(
            bert.hf_name("blk.5.attn_output_norm.bias").as_deref(),
            Some("encoder.layer.5.attention.output.LayerNorm.bias")
        );
        assert!(family("mamba").is_none());
    }

    #[test]
    fn tables_are_injective() {
        for f in FAMILIES {
            for table in [f.globals, f.layers] {
                let mut g: Vec<_> = table.iter().map(|(g, _)| g).collect();
                let mut h: Vec<_> = table.iter().map(|(_, h)| h).collect();
                g.sort();
                h.sort();
                let (ng, nh) = (g.len(), h.len());
                g.dedup();
                h.dedup();
                assert_eq!((g.len(), h.len()), (ng, nh), "{:?}", f.archs);
            }
        }
    }
}
