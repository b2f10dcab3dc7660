//! Tensor names across naming conventions, and how fused tensors split (issue 14, items 1
//! and 2).
//!
//! Two checkpoints that hold the same weights rarely spell them alike: a SigLIP vision tower
//! is `vision_model.encoder.layers.N.self_attn.q_proj` on its own,
//! `vision_tower.vision_model.…` inside LLaVA, `v.blk.N.attn_q` in a llama.cpp `mmproj` file;
//! Qwen-VL's tower stores q, k and v as one `visual.blocks.N.attn.qkv`. This module is the
//! declared table of those conventions: [`normalise`] reads a name under the convention whose
//! rule matches it and writes it in one canonical vocabulary, and [`fused`] says how a fused
//! tensor splits into the parts an unfused convention stores separately. Both are pure and
//! total: no input panics, and a name no rule knows comes back verbatim.
//!
//! # Canonical names
//!
//! * `{tower}.layers.{N}.{role}{leaf}` for a tensor inside a layer stack (every layer word,
//!   `layers`, `layer`, `blocks`, `blk`, `h`, `transformer.resblocks`, becomes `layers`);
//! * `{tower}.{role}{leaf}` for a tensor outside one.
//!
//! `{N}` is the layer index, verbatim. `{leaf}` is what followed the matched module path,
//! verbatim (`.weight`, `.bias`, `._extra_state`); a bare parameter (`class_embedding`,
//! `v.class_embd`, open_clip's `positional_embedding`) reads as the `.weight` of its role, so
//! that it meets the `nn.Embedding` or `nn.Linear` weight another convention stores there.
//!
//! | tower | what |
//! |---|---|
//! | `text` | a language model or a text encoder (Llama, BERT, CLIP's text tower, Megatron's GPT) |
//! | `vision` | a vision encoder (CLIP/SigLIP vision, Qwen-VL `visual`, mmproj `v.`) |
//! | `audio` | an audio encoder (Whisper's encoder, Qwen2-Audio's `audio_tower`, mmproj `a.`) |
//! | `decoder` | a decoder with cross-attention (Whisper's decoder) |
//! | `projector` | what maps one tower into another (LLaVA's `multi_modal_projector`, Qwen-VL's merger MLP, mmproj `mm.`) |
//!
//! Roles inside a layer ([`LAYER_ROLES`]):
//!
//! | role | meaning |
//! |---|---|
//! | `attn.q` | attention query projection |
//! | `attn.k` | attention key projection |
//! | `attn.v` | attention value projection |
//! | `attn.o` | attention output projection |
//! | `attn.qkv` | q, k and v fused in one tensor ([`fused`] splits it) |
//! | `attn.q_norm` | per-head norm on queries (Qwen3, Gemma 3) |
//! | `attn.k_norm` | per-head norm on keys |
//! | `xattn.q` | cross-attention query projection |
//! | `xattn.k` | cross-attention key projection |
//! | `xattn.v` | cross-attention value projection |
//! | `xattn.o` | cross-attention output projection |
//! | `norm.attn` | norm before attention (pre-norm) |
//! | `norm.attn_post` | norm on attention's output (Gemma 2/3 sandwich norm, BERT's post-norm) |
//! | `norm.xattn` | norm before cross-attention |
//! | `norm.mlp` | norm before the MLP (pre-norm; Llama's `post_attention_layernorm`) |
//! | `norm.mlp_post` | norm on the MLP's output (Gemma 2/3, BERT) |
//! | `mlp.gate` | gate projection of a gated MLP |
//! | `mlp.up` | up projection (an ungated MLP's first layer: `fc1`, `c_fc`, `intermediate.dense`) |
//! | `mlp.down` | down projection (an MLP's last layer: `fc2`, `c_proj`, `output.dense`) |
//! | `mlp.gate_up` | gate and up fused in one tensor ([`fused`] splits it) |
//! | `scale.attn` | layer scale on attention's output (`ls1`) |
//! | `scale.mlp` | layer scale on the MLP's output (`ls2`) |
//!
//! Roles outside layers ([`TOWER_ROLES`]):
//!
//! | role | meaning |
//! |---|---|
//! | `embed` | token embedding |
//! | `pos_embed` | learned position embedding |
//! | `type_embed` | token type embedding (BERT) |
//! | `patch_embed` | patch embedding (a convolution or linear map over pixels) |
//! | `cls_token` | class token |
//! | `conv1` | first convolution of an audio stem |
//! | `conv2` | second convolution of an audio stem |
//! | `norm.embed` | norm on the embeddings (BERT) |
//! | `norm.pre` | norm before the first layer (CLIP's `pre_layrnorm`) |
//! | `norm` | norm after the last layer (Qwen-VL's merger `ln_q` is read as this one, as llama.cpp does) |
//! | `lm_head` | output projection to the vocabulary |
//! | `proj` | projection into a shared embedding space (CLIP, SigLIP text) |
//! | `pool` | pooler (BERT) |
//! | `pool.probe` | attention-pooling probe (SigLIP) |
//! | `pool.attn.qkv` | attention-pooling q, k and v, fused |
//! | `pool.attn.q` | attention-pooling query projection (a part of `pool.attn.qkv`) |
//! | `pool.attn.k` | attention-pooling key projection |
//! | `pool.attn.v` | attention-pooling value projection |
//! | `pool.attn.o` | attention-pooling output projection |
//! | `pool.norm` | attention-pooling norm |
//! | `pool.mlp.up` | attention-pooling MLP, first layer |
//! | `pool.mlp.down` | attention-pooling MLP, last layer |
//! | `fc1` | a projector's first linear map |
//! | `fc2` | a projector's second linear map |
//!
//! # Conventions
//!
//! [`CONVENTIONS`] lists them; the rules are the `CONTAINERS` table below, one row per place a
//! convention's tensors live (`language_model.model.` holds a `hf-decoder` text tower inside
//! LLaVA). A row's rules match whole dot-separated segments; where several match, the longest
//! wins, and the first row that reads the whole name wins over later rows. A name inside a
//! known layer stack whose role no rule knows keeps that role verbatim
//! (`text.layers.0.mlp.experts.3.gate_proj.weight`). A name no row reads falls to the
//! `generic` rule: its first layer word (or, failing that, its first numeric segment) becomes
//! `layers` and the rest is kept (`encoder.0.reparam_conv.weight` →
//! `encoder.layers.0.reparam_conv.weight`); convention `none` when nothing changed.
//!
//! Wrapper segments ([`WRAPPERS`]: `module.` from DataParallel, `_orig_mod.` from
//! `torch.compile`, `_model.` from a scripted wrapper such as silero-vad's) are stripped first.
//!
//! # Names that need the rest of the checkpoint
//!
//! Gemma 2 and 3 reuse Llama's `post_attention_layernorm` for a different norm: Llama applies
//! it *before* the MLP, Gemma 2/3 *to attention's output*, with `pre_feedforward_layernorm`
//! before the MLP. One name cannot tell them apart; [`normalise_all`] reads a checkpoint's
//! names together and takes the Gemma reading in every layer that also has a norm on its MLP's
//! output (`post_feedforward_layernorm`). [`normalise`] alone takes the Llama reading.
//!
//! # Fused tensors
//!
//! | layout | where | parts |
//! |---|---|---|
//! | q, k, v stacked on rows | Phi-3 `qkv_proj`, Qwen-VL `attn.qkv`, open_clip and SigLIP's pooling head `in_proj_weight`, GGUF `attn_qkv` | `[q + 2·kv, d]`: q rows, then k, then v; q = d unless [`Heads`] says otherwise |
//! | q, k, v stacked on columns | GPT-2 `Conv1D` `c_attn`, stored `[in, out]` | `[d, 3·d]` split along axis 1 |
//! | q, k, v interleaved per query group | Megatron `query_key_value` / `linear_qkv`, GPT-NeoX `query_key_value` | per group: its q heads, one k head, one v head; needs [`Heads`] |
//! | gate, up stacked on rows | Phi-3 `gate_up_proj` (`chunk(2)`: gate first) | `[2·f, d]`: gate rows, then up |
//! | gate, up, if gated | Megatron `linear_fc1` / `dense_h_to_4h` (SwiGLU: gate first) | `[2·f, d]` when gated, `[f, d]` when not; needs [`Hints::ffn`] |
//!
//! A part is named `{name}#{part}` (`visual.blocks.3.attn.qkv.weight#q`) and [`normalise`]
//! reads such a name as the part's own role (`vision.layers.3.attn.q.weight`), so a fused part
//! and the unfused tensor of another convention normalise to the same name.
//!
//! Not covered (they keep their names or fall to `generic`): mixture-of-experts stacks,
//! T5-style encoder–decoders, Falcon's and Bloom's fused layouts, InternViT, and any family
//! not named in [`CONVENTIONS`]. llama.cpp's RoPE row permutation of GGUF `attn_q`/`attn_k`
//! is a layout, not a name: the GGUF reader undoes it.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

/// A naming convention: a family of checkpoints that spell their tensors alike.
#[derive(Debug, PartialEq, Eq)]
pub struct Convention {
    /// Short name, reported with every normalised name.
    pub name: &'static str,
    /// Which checkpoints use it.
    pub families: &'static str,
}

/// Hugging Face transformers decoder-only language models.
pub const HF_DECODER: Convention = Convention {
    name: "hf-decoder",
    families: "transformers Llama, Mistral, Qwen2, Qwen3, Gemma 1-3, Phi-3; the language \
               model inside LLaVA, Qwen2-VL/2.5-VL, Qwen2-Audio, Gemma 3 and Idefics3",
};
/// BERT encoders.
pub const HF_BERT: Convention = Convention {
    name: "hf-bert",
    families: "transformers BERT, bare (sentence-transformers) or under `bert.`",
};
/// GPT-2 (`Conv1D` layers, stored `[in, out]`).
pub const HF_GPT2: Convention = Convention {
    name: "hf-gpt2",
    families: "transformers GPT-2, bare or under `transformer.`",
};
/// GPT-NeoX (Pythia).
pub const HF_GPT_NEOX: Convention = Convention {
    name: "hf-gpt-neox",
    families: "transformers GPT-NeoX and Pythia",
};
/// CLIP and SigLIP towers.
pub const HF_CLIP: Convention = Convention {
    name: "hf-clip",
    families: "transformers CLIP, SigLIP, SigLIP2 (text and vision); the vision tower inside \
               LLaVA, Gemma 3 and Idefics3/SmolVLM",
};
/// Whisper and the Whisper-style audio tower of Qwen2-Audio.
pub const HF_WHISPER: Convention = Convention {
    name: "hf-whisper",
    families: "transformers Whisper (encoder and decoder); Qwen2-Audio's `audio_tower`",
};
/// Qwen-VL vision towers.
pub const QWEN_VL: Convention = Convention {
    name: "qwen-vl",
    families: "Qwen2-VL, Qwen2.5-VL and Qwen3-VL `visual` towers and their merger",
};
/// Projectors between towers.
pub const HF_PROJECTOR: Convention = Convention {
    name: "hf-projector",
    families: "transformers LLaVA, Gemma 3, Qwen2-Audio `multi_modal_projector`; Idefics3 \
               `connector`",
};
/// open_clip.
pub const OPEN_CLIP: Convention = Convention {
    name: "open-clip",
    families: "open_clip CLIP models (`visual.transformer.resblocks.N`, `nn.MultiheadAttention`)",
};
/// llama.cpp GGUF language models.
pub const GGUF: Convention = Convention {
    name: "gguf",
    families: "llama.cpp GGUF tensor names (`blk.N.attn_q`), as written before weightkin's \
               GGUF reader maps them to Hugging Face names",
};
/// llama.cpp mmproj files.
pub const GGUF_MMPROJ: Convention = Convention {
    name: "gguf-mmproj",
    families: "llama.cpp multimodal projector files: `v.` vision, `a.` audio, `mm.` projector",
};
/// Megatron-LM before megatron-core.
pub const MEGATRON: Convention = Convention {
    name: "megatron",
    families: "Megatron-LM legacy GPT (`language_model.encoder.layers.N`), NeMo 1 under `model.`",
};
/// megatron-core.
pub const MEGATRON_CORE: Convention = Convention {
    name: "megatron-core",
    families: "megatron-core GPT (`decoder.layers.N`, Transformer Engine's fused norms), NeMo \
               under `model.`",
};
/// The fallback: layer words unified, nothing else known.
pub const GENERIC: Convention = Convention {
    name: "generic",
    families: "any other name with a layer index: its layer word or numeric segment becomes \
               `layers`",
};
/// No rule changed the name.
pub const NONE: Convention = Convention {
    name: "none",
    families: "names no rule changed (wrapper segments may still have been stripped)",
};

/// Every convention, in the order [`normalise`] tries them (the fallbacks last).
pub const CONVENTIONS: &[&Convention] = &[
    &HF_DECODER,
    &HF_BERT,
    &HF_GPT2,
    &HF_GPT_NEOX,
    &HF_CLIP,
    &HF_WHISPER,
    &QWEN_VL,
    &HF_PROJECTOR,
    &OPEN_CLIP,
    &GGUF,
    &GGUF_MMPROJ,
    &MEGATRON,
    &MEGATRON_CORE,
    &GENERIC,
    &NONE,
];

/// A canonical role and what it means.
#[derive(Debug)]
pub struct Role {
    /// The role as it appears in canonical names (`attn.q`).
    pub name: &'static str,
    /// What the tensor does.
    pub meaning: &'static str,
}

const fn role(name: &'static str, meaning: &'static str) -> Role {
    Role { name, meaning }
}

/// Roles inside a layer: the `{role}` of `{tower}.layers.{N}.{role}`.
pub const LAYER_ROLES: &[Role] = &[
    role("attn.q", "attention query projection"),
    role("attn.k", "attention key projection"),
    role("attn.v", "attention value projection"),
    role("attn.o", "attention output projection"),
    role("attn.qkv", "q, k and v fused in one tensor"),
    role("attn.q_norm", "per-head norm on queries"),
    role("attn.k_norm", "per-head norm on keys"),
    role("xattn.q", "cross-attention query projection"),
    role("xattn.k", "cross-attention key projection"),
    role("xattn.v", "cross-attention value projection"),
    role("xattn.o", "cross-attention output projection"),
    role("norm.attn", "norm before attention"),
    role("norm.attn_post", "norm on attention's output"),
    role("norm.xattn", "norm before cross-attention"),
    role("norm.mlp", "norm before the MLP"),
    role("norm.mlp_post", "norm on the MLP's output"),
    role("mlp.gate", "gate projection of a gated MLP"),
    role("mlp.up", "up projection, or an ungated MLP's first layer"),
    role("mlp.down", "down projection, an MLP's last layer"),
    role("mlp.gate_up", "gate and up fused in one tensor"),
    role("scale.attn", "layer scale on attention's output"),
    role("scale.mlp", "layer scale on the MLP's output"),
];

/// Roles outside layers: the `{role}` of `{tower}.{role}`.
pub const TOWER_ROLES: &[Role] = &[
    role("embed", "token embedding"),
    role("pos_embed", "learned position embedding"),
    role("type_embed", "token type embedding"),
    role("patch_embed", "patch embedding"),
    role("cls_token", "class token"),
    role("conv1", "first convolution of an audio stem"),
    role("conv2", "second convolution of an audio stem"),
    role("norm.embed", "norm on the embeddings"),
    role("norm.pre", "norm before the first layer"),
    role("norm", "norm after the last layer"),
    role("lm_head", "output projection to the vocabulary"),
    role("proj", "projection into a shared embedding space"),
    role("pool", "pooler"),
    role("pool.probe", "attention-pooling probe"),
    role("pool.attn.qkv", "attention-pooling q, k and v, fused"),
    role("pool.attn.q", "attention-pooling query projection"),
    role("pool.attn.k", "attention-pooling key projection"),
    role("pool.attn.v", "attention-pooling value projection"),
    role("pool.attn.o", "attention-pooling output projection"),
    role("pool.norm", "attention-pooling norm"),
    role("pool.mlp.up", "attention-pooling MLP, first layer"),
    role("pool.mlp.down", "attention-pooling MLP, last layer"),
    role("fc1", "a projector's first linear map"),
    role("fc2", "a projector's second linear map"),
];

/// Which part of a model a tensor belongs to: the first word of a canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tower {
    Text,
    Vision,
    Audio,
    Decoder,
    Projector,
}

impl Tower {
    const fn as_str(self) -> &'static str {
        match self {
            Tower::Text => "text",
            Tower::Vision => "vision",
            Tower::Audio => "audio",
            Tower::Decoder => "decoder",
            Tower::Projector => "projector",
        }
    }
}

/// How a tensor stores several canonical tensors in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fusion {
    /// Not fused.
    No,
    /// q, k, v stacked along dim 0 of `[q + 2·kv, d]`.
    QkvRows,
    /// q, k, v stacked along dim 1 of a GPT-2 `Conv1D` weight `[d, 3·d]`.
    QkvColumns,
    /// q, k, v interleaved per query group along dim 0 (Megatron, NeoX).
    QkvInterleaved,
    /// gate then up along dim 0 of `[2·f, d]`.
    GateUpRows,
    /// gate then up along dim 0 when the MLP is gated, up alone when it is not.
    MaybeGateUpRows,
}

/// Fused modules recognised by their own (last) module name when no convention of the table
/// reads the tensor: the layout the name documents in every codebase that uses it (timm and
/// DINOv2 `attn.qkv`, `qkv_proj`, MPT `Wqkv`: q, k, v along rows; `gate_up_proj`: gate then
/// up).
const GENERIC_FUSED: &[(&str, Fusion)] = &[
    ("qkv", Fusion::QkvRows),
    ("qkv_proj", Fusion::QkvRows),
    ("Wqkv", Fusion::QkvRows),
    ("gate_up_proj", Fusion::GateUpRows),
];

impl Fusion {
    /// The segment of the rule's canonical role that a part replaces, and the parts.
    const fn parts(self) -> (&'static str, &'static [PartKind]) {
        match self {
            Fusion::No => ("", &[]),
            Fusion::QkvRows | Fusion::QkvColumns | Fusion::QkvInterleaved => {
                ("qkv", &[PartKind::Q, PartKind::K, PartKind::V])
            }
            Fusion::GateUpRows => ("gate_up", &[PartKind::Gate, PartKind::Up]),
            Fusion::MaybeGateUpRows => ("up", &[PartKind::Gate, PartKind::Up]),
        }
    }
}

/// One rule: a module path of a convention and its canonical role.
#[derive(Debug)]
struct Rule {
    /// Dot-separated module path after the layer index (or after the container prefix, for
    /// unlayered rules). Matches whole segments: `self_attn.q_proj` matches
    /// `self_attn.q_proj.weight`, not `self_attn.q_proj_x.weight`.
    from: &'static str,
    /// Canonical role; it may carry the leaf when `from` does (`in_proj_weight`).
    to: &'static str,
    /// How the tensor is fused, if it is.
    fusion: Fusion,
    /// The role in a layer that also normalises its MLP's output (Gemma 2/3 sandwich norms).
    sandwich: Option<&'static str>,
    /// The tower, where it is not the container's (Qwen-VL's merger holds projector tensors).
    tower: Option<Tower>,
}

const fn r(from: &'static str, to: &'static str) -> Rule {
    Rule {
        from,
        to,
        fusion: Fusion::No,
        sandwich: None,
        tower: None,
    }
}

const fn fused_rule(from: &'static str, to: &'static str, fusion: Fusion) -> Rule {
    Rule {
        fusion,
        ..r(from, to)
    }
}

const fn in_tower(tower: Tower, from: &'static str, to: &'static str) -> Rule {
    Rule {
        tower: Some(tower),
        ..r(from, to)
    }
}

/// A convention's rules relative to where its tensors live.
#[derive(Debug)]
struct Body {
    convention: &'static Convention,
    /// Paths to a layer stack, each followed by the layer index (`encoder.layers.`).
    stacks: &'static [&'static str],
    /// Rules for what follows `{stack}{N}.`.
    layer: &'static [Rule],
    /// Rules for tensors outside the stacks.
    unlayered: &'static [Rule],
}

/// Where a convention's tensors live: a name prefix and the tower it holds.
#[derive(Debug)]
struct Container {
    prefix: &'static str,
    tower: Tower,
    body: &'static Body,
}

const fn c(prefix: &'static str, tower: Tower, body: &'static Body) -> Container {
    Container {
        prefix,
        tower,
        body,
    }
}

// ---- Hugging Face decoder-only LMs ------------------------------------------------------

const HF_DECODER_LAYER: &[Rule] = &[
    r("input_layernorm", "norm.attn"),
    r("self_attn.q_proj", "attn.q"),
    r("self_attn.k_proj", "attn.k"),
    r("self_attn.v_proj", "attn.v"),
    r("self_attn.o_proj", "attn.o"),
    fused_rule("self_attn.qkv_proj", "attn.qkv", Fusion::QkvRows),
    r("self_attn.q_norm", "attn.q_norm"),
    r("self_attn.k_norm", "attn.k_norm"),
    // Llama applies it before the MLP; Gemma 2/3 to attention's output (module doc).
    Rule {
        sandwich: Some("norm.attn_post"),
        ..r("post_attention_layernorm", "norm.mlp")
    },
    r("pre_feedforward_layernorm", "norm.mlp"),
    r("post_feedforward_layernorm", "norm.mlp_post"),
    r("mlp.gate_proj", "mlp.gate"),
    r("mlp.up_proj", "mlp.up"),
    r("mlp.down_proj", "mlp.down"),
    // Phi-3: `gate, up_states = up_states.chunk(2, dim=-1)`, gate first.
    fused_rule("mlp.gate_up_proj", "mlp.gate_up", Fusion::GateUpRows),
];

/// `LlamaForCausalLM` and friends: `model.layers.N`, under `model.`.
const HF_DECODER_BASE: Body = Body {
    convention: &HF_DECODER,
    stacks: &["layers."],
    layer: HF_DECODER_LAYER,
    unlayered: &[r("embed_tokens", "embed"), r("norm", "norm")],
};

/// A bare `LlamaModel` (embedding models save no `model.`): no bare `norm`, which a bare
/// timm ViT would claim too.
const HF_DECODER_BARE: Body = Body {
    convention: &HF_DECODER,
    stacks: &["layers."],
    layer: HF_DECODER_LAYER,
    unlayered: &[r("embed_tokens", "embed")],
};

/// LM heads outside the `model.` of a causal LM.
const HF_DECODER_HEAD: Body = Body {
    convention: &HF_DECODER,
    stacks: &[],
    layer: &[],
    unlayered: &[
        r("lm_head", "lm_head"),
        r("language_model.lm_head", "lm_head"),
    ],
};

// ---- BERT --------------------------------------------------------------------------------

/// BERT is post-norm: its two LayerNorms act on each sublayer's output.
const BERT_BODY: Body = Body {
    convention: &HF_BERT,
    stacks: &["encoder.layer."],
    layer: &[
        r("attention.self.query", "attn.q"),
        r("attention.self.key", "attn.k"),
        r("attention.self.value", "attn.v"),
        r("attention.output.dense", "attn.o"),
        r("attention.output.LayerNorm", "norm.attn_post"),
        r("intermediate.dense", "mlp.up"),
        r("output.dense", "mlp.down"),
        r("output.LayerNorm", "norm.mlp_post"),
    ],
    unlayered: &[
        r("embeddings.word_embeddings", "embed"),
        r("embeddings.position_embeddings", "pos_embed"),
        r("embeddings.token_type_embeddings", "type_embed"),
        r("embeddings.LayerNorm", "norm.embed"),
        r("pooler.dense", "pool"),
    ],
};

// ---- GPT-2 and GPT-NeoX ------------------------------------------------------------------

const GPT2_BODY: Body = Body {
    convention: &HF_GPT2,
    stacks: &["h."],
    layer: &[
        r("ln_1", "norm.attn"),
        // `Conv1D` stores `[in, out]`: q, k, v are column blocks.
        fused_rule("attn.c_attn", "attn.qkv", Fusion::QkvColumns),
        r("attn.c_proj", "attn.o"),
        r("ln_2", "norm.mlp"),
        r("mlp.c_fc", "mlp.up"),
        r("mlp.c_proj", "mlp.down"),
    ],
    unlayered: &[r("wte", "embed"), r("wpe", "pos_embed"), r("ln_f", "norm")],
};

/// GPT-NeoX: parallel residual, both norms read the layer's input; `post_attention_layernorm`
/// is the MLP's.
const NEOX_BODY: Body = Body {
    convention: &HF_GPT_NEOX,
    stacks: &["layers."],
    layer: &[
        r("input_layernorm", "norm.attn"),
        r("post_attention_layernorm", "norm.mlp"),
        // `qkv.view(..., heads, 3 * head_size)`: per head q, k, v.
        fused_rule(
            "attention.query_key_value",
            "attn.qkv",
            Fusion::QkvInterleaved,
        ),
        r("attention.dense", "attn.o"),
        r("mlp.dense_h_to_4h", "mlp.up"),
        r("mlp.dense_4h_to_h", "mlp.down"),
    ],
    unlayered: &[r("embed_in", "embed"), r("final_layer_norm", "norm")],
};

const NEOX_HEAD: Body = Body {
    convention: &HF_GPT_NEOX,
    stacks: &[],
    layer: &[],
    unlayered: &[r("embed_out", "lm_head")],
};

// ---- CLIP / SigLIP -----------------------------------------------------------------------

const CLIP_BODY: Body = Body {
    convention: &HF_CLIP,
    stacks: &["encoder.layers."],
    layer: &[
        r("layer_norm1", "norm.attn"),
        r("self_attn.q_proj", "attn.q"),
        r("self_attn.k_proj", "attn.k"),
        r("self_attn.v_proj", "attn.v"),
        r("self_attn.out_proj", "attn.o"),
        r("layer_norm2", "norm.mlp"),
        r("mlp.fc1", "mlp.up"),
        r("mlp.fc2", "mlp.down"),
    ],
    unlayered: &[
        r("embeddings.token_embedding", "embed"),
        r("embeddings.patch_embedding", "patch_embed"),
        r("embeddings.position_embedding", "pos_embed"),
        r("embeddings.class_embedding", "cls_token"),
        // sic: CLIP's attribute is misspelt.
        r("pre_layrnorm", "norm.pre"),
        r("post_layernorm", "norm"),
        r("final_layer_norm", "norm"),
        // SigLIP's attention-pooling head (vision) and text projection (text).
        r("head.probe", "pool.probe"),
        fused_rule(
            "head.attention.in_proj_weight",
            "pool.attn.qkv.weight",
            Fusion::QkvRows,
        ),
        fused_rule(
            "head.attention.in_proj_bias",
            "pool.attn.qkv.bias",
            Fusion::QkvRows,
        ),
        r("head.attention.out_proj", "pool.attn.o"),
        r("head.layernorm", "pool.norm"),
        r("head.mlp.fc1", "pool.mlp.up"),
        r("head.mlp.fc2", "pool.mlp.down"),
        r("head.weight", "proj.weight"),
        r("head.bias", "proj.bias"),
    ],
};

/// CLIP's projections into the shared space sit outside both towers.
const CLIP_TOP: Body = Body {
    convention: &HF_CLIP,
    stacks: &[],
    layer: &[],
    unlayered: &[
        in_tower(Tower::Vision, "visual_projection", "proj"),
        in_tower(Tower::Text, "text_projection", "proj"),
    ],
};

// ---- Whisper and Qwen2-Audio's audio tower -----------------------------------------------

const WHISPER_BODY: Body = Body {
    convention: &HF_WHISPER,
    stacks: &["layers."],
    layer: &[
        r("self_attn_layer_norm", "norm.attn"),
        r("self_attn.q_proj", "attn.q"),
        r("self_attn.k_proj", "attn.k"),
        r("self_attn.v_proj", "attn.v"),
        r("self_attn.out_proj", "attn.o"),
        r("encoder_attn_layer_norm", "norm.xattn"),
        r("encoder_attn.q_proj", "xattn.q"),
        r("encoder_attn.k_proj", "xattn.k"),
        r("encoder_attn.v_proj", "xattn.v"),
        r("encoder_attn.out_proj", "xattn.o"),
        // Whisper is pre-norm: `final_layer_norm` is the MLP's input norm.
        r("final_layer_norm", "norm.mlp"),
        r("fc1", "mlp.up"),
        r("fc2", "mlp.down"),
    ],
    unlayered: &[
        r("conv1", "conv1"),
        r("conv2", "conv2"),
        r("embed_tokens", "embed"),
        r("embed_positions", "pos_embed"),
        r("layer_norm", "norm"),
    ],
};

const WHISPER_TOP: Body = Body {
    convention: &HF_WHISPER,
    stacks: &[],
    layer: &[],
    unlayered: &[in_tower(Tower::Decoder, "proj_out", "lm_head")],
};

// ---- Qwen-VL vision towers ---------------------------------------------------------------

const QWEN_VL_BODY: Body = Body {
    convention: &QWEN_VL,
    stacks: &["blocks."],
    layer: &[
        r("norm1", "norm.attn"),
        // `qkv(x).reshape(seq, 3, heads, -1)`: q, k, v contiguous.
        fused_rule("attn.qkv", "attn.qkv", Fusion::QkvRows),
        r("attn.proj", "attn.o"),
        r("norm2", "norm.mlp"),
        // Qwen2-VL: fc1/fc2; Qwen2.5-VL: gated; Qwen3-VL: linear_fc1/linear_fc2.
        r("mlp.fc1", "mlp.up"),
        r("mlp.fc2", "mlp.down"),
        r("mlp.gate_proj", "mlp.gate"),
        r("mlp.up_proj", "mlp.up"),
        r("mlp.down_proj", "mlp.down"),
        r("mlp.linear_fc1", "mlp.up"),
        r("mlp.linear_fc2", "mlp.down"),
    ],
    unlayered: &[
        r("patch_embed.proj", "patch_embed"),
        r("pos_embed", "pos_embed"),
        // llama.cpp reads the merger's input norm as the tower's final norm (`v.post_ln`).
        r("merger.ln_q", "norm"),
        r("merger.norm", "norm"),
        in_tower(Tower::Projector, "merger.mlp.0", "fc1"),
        in_tower(Tower::Projector, "merger.mlp.2", "fc2"),
        in_tower(Tower::Projector, "merger.linear_fc1", "fc1"),
        in_tower(Tower::Projector, "merger.linear_fc2", "fc2"),
    ],
};

// ---- Projectors --------------------------------------------------------------------------

const PROJECTOR_BODY: Body = Body {
    convention: &HF_PROJECTOR,
    stacks: &[],
    layer: &[],
    unlayered: &[
        r("linear_1", "fc1"),
        r("linear_2", "fc2"),
        // Qwen2-Audio: one linear map.
        r("linear", "fc1"),
        // Gemma 3: a bare `[vision, text]` parameter and a norm.
        r("mm_input_projection_weight", "fc1.weight"),
        r("mm_soft_emb_norm", "norm"),
        // Idefics3 / SmolVLM `connector`.
        r("modality_projection.proj", "fc1"),
    ],
};

// ---- open_clip ---------------------------------------------------------------------------

const OPEN_CLIP_LAYER: &[Rule] = &[
    r("ln_1", "norm.attn"),
    // `nn.MultiheadAttention`: `in_proj_weight` is `[3·d, d]`, q, k, v contiguous.
    fused_rule("attn.in_proj_weight", "attn.qkv.weight", Fusion::QkvRows),
    fused_rule("attn.in_proj_bias", "attn.qkv.bias", Fusion::QkvRows),
    r("attn.out_proj", "attn.o"),
    r("ln_2", "norm.mlp"),
    r("mlp.c_fc", "mlp.up"),
    r("mlp.c_proj", "mlp.down"),
    r("ls_1.gamma", "scale.attn.weight"),
    r("ls_2.gamma", "scale.mlp.weight"),
];

const OPEN_CLIP_VISUAL: Body = Body {
    convention: &OPEN_CLIP,
    stacks: &["transformer.resblocks."],
    layer: OPEN_CLIP_LAYER,
    unlayered: &[
        r("conv1", "patch_embed"),
        r("class_embedding", "cls_token"),
        r("positional_embedding", "pos_embed"),
        r("ln_pre", "norm.pre"),
        r("ln_post", "norm"),
        r("proj", "proj"),
    ],
};

const OPEN_CLIP_TEXT: Body = Body {
    convention: &OPEN_CLIP,
    stacks: &["transformer.resblocks."],
    layer: OPEN_CLIP_LAYER,
    unlayered: &[
        r("token_embedding", "embed"),
        r("positional_embedding", "pos_embed"),
        r("ln_final", "norm"),
    ],
};

// ---- llama.cpp ---------------------------------------------------------------------------

/// gguf-py `TensorNameMap` names of a language model (`gguf/constants.py`).
const GGUF_BODY: Body = Body {
    convention: &GGUF,
    stacks: &["blk."],
    layer: &[
        r("attn_norm", "norm.attn"),
        r("attn_q", "attn.q"),
        r("attn_k", "attn.k"),
        r("attn_v", "attn.v"),
        r("attn_output", "attn.o"),
        fused_rule("attn_qkv", "attn.qkv", Fusion::QkvRows),
        r("attn_q_norm", "attn.q_norm"),
        r("attn_k_norm", "attn.k_norm"),
        r("post_attention_norm", "norm.attn_post"),
        // BERT's post-norms.
        r("attn_output_norm", "norm.attn_post"),
        r("layer_output_norm", "norm.mlp_post"),
        // The norm before the MLP in every architecture (Gemma 2's `pre_feedforward_layernorm`).
        r("ffn_norm", "norm.mlp"),
        r("post_ffw_norm", "norm.mlp_post"),
        r("ffn_gate", "mlp.gate"),
        // Phi-3's GGUF `ffn_up` holds gate and up; weightkin's GGUF reader names it
        // `gate_up_proj` before this table sees it.
        r("ffn_up", "mlp.up"),
        r("ffn_down", "mlp.down"),
    ],
    unlayered: &[
        r("token_embd", "embed"),
        r("token_types", "type_embed"),
        r("position_embd", "pos_embed"),
        r("token_embd_norm", "norm.embed"),
        r("output_norm", "norm"),
        r("output", "lm_head"),
    ],
};

/// clip.cpp's vision (`v.`) and audio (`a.`) encoders.
const MMPROJ_BODY: Body = Body {
    convention: &GGUF_MMPROJ,
    stacks: &["blk."],
    layer: &[
        r("ln1", "norm.attn"),
        r("attn_q", "attn.q"),
        r("attn_k", "attn.k"),
        r("attn_v", "attn.v"),
        fused_rule("attn_qkv", "attn.qkv", Fusion::QkvRows),
        r("attn_out", "attn.o"),
        r("attn_q_norm", "attn.q_norm"),
        r("attn_k_norm", "attn.k_norm"),
        r("attn_post_norm", "norm.attn_post"),
        r("ln2", "norm.mlp"),
        r("ffn_gate", "mlp.gate"),
        r("ffn_up", "mlp.up"),
        r("ffn_down", "mlp.down"),
        r("ffn_post_norm", "norm.mlp_post"),
        r("ls1", "scale.attn"),
        r("ls2", "scale.mlp"),
    ],
    unlayered: &[
        r("patch_embd", "patch_embed"),
        r("position_embd", "pos_embed"),
        r("class_embd", "cls_token"),
        r("pre_ln", "norm.pre"),
        r("post_ln", "norm"),
        // gguf-py maps `audio_tower.conv{N}` to `a.conv1d.{N}`.
        r("conv1d.1", "conv1"),
        r("conv1d.2", "conv2"),
    ],
};

/// clip.cpp's projector (`mm.`): `mm.0`/`mm.2` are the two linear maps of LLaVA's
/// `Linear, GELU, Linear` and of Qwen-VL's merger.
const MMPROJ_MM_BODY: Body = Body {
    convention: &GGUF_MMPROJ,
    stacks: &[],
    layer: &[],
    unlayered: &[
        r("0", "fc1"),
        r("2", "fc2"),
        r("input_projection", "fc1"),
        r("input_norm", "norm"),
        r("soft_emb_norm", "norm"),
        r("model.fc", "fc1"),
        r("a.fc", "fc1"),
    ],
};

// ---- Megatron ----------------------------------------------------------------------------

/// Megatron-LM's legacy layout: the GPT's stack is its `encoder`.
const MEGATRON_BODY: Body = Body {
    convention: &MEGATRON,
    stacks: &["encoder.layers.", "transformer.layers."],
    layer: &[
        r("input_layernorm", "norm.attn"),
        // `view(np, 3 * hn)` per head (per query group with GQA).
        fused_rule(
            "self_attention.query_key_value",
            "attn.qkv",
            Fusion::QkvInterleaved,
        ),
        r("self_attention.dense", "attn.o"),
        r("self_attention.q_layernorm", "attn.q_norm"),
        r("self_attention.k_layernorm", "attn.k_norm"),
        r("post_attention_layernorm", "norm.mlp"),
        // SwiGLU stores gate and up here; a plain GeLU MLP only up.
        fused_rule("mlp.dense_h_to_4h", "mlp.up", Fusion::MaybeGateUpRows),
        r("mlp.dense_4h_to_h", "mlp.down"),
    ],
    unlayered: &[
        r("embedding.word_embeddings", "embed"),
        r("embedding.position_embeddings", "pos_embed"),
        r("encoder.final_layernorm", "norm"),
        r("encoder.final_norm", "norm"),
        r("output_layer", "lm_head"),
    ],
};

/// megatron-core (`GPTModel`), with Transformer Engine's norms fused into the following
/// linear layer (`linear_qkv.layer_norm_weight`) or as separate modules.
const MEGATRON_CORE_BODY: Body = Body {
    convention: &MEGATRON_CORE,
    stacks: &["decoder.layers."],
    layer: &[
        r("input_layernorm", "norm.attn"),
        r(
            "self_attention.linear_qkv.layer_norm_weight",
            "norm.attn.weight",
        ),
        r(
            "self_attention.linear_qkv.layer_norm_bias",
            "norm.attn.bias",
        ),
        // Per query group: its q heads, then one k head, then one v head.
        fused_rule(
            "self_attention.linear_qkv",
            "attn.qkv",
            Fusion::QkvInterleaved,
        ),
        r("self_attention.linear_proj", "attn.o"),
        r("self_attention.q_layernorm", "attn.q_norm"),
        r("self_attention.k_layernorm", "attn.k_norm"),
        r("pre_mlp_layernorm", "norm.mlp"),
        r("mlp.linear_fc1.layer_norm_weight", "norm.mlp.weight"),
        r("mlp.linear_fc1.layer_norm_bias", "norm.mlp.bias"),
        // SwiGLU: `torch.chunk(x, 2, dim=-1)`, gate first.
        fused_rule("mlp.linear_fc1", "mlp.up", Fusion::MaybeGateUpRows),
        r("mlp.linear_fc2", "mlp.down"),
    ],
    unlayered: &[
        r("embedding.word_embeddings", "embed"),
        r("embedding.position_embeddings", "pos_embed"),
        r("decoder.final_layernorm", "norm"),
        r("output_layer", "lm_head"),
    ],
};

/// Every place a convention's tensors live, in the order they are tried. Where two rows read
/// one name completely, the first wins; keep the more specific prefix first.
const CONTAINERS: &[Container] = &[
    // Language models, bare, in causal LMs and inside VLMs (old and new transformers layouts).
    c("model.language_model.", Tower::Text, &HF_DECODER_BASE),
    c("language_model.model.", Tower::Text, &HF_DECODER_BASE),
    c("model.text_model.", Tower::Text, &HF_DECODER_BASE),
    c("model.", Tower::Text, &HF_DECODER_BASE),
    c("", Tower::Text, &HF_DECODER_BARE),
    c("", Tower::Text, &HF_DECODER_HEAD),
    // Vision towers.
    c("vision_model.", Tower::Vision, &CLIP_BODY),
    c("text_model.", Tower::Text, &CLIP_BODY),
    c("vision_tower.vision_model.", Tower::Vision, &CLIP_BODY),
    c(
        "model.vision_tower.vision_model.",
        Tower::Vision,
        &CLIP_BODY,
    ),
    c("model.vision_model.", Tower::Vision, &CLIP_BODY),
    c("", Tower::Text, &CLIP_TOP),
    c("visual.", Tower::Vision, &QWEN_VL_BODY),
    c("model.visual.", Tower::Vision, &QWEN_VL_BODY),
    c("visual.", Tower::Vision, &OPEN_CLIP_VISUAL),
    c("", Tower::Text, &OPEN_CLIP_TEXT),
    // Audio.
    c("model.encoder.", Tower::Audio, &WHISPER_BODY),
    c("model.decoder.", Tower::Decoder, &WHISPER_BODY),
    c("audio_tower.", Tower::Audio, &WHISPER_BODY),
    c("model.audio_tower.", Tower::Audio, &WHISPER_BODY),
    c("", Tower::Decoder, &WHISPER_TOP),
    // Projectors.
    c("multi_modal_projector.", Tower::Projector, &PROJECTOR_BODY),
    c(
        "model.multi_modal_projector.",
        Tower::Projector,
        &PROJECTOR_BODY,
    ),
    c("model.connector.", Tower::Projector, &PROJECTOR_BODY),
    // Older text families.
    c("bert.", Tower::Text, &BERT_BODY),
    c("", Tower::Text, &BERT_BODY),
    c("transformer.", Tower::Text, &GPT2_BODY),
    c("", Tower::Text, &GPT2_BODY),
    c("gpt_neox.", Tower::Text, &NEOX_BODY),
    c("", Tower::Text, &NEOX_HEAD),
    // llama.cpp.
    c("", Tower::Text, &GGUF_BODY),
    c("v.", Tower::Vision, &MMPROJ_BODY),
    c("a.", Tower::Audio, &MMPROJ_BODY),
    c("mm.", Tower::Projector, &MMPROJ_MM_BODY),
    // Megatron and NeMo.
    c("language_model.", Tower::Text, &MEGATRON_BODY),
    c("model.language_model.", Tower::Text, &MEGATRON_BODY),
    c("", Tower::Text, &MEGATRON_CORE_BODY),
    c("model.", Tower::Text, &MEGATRON_CORE_BODY),
];

/// A wrapper segment that adds nothing to a name.
#[derive(Debug)]
pub struct Wrapper {
    /// The segment (`_orig_mod`).
    pub segment: &'static str,
    /// Stripped wherever it occurs as a whole segment, not only at the front.
    pub anywhere: bool,
    /// What puts it there.
    pub why: &'static str,
}

/// Wrapper segments stripped before any rule is tried.
pub const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        segment: "_orig_mod",
        anywhere: true,
        why: "torch.compile's `OptimizedModule` (a compiled submodule carries it mid-name)",
    },
    Wrapper {
        segment: "module",
        anywhere: false,
        why: "DataParallel / DistributedDataParallel",
    },
    Wrapper {
        segment: "_model",
        anywhere: false,
        why: "a scripted wrapper's inner model (silero-vad's TorchScript file)",
    },
];

/// A tensor name read under a known convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// The canonical name (module doc).
    pub canonical: String,
    /// The name of the [`Convention`] that read it: `generic` when only the layer word was
    /// unified, `none` when no rule changed it.
    pub convention: &'static str,
    /// Wrapper segments ([`WRAPPERS`]) stripped from the name, in order.
    pub wrappers: Vec<&'static str>,
}

/// How a name was read, before it is written out.
#[derive(Debug)]
enum Reading<'n> {
    /// A rule read it.
    Rule {
        convention: &'static Convention,
        tower: Tower,
        layer: Option<&'n str>,
        rule: &'static Rule,
        /// What followed the rule's path, verbatim.
        rest: &'n str,
    },
    /// A known layer stack, a role no rule knows.
    UnknownRole {
        convention: &'static Convention,
        tower: Tower,
        layer: &'n str,
        tail: &'n str,
    },
    /// No convention: the generic rule's result, or the name itself.
    Verbatim {
        canonical: String,
        convention: &'static Convention,
    },
}

/// Canonical form of a (possibly renamed) tensor name. Always returns something: parts no
/// rule knows are kept verbatim (after wrapper segments are stripped), convention `none` when
/// no rule applied. A split part's virtual name `{name}#{part}` reads as the part's role.
/// Ambiguous names take the Llama reading; read a whole checkpoint with [`normalise_all`].
pub fn normalise(name: &str) -> Normalised {
    let (base, part) = split_part(name);
    let (stripped, wrappers) = strip_wrappers(base);
    let reading = read(&stripped);
    let (canonical, convention) = render(&reading, false, part);
    Normalised {
        canonical,
        convention,
        wrappers,
    }
}

/// [`normalise`] for every name of one checkpoint, in the order given, resolving names whose
/// meaning depends on their layer's other tensors (Gemma 2/3's `post_attention_layernorm`,
/// module doc).
pub fn normalise_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Normalised> {
    let read_names: Vec<(Option<&str>, String, Vec<&'static str>)> = names
        .into_iter()
        .map(|name| {
            let (base, part) = split_part(name);
            let (stripped, wrappers) = strip_wrappers(base);
            (part, stripped, wrappers)
        })
        .collect();
    let readings: Vec<Reading<'_>> = read_names.iter().map(|(_, s, _)| read(s)).collect();
    // Layers (tower, index) that normalise their MLP's output: there, a sandwich rule takes
    // its sandwich reading.
    let mut sandwich: Vec<(Tower, &str)> = readings
        .iter()
        .filter_map(|reading| match reading {
            Reading::Rule {
                tower,
                layer: Some(layer),
                rule,
                ..
            } if rule.to == "norm.mlp_post" => Some((rule.tower.unwrap_or(*tower), *layer)),
            _ => None,
        })
        .collect();
    sandwich.sort_unstable();
    sandwich.dedup();
    readings
        .iter()
        .zip(&read_names)
        .map(|(reading, (part, _, wrappers))| {
            let in_sandwich = match reading {
                Reading::Rule {
                    tower,
                    layer: Some(layer),
                    rule,
                    ..
                } => sandwich
                    .binary_search(&(rule.tower.unwrap_or(*tower), *layer))
                    .is_ok(),
                _ => false,
            };
            let (canonical, convention) = render(reading, in_sandwich, *part);
            Normalised {
                canonical,
                convention,
                wrappers: wrappers.clone(),
            }
        })
        .collect()
}

/// `name#part` → (`name`, Some(`part`)); the last `#` splits.
fn split_part(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('#') {
        Some((base, part)) => (base, Some(part)),
        None => (name, None),
    }
}

/// The name without wrapper segments, and the segments stripped.
fn strip_wrappers(name: &str) -> (String, Vec<&'static str>) {
    let mut stripped = Vec::new();
    let mut rest = name;
    'front: loop {
        for w in WRAPPERS {
            if let Some(after) = rest
                .strip_prefix(w.segment)
                .and_then(|r| r.strip_prefix('.'))
            {
                stripped.push(w.segment);
                rest = after;
                continue 'front;
            }
        }
        break;
    }
    if !rest
        .split('.')
        .any(|segment| WRAPPERS.iter().any(|w| w.anywhere && w.segment == segment))
    {
        return (rest.to_owned(), stripped);
    }
    let mut kept = Vec::new();
    for segment in rest.split('.') {
        match WRAPPERS.iter().find(|w| w.anywhere && w.segment == segment) {
            Some(w) => stripped.push(w.segment),
            None => kept.push(segment),
        }
    }
    let out = kept.join(".");
    (out, stripped)
}

/// The rule of `rules` whose path is the longest whole-segment prefix of `path`, and what
/// follows it.
fn longest<'n>(rules: &'static [Rule], path: &'n str) -> Option<(&'static Rule, &'n str)> {
    let mut best: Option<(&'static Rule, &'n str)> = None;
    for rule in rules {
        let Some(rest) = path.strip_prefix(rule.from) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('.')) {
            continue;
        }
        if best.is_none_or(|(b, _)| rule.from.len() > b.from.len()) {
            best = Some((rule, rest));
        }
    }
    best
}

/// `{N}.{tail}` after a stack path: the layer index (ASCII digits) and a non-empty tail.
fn layer_index(after_stack: &str) -> Option<(&str, &str)> {
    let digits = after_stack.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    // `digits` ASCII bytes: a char boundary.
    let (n, rest) = after_stack.split_at(digits);
    let tail = rest.strip_prefix('.')?;
    (!tail.is_empty()).then_some((n, tail))
}

fn read(name: &str) -> Reading<'_> {
    for container in CONTAINERS {
        let Some(rest) = name.strip_prefix(container.prefix) else {
            continue;
        };
        let body = container.body;
        for stack in body.stacks {
            let Some((layer, tail)) = rest.strip_prefix(stack).and_then(layer_index) else {
                continue;
            };
            if let Some((rule, rest)) = longest(body.layer, tail) {
                return Reading::Rule {
                    convention: body.convention,
                    tower: container.tower,
                    layer: Some(layer),
                    rule,
                    rest,
                };
            }
        }
        if let Some((rule, rest)) = longest(body.unlayered, rest) {
            return Reading::Rule {
                convention: body.convention,
                tower: container.tower,
                layer: None,
                rule,
                rest,
            };
        }
    }
    // A known stack with a role no rule knows.
    for container in CONTAINERS {
        let Some(rest) = name.strip_prefix(container.prefix) else {
            continue;
        };
        for stack in container.body.stacks {
            if let Some((layer, tail)) = rest.strip_prefix(stack).and_then(layer_index) {
                return Reading::UnknownRole {
                    convention: container.body.convention,
                    tower: container.tower,
                    layer,
                    tail,
                };
            }
        }
    }
    generic(name)
}

/// Layer words of the generic rule (`plan::layer_and_class` knows the same words, and
/// open_clip's `resblocks`).
fn layer_word_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A constant pattern, compiled by every test that normalises a name: it cannot fail at
    // run time, whatever the input.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| {
        Regex::new(r"^(?:(.+?)\.)??(?:layers|layer|blocks|blk|h|resblocks)\.([0-9]+)\.(.+)$")
            .expect("constant layer-word regex compiles")
    })
}

/// A numeric segment after a non-empty stack path (`encoder.0.weight`).
fn numbered_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A constant pattern, as above.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| {
        Regex::new(r"^(.+?)\.([0-9]+)\.(.+)$").expect("constant numbered-segment regex compiles")
    })
}

fn generic(name: &str) -> Reading<'static> {
    let caps = layer_word_regex()
        .captures(name)
        .or_else(|| numbered_regex().captures(name));
    let canonical = caps.and_then(|caps| {
        let layer = caps.get(2)?.as_str();
        let rest = caps.get(3)?.as_str();
        Some(match caps.get(1) {
            Some(stack) => format!("{}.layers.{layer}.{rest}", stack.as_str()),
            None => format!("layers.{layer}.{rest}"),
        })
    });
    match canonical {
        Some(canonical) if canonical != name => Reading::Verbatim {
            canonical,
            convention: &GENERIC,
        },
        _ => Reading::Verbatim {
            canonical: name.to_owned(),
            convention: &NONE,
        },
    }
}

/// The canonical role of `rule`, or of one of its parts: the fused segment replaced.
fn role_of(rule: &Rule, sandwich: bool, part: Option<PartKind>) -> String {
    let role = match (sandwich, rule.sandwich) {
        (true, Some(alt)) => alt,
        _ => rule.to,
    };
    let Some(part) = part else {
        return role.to_owned();
    };
    let (segment, _) = rule.fusion.parts();
    let mut replaced = false;
    role.split('.')
        .map(|s| {
            if !replaced && s == segment {
                replaced = true;
                part.as_str()
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Writes a reading out: (canonical name, convention name).
fn render(reading: &Reading<'_>, sandwich: bool, part: Option<&str>) -> (String, &'static str) {
    let (mut canonical, convention, known_part) = match reading {
        Reading::Rule {
            convention,
            tower,
            layer,
            rule,
            rest,
        } => {
            let (_, kinds) = rule.fusion.parts();
            let kind = part.and_then(|p| kinds.iter().copied().find(|k| k.as_str() == p));
            let role = role_of(rule, sandwich, kind);
            let tower = rule.tower.unwrap_or(*tower).as_str();
            // A bare parameter reads as its role's weight (module doc).
            let leaf = if rest.is_empty() && !(role.ends_with(".weight") || role.ends_with(".bias"))
            {
                ".weight"
            } else {
                rest
            };
            let canonical = match layer {
                Some(n) => format!("{tower}.layers.{n}.{role}{leaf}"),
                None => format!("{tower}.{role}{leaf}"),
            };
            (canonical, convention.name, kind.is_some())
        }
        Reading::UnknownRole {
            convention,
            tower,
            layer,
            tail,
        } => (
            format!("{}.layers.{layer}.{tail}", tower.as_str()),
            convention.name,
            false,
        ),
        Reading::Verbatim {
            canonical,
            convention,
        } => (canonical.clone(), convention.name, false),
    };
    if let (Some(part), false) = (part, known_part) {
        canonical.push('#');
        canonical.push_str(part);
    }
    (canonical, convention)
}

// ---- Fused tensors -----------------------------------------------------------------------

/// Which canonical tensor a part of a fused tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
    /// MLP gate.
    Gate,
    /// MLP up projection.
    Up,
}

impl PartKind {
    /// The suffix of the part's virtual name (`#q`), and the segment it puts in the role.
    pub const fn as_str(self) -> &'static str {
        match self {
            PartKind::Q => "q",
            PartKind::K => "k",
            PartKind::V => "v",
            PartKind::Gate => "gate",
            PartKind::Up => "up",
        }
    }
}

/// A contiguous range along the split axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First index along the axis.
    pub start: usize,
    /// Number of indices.
    pub len: usize,
}

/// One part of a fused tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Virtual tensor name: `{original name}#{kind}`; [`normalise`] reads it as the part's role.
    pub name: String,
    /// Which part.
    pub kind: PartKind,
    /// Its ranges along [`Split::axis`], in order; the part is their concatenation. One span
    /// for contiguous layouts, one per query group for interleaved ones.
    pub spans: Vec<Span>,
}

impl Part {
    /// The part's size along the split axis.
    pub fn len(&self) -> usize {
        self.spans.iter().map(|s| s.len).sum()
    }

    /// Whether the part is empty (never, for a split [`fused`] returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fused tensor's documented layout: how to split it into parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The axis the parts are taken along: 0 = rows (dim 0), 1 = columns (dim 1: a GPT-2
    /// `Conv1D` weight stores `[in, out]`). Biases always split along 0.
    pub axis: usize,
    /// The parts, in storage order of their first span.
    pub parts: Vec<Part>,
}

/// Attention head counts, where the config gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub q: usize,
    /// Key/value heads (query groups); equal to `q` without GQA.
    pub kv: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl fmt::Display for Heads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(q = {}, kv = {}, head_dim = {})",
            self.q, self.kv, self.head_dim
        )
    }
}

/// What [`fused`] may be told about the model beyond one tensor's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// Head counts: needed for interleaved q/k/v, and for contiguous q/k/v whose query width
    /// is not the model width.
    pub heads: Option<Heads>,
    /// The MLP's intermediate size f: needed where a name is `[2·f, d]` when gated and
    /// `[f, d]` when not (Megatron `linear_fc1`; the input width of `linear_fc2` gives it).
    pub ffn: Option<usize>,
}

/// What a split expected of a fused axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// q + 2·kv rows with q = d, kv a positive whole number.
    QkvAround {
        /// The model width d.
        d: usize,
    },
    /// Two equal, non-empty halves.
    Halves,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::QkvAround { d } => write!(
                f,
                "q + 2·kv with q = d = {d} and kv a positive whole number (give head counts \
                 if q is not d)"
            ),
            Expected::Halves => write!(f, "two equal, non-empty halves (gate, then up)"),
        }
    }
}

/// Why a known fused tensor cannot be split as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FusedProblem {
    /// The fused axis is not a size the layout can take.
    #[error(
        "fused tensor `{name}` {shape:?}: {len} along axis {axis} does not divide into {expected}"
    )]
    DoesNotDivide {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The fused axis.
        axis: usize,
        /// Its size.
        len: usize,
        /// What it should have been.
        expected: Expected,
    },
    /// Per-head interleaved q/k/v: the parts cannot be found without head counts.
    #[error(
        "fused tensor `{name}` {shape:?} interleaves q, k and v per head ({convention}): give \
         the head counts (query heads, key/value heads, head width) to split it"
    )]
    Interleaved {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The convention that interleaves.
        convention: &'static str,
    },
    /// The head counts do not fit the tensor.
    #[error(
        "fused tensor `{name}` {shape:?}: head counts {heads} need {} along axis {axis}, it \
         has {len} (all counts must be positive and kv must divide q)",
        heads_len(.heads).map_or_else(|| "more than fits in memory".to_owned(), |n| n.to_string())
    )]
    HeadsMismatch {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The fused axis.
        axis: usize,
        /// Its size.
        len: usize,
        /// The hint that does not fit.
        heads: Heads,
    },
    /// Gated or not cannot be told from the name.
    #[error(
        "fused tensor `{name}` {shape:?}: gated MLPs store gate and up here (2·f rows), \
         ungated ones only up (f rows); give the MLP's intermediate size f to decide"
    )]
    Ambiguous {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The intermediate size does not fit the tensor.
    #[error("fused tensor `{name}` {shape:?}: {len} rows are neither f = {ffn} nor 2·f")]
    FfnMismatch {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Its row count.
        len: usize,
        /// The hint.
        ffn: usize,
    },
    /// A fused bias without the weight shape (or head counts) that says where q ends.
    #[error(
        "fused bias `{name}` {shape:?}: the fused weight's shape (or the head counts) is \
         needed to know where q ends"
    )]
    NeedsWeight {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A fused bias that does not go with the weight shape given.
    #[error("fused bias `{name}` {shape:?} does not go with its weight's shape {weight_shape:?}")]
    WeightMismatch {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The weight shape given.
        weight_shape: Vec<usize>,
    },
    /// Neither a 2-D weight nor a 1-D bias.
    #[error("fused tensor `{name}` {shape:?}: a fused weight is 2-D and its bias 1-D")]
    Rank {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
}

/// `(q + 2·kv)·head_dim`, if it fits.
fn heads_len(heads: &Heads) -> Option<usize> {
    heads
        .kv
        .checked_mul(2)
        .and_then(|kv2| kv2.checked_add(heads.q))
        .and_then(|n| n.checked_mul(heads.head_dim))
}

/// How a fused tensor of a known convention splits. `Ok(None)` when `name` is not a known
/// fused tensor (or is already a part, `…#q`), and for an ungated `[f, d]` Megatron
/// `linear_fc1`. `shape` is the tensor's; `weight_shape` is the fused weight's shape when
/// `name` is its bias (a `[q + 2·kv]` bias needs d from the weight). Sizes that do not fit
/// the layout are a [`FusedProblem`] naming the tensor, its shape and what was expected.
pub fn fused(
    name: &str,
    shape: &[usize],
    weight_shape: Option<&[usize]>,
    hints: Hints,
) -> Result<Option<Split>, FusedProblem> {
    if split_part(name).1.is_some() {
        return Ok(None);
    }
    let (stripped, _) = strip_wrappers(name);
    let (fusion, convention_name, is_bias, is_weight) = match read(&stripped) {
        Reading::Rule {
            convention,
            rule,
            rest,
            ..
        } => (
            rule.fusion,
            convention.name,
            rest == ".bias" || (rest.is_empty() && rule.to.ends_with(".bias")),
            rest == ".weight" || (rest.is_empty() && rule.to.ends_with(".weight")),
        ),
        _ => {
            // No convention knows the name: a module whose own name documents a fused
            // layout (timm's `blocks.N.attn.qkv`) is still split.
            let Some((module, leaf)) = stripped.rsplit_once('.') else {
                return Ok(None);
            };
            let module = module.rsplit('.').next().unwrap_or(module);
            let Some(&(_, fusion)) = GENERIC_FUSED.iter().find(|(m, _)| *m == module) else {
                return Ok(None);
            };
            (fusion, "generic", leaf == "bias", leaf == "weight")
        }
    };
    if fusion == Fusion::No || !(is_bias || is_weight) {
        return Ok(None);
    }
    let owned = || (name.to_owned(), shape.to_vec());
    if shape.len() != if is_bias { 1 } else { 2 } {
        let (name, shape) = owned();
        return Err(FusedProblem::Rank { name, shape });
    }
    // The fused axis, and the model width d the weight reads (its other axis).
    let (axis, len, d) = match (fusion, is_bias) {
        (Fusion::QkvColumns, false) => (1, shape[1], Some(shape[0])),
        (_, false) => (0, shape[0], Some(shape[1])),
        (fusion, true) => {
            let d = match weight_shape {
                None => None,
                Some(w) => {
                    // The weight's fused axis must match the bias.
                    let fused_and_width = match (fusion, w) {
                        (Fusion::QkvColumns, [d, n]) => Some((*n, *d)),
                        (_, [n, d]) => Some((*n, *d)),
                        _ => None,
                    };
                    match fused_and_width {
                        Some((n, d)) if n == shape[0] => Some(d),
                        _ => {
                            let (name, shape) = owned();
                            return Err(FusedProblem::WeightMismatch {
                                name,
                                shape,
                                weight_shape: w.to_vec(),
                            });
                        }
                    }
                }
            };
            (0, shape[0], d)
        }
    };
    let parts = match fusion {
        Fusion::No => return Ok(None),
        Fusion::QkvRows | Fusion::QkvColumns => {
            let (q, kv) = match hints.heads {
                Some(heads) => {
                    let q = heads.q.checked_mul(heads.head_dim);
                    let kv = heads.kv.checked_mul(heads.head_dim);
                    match (q, kv, heads_len(&heads)) {
                        (Some(q), Some(kv), Some(total)) if total == len && q > 0 && kv > 0 => {
                            (q, kv)
                        }
                        _ => {
                            let (name, shape) = owned();
                            return Err(FusedProblem::HeadsMismatch {
                                name,
                                shape,
                                axis,
                                len,
                                heads,
                            });
                        }
                    }
                }
                None => {
                    let Some(d) = d else {
                        let (name, shape) = owned();
                        return Err(FusedProblem::NeedsWeight { name, shape });
                    };
                    let kv2 = len.checked_sub(d).filter(|_| d > 0);
                    match kv2 {
                        Some(kv2) if kv2 > 0 && kv2 % 2 == 0 => (d, kv2 / 2),
                        _ => {
                            let (name, shape) = owned();
                            return Err(FusedProblem::DoesNotDivide {
                                name,
                                shape,
                                axis,
                                len,
                                expected: Expected::QkvAround { d },
                            });
                        }
                    }
                }
            };
            vec![
                (PartKind::Q, vec![Span { start: 0, len: q }]),
                (PartKind::K, vec![Span { start: q, len: kv }]),
                (
                    PartKind::V,
                    vec![Span {
                        start: q + kv,
                        len: kv,
                    }],
                ),
            ]
        }
        Fusion::QkvInterleaved => {
            let Some(heads) = hints.heads else {
                let (name, shape) = owned();
                return Err(FusedProblem::Interleaved {
                    name,
                    shape,
                    convention: convention_name,
                });
            };
            let valid = heads.kv > 0
                && heads.head_dim > 0
                && heads.q % heads.kv == 0
                && heads.q > 0
                && heads_len(&heads) == Some(len);
            if !valid {
                let (name, shape) = owned();
                return Err(FusedProblem::HeadsMismatch {
                    name,
                    shape,
                    axis,
                    len,
                    heads,
                });
            }
            // (q/kv + 2)·head_dim per group fits: the total did.
            let hd = heads.head_dim;
            let q_per_group = heads.q / heads.kv * hd;
            let group = q_per_group + 2 * hd;
            let spans = |offset: usize, width: usize| -> Vec<Span> {
                (0..heads.kv)
                    .map(|g| Span {
                        start: g * group + offset,
                        len: width,
                    })
                    .collect()
            };
            vec![
                (PartKind::Q, spans(0, q_per_group)),
                (PartKind::K, spans(q_per_group, hd)),
                (PartKind::V, spans(q_per_group + hd, hd)),
            ]
        }
        Fusion::GateUpRows | Fusion::MaybeGateUpRows => {
            let gated = fusion == Fusion::GateUpRows;
            let f = match hints.ffn {
                Some(ffn) if !gated && len == ffn => return Ok(None),
                Some(ffn) if ffn.checked_mul(2) == Some(len) && ffn > 0 => ffn,
                Some(ffn) => {
                    let (name, shape) = owned();
                    return Err(FusedProblem::FfnMismatch {
                        name,
                        shape,
                        len,
                        ffn,
                    });
                }
                None if !gated => {
                    let (name, shape) = owned();
                    return Err(FusedProblem::Ambiguous { name, shape });
                }
                None if len > 0 && len % 2 == 0 => len / 2,
                None => {
                    let (name, shape) = owned();
                    return Err(FusedProblem::DoesNotDivide {
                        name,
                        shape,
                        axis,
                        len,
                        expected: Expected::Halves,
                    });
                }
            };
            vec![
                (PartKind::Gate, vec![Span { start: 0, len: f }]),
                (PartKind::Up, vec![Span { start: f, len: f }]),
            ]
        }
    };
    Ok(Some(Split {
        axis,
        parts: parts
            .into_iter()
            .map(|(kind, spans)| Part {
                name: format!("{name}#{}", kind.as_str()),
                kind,
                spans,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use std::collections::BTreeSet;

    /// (real tensor name, canonical name, convention): one row per pair.
    #[rustfmt::skip]
    const CASES: &[(&str, &str, &str)] = &[
        // Llama / Mistral / Qwen2 / Qwen3 (`LlamaForCausalLM` layout).
        ("model.embed_tokens.weight", "text.embed.weight", "hf-decoder"),
        ("model.layers.0.input_layernorm.weight", "text.layers.0.norm.attn.weight", "hf-decoder"),
        ("model.layers.0.self_attn.q_proj.weight", "text.layers.0.attn.q.weight", "hf-decoder"),
        ("model.layers.0.self_attn.k_proj.weight", "text.layers.0.attn.k.weight", "hf-decoder"),
        ("model.layers.0.self_attn.v_proj.weight", "text.layers.0.attn.v.weight", "hf-decoder"),
        ("model.layers.0.self_attn.o_proj.weight", "text.layers.0.attn.o.weight", "hf-decoder"),
        ("model.layers.0.post_attention_layernorm.weight", "text.layers.0.norm.mlp.weight", "hf-decoder"),
        ("model.layers.0.mlp.gate_proj.weight", "text.layers.0.mlp.gate.weight", "hf-decoder"),
        ("model.layers.0.mlp.up_proj.weight", "text.layers.0.mlp.up.weight", "hf-decoder"),
        ("model.layers.0.mlp.down_proj.weight", "text.layers.0.mlp.down.weight", "hf-decoder"),
        ("model.norm.weight", "text.norm.weight", "hf-decoder"),
        ("lm_head.weight", "text.lm_head.weight", "hf-decoder"),
        ("model.layers.27.self_attn.q_proj.bias", "text.layers.27.attn.q.bias", "hf-decoder"),
        ("model.layers.3.self_attn.q_norm.weight", "text.layers.3.attn.q_norm.weight", "hf-decoder"),
        ("model.layers.3.self_attn.k_norm.weight", "text.layers.3.attn.k_norm.weight", "hf-decoder"),
        ("model.layers.0.mlp.experts.3.gate_proj.weight", "text.layers.0.mlp.experts.3.gate_proj.weight", "hf-decoder"),
        // Gemma 2/3 norms read alone (normalise_all reads post_attention_layernorm in context).
        ("model.layers.5.pre_feedforward_layernorm.weight", "text.layers.5.norm.mlp.weight", "hf-decoder"),
        ("model.layers.5.post_feedforward_layernorm.weight", "text.layers.5.norm.mlp_post.weight", "hf-decoder"),
        // Phi-3.
        ("model.layers.1.self_attn.qkv_proj.weight", "text.layers.1.attn.qkv.weight", "hf-decoder"),
        ("model.layers.1.mlp.gate_up_proj.weight", "text.layers.1.mlp.gate_up.weight", "hf-decoder"),
        // Bare `Qwen3Model` (embedding models).
        ("layers.2.self_attn.q_proj.weight", "text.layers.2.attn.q.weight", "hf-decoder"),
        ("embed_tokens.weight", "text.embed.weight", "hf-decoder"),
        // LLaVA (old transformers layout).
        ("language_model.model.layers.0.self_attn.q_proj.weight", "text.layers.0.attn.q.weight", "hf-decoder"),
        ("language_model.model.embed_tokens.weight", "text.embed.weight", "hf-decoder"),
        ("language_model.model.norm.weight", "text.norm.weight", "hf-decoder"),
        ("language_model.lm_head.weight", "text.lm_head.weight", "hf-decoder"),
        ("vision_tower.vision_model.encoder.layers.23.self_attn.k_proj.bias", "vision.layers.23.attn.k.bias", "hf-clip"),
        ("vision_tower.vision_model.embeddings.patch_embedding.weight", "vision.patch_embed.weight", "hf-clip"),
        ("vision_tower.vision_model.post_layernorm.weight", "vision.norm.weight", "hf-clip"),
        ("multi_modal_projector.linear_1.weight", "projector.fc1.weight", "hf-projector"),
        ("multi_modal_projector.linear_2.bias", "projector.fc2.bias", "hf-projector"),
        // transformers ≥ 4.52 VLM layout.
        ("model.language_model.layers.2.mlp.up_proj.weight", "text.layers.2.mlp.up.weight", "hf-decoder"),
        ("model.language_model.embed_tokens.weight", "text.embed.weight", "hf-decoder"),
        ("model.language_model.norm.weight", "text.norm.weight", "hf-decoder"),
        ("model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "vision.layers.0.mlp.up.weight", "hf-clip"),
        ("model.multi_modal_projector.linear_1.weight", "projector.fc1.weight", "hf-projector"),
        ("model.visual.blocks.0.attn.qkv.weight", "vision.layers.0.attn.qkv.weight", "qwen-vl"),
        // Gemma 3 (multimodal).
        ("language_model.model.layers.0.pre_feedforward_layernorm.weight", "text.layers.0.norm.mlp.weight", "hf-decoder"),
        ("vision_tower.vision_model.encoder.layers.0.layer_norm1.weight", "vision.layers.0.norm.attn.weight", "hf-clip"),
        ("multi_modal_projector.mm_input_projection_weight", "projector.fc1.weight", "hf-projector"),
        ("multi_modal_projector.mm_soft_emb_norm.weight", "projector.norm.weight", "hf-projector"),
        // Idefics3 / SmolVLM.
        ("model.text_model.layers.0.self_attn.q_proj.weight", "text.layers.0.attn.q.weight", "hf-decoder"),
        ("model.vision_model.encoder.layers.0.self_attn.q_proj.weight", "vision.layers.0.attn.q.weight", "hf-clip"),
        ("model.vision_model.post_layernorm.weight", "vision.norm.weight", "hf-clip"),
        ("model.connector.modality_projection.proj.weight", "projector.fc1.weight", "hf-projector"),
        // GPT-2.
        ("transformer.wte.weight", "text.embed.weight", "hf-gpt2"),
        ("transformer.wpe.weight", "text.pos_embed.weight", "hf-gpt2"),
        ("transformer.h.0.ln_1.weight", "text.layers.0.norm.attn.weight", "hf-gpt2"),
        ("transformer.h.0.attn.c_attn.weight", "text.layers.0.attn.qkv.weight", "hf-gpt2"),
        ("transformer.h.0.attn.c_attn.bias", "text.layers.0.attn.qkv.bias", "hf-gpt2"),
        ("transformer.h.0.attn.c_proj.weight", "text.layers.0.attn.o.weight", "hf-gpt2"),
        ("transformer.h.0.ln_2.weight", "text.layers.0.norm.mlp.weight", "hf-gpt2"),
        ("transformer.h.0.mlp.c_fc.weight", "text.layers.0.mlp.up.weight", "hf-gpt2"),
        ("transformer.h.0.mlp.c_proj.weight", "text.layers.0.mlp.down.weight", "hf-gpt2"),
        ("transformer.ln_f.weight", "text.norm.weight", "hf-gpt2"),
        ("h.11.attn.c_attn.weight", "text.layers.11.attn.qkv.weight", "hf-gpt2"),
        // GPT-NeoX / Pythia.
        ("gpt_neox.embed_in.weight", "text.embed.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.input_layernorm.weight", "text.layers.0.norm.attn.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.post_attention_layernorm.weight", "text.layers.0.norm.mlp.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.attention.query_key_value.weight", "text.layers.0.attn.qkv.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.attention.dense.weight", "text.layers.0.attn.o.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "text.layers.0.mlp.up.weight", "hf-gpt-neox"),
        ("gpt_neox.layers.0.mlp.dense_4h_to_h.weight", "text.layers.0.mlp.down.weight", "hf-gpt-neox"),
        ("gpt_neox.final_layer_norm.weight", "text.norm.weight", "hf-gpt-neox"),
        ("embed_out.weight", "text.lm_head.weight", "hf-gpt-neox"),
        // BERT (the all-MiniLM-L6-v2 fixture's names) and `BertForMaskedLM`.
        ("embeddings.word_embeddings.weight", "text.embed.weight", "hf-bert"),
        ("embeddings.position_embeddings.weight", "text.pos_embed.weight", "hf-bert"),
        ("embeddings.token_type_embeddings.weight", "text.type_embed.weight", "hf-bert"),
        ("embeddings.LayerNorm.weight", "text.norm.embed.weight", "hf-bert"),
        ("encoder.layer.0.attention.self.query.weight", "text.layers.0.attn.q.weight", "hf-bert"),
        ("encoder.layer.0.attention.self.key.weight", "text.layers.0.attn.k.weight", "hf-bert"),
        ("encoder.layer.0.attention.self.value.weight", "text.layers.0.attn.v.weight", "hf-bert"),
        ("encoder.layer.0.attention.output.dense.weight", "text.layers.0.attn.o.weight", "hf-bert"),
        ("encoder.layer.0.attention.output.LayerNorm.weight", "text.layers.0.norm.attn_post.weight", "hf-bert"),
        ("encoder.layer.0.intermediate.dense.weight", "text.layers.0.mlp.up.weight", "hf-bert"),
        ("encoder.layer.0.output.dense.weight", "text.layers.0.mlp.down.weight", "hf-bert"),
        ("encoder.layer.0.output.LayerNorm.bias", "text.layers.0.norm.mlp_post.bias", "hf-bert"),
        ("pooler.dense.weight", "text.pool.weight", "hf-bert"),
        ("bert.encoder.layer.3.attention.self.query.bias", "text.layers.3.attn.q.bias", "hf-bert"),
        ("bert.embeddings.word_embeddings.weight", "text.embed.weight", "hf-bert"),
        // CLIP.
        ("vision_model.embeddings.class_embedding", "vision.cls_token.weight", "hf-clip"),
        ("vision_model.embeddings.patch_embedding.weight", "vision.patch_embed.weight", "hf-clip"),
        ("vision_model.embeddings.position_embedding.weight", "vision.pos_embed.weight", "hf-clip"),
        ("vision_model.pre_layrnorm.weight", "vision.norm.pre.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.layer_norm1.weight", "vision.layers.0.norm.attn.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.self_attn.q_proj.weight", "vision.layers.0.attn.q.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.self_attn.k_proj.weight", "vision.layers.0.attn.k.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.self_attn.v_proj.weight", "vision.layers.0.attn.v.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.self_attn.out_proj.weight", "vision.layers.0.attn.o.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.layer_norm2.weight", "vision.layers.0.norm.mlp.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.mlp.fc1.weight", "vision.layers.0.mlp.up.weight", "hf-clip"),
        ("vision_model.encoder.layers.0.mlp.fc2.bias", "vision.layers.0.mlp.down.bias", "hf-clip"),
        ("vision_model.post_layernorm.weight", "vision.norm.weight", "hf-clip"),
        ("visual_projection.weight", "vision.proj.weight", "hf-clip"),
        ("text_model.embeddings.token_embedding.weight", "text.embed.weight", "hf-clip"),
        ("text_model.embeddings.position_embedding.weight", "text.pos_embed.weight", "hf-clip"),
        ("text_model.encoder.layers.11.self_attn.q_proj.weight", "text.layers.11.attn.q.weight", "hf-clip"),
        ("text_model.final_layer_norm.weight", "text.norm.weight", "hf-clip"),
        ("text_projection.weight", "text.proj.weight", "hf-clip"),
        // SigLIP / SigLIP2.
        ("vision_model.head.probe", "vision.pool.probe.weight", "hf-clip"),
        ("vision_model.head.attention.in_proj_weight", "vision.pool.attn.qkv.weight", "hf-clip"),
        ("vision_model.head.attention.in_proj_bias", "vision.pool.attn.qkv.bias", "hf-clip"),
        ("vision_model.head.attention.out_proj.weight", "vision.pool.attn.o.weight", "hf-clip"),
        ("vision_model.head.layernorm.weight", "vision.pool.norm.weight", "hf-clip"),
        ("vision_model.head.mlp.fc1.weight", "vision.pool.mlp.up.weight", "hf-clip"),
        ("vision_model.head.mlp.fc2.weight", "vision.pool.mlp.down.weight", "hf-clip"),
        ("text_model.head.weight", "text.proj.weight", "hf-clip"),
        // Whisper.
        ("model.encoder.conv1.weight", "audio.conv1.weight", "hf-whisper"),
        ("model.encoder.conv2.bias", "audio.conv2.bias", "hf-whisper"),
        ("model.encoder.embed_positions.weight", "audio.pos_embed.weight", "hf-whisper"),
        ("model.encoder.layers.0.self_attn_layer_norm.weight", "audio.layers.0.norm.attn.weight", "hf-whisper"),
        ("model.encoder.layers.0.self_attn.q_proj.weight", "audio.layers.0.attn.q.weight", "hf-whisper"),
        ("model.encoder.layers.0.self_attn.k_proj.weight", "audio.layers.0.attn.k.weight", "hf-whisper"),
        ("model.encoder.layers.0.self_attn.v_proj.weight", "audio.layers.0.attn.v.weight", "hf-whisper"),
        ("model.encoder.layers.0.self_attn.out_proj.weight", "audio.layers.0.attn.o.weight", "hf-whisper"),
        ("model.encoder.layers.0.final_layer_norm.weight", "audio.layers.0.norm.mlp.weight", "hf-whisper"),
        ("model.encoder.layers.0.fc1.weight", "audio.layers.0.mlp.up.weight", "hf-whisper"),
        ("model.encoder.layers.0.fc2.weight", "audio.layers.0.mlp.down.weight", "hf-whisper"),
        ("model.encoder.layer_norm.weight", "audio.norm.weight", "hf-whisper"),
        ("model.decoder.embed_tokens.weight", "decoder.embed.weight", "hf-whisper"),
        ("model.decoder.embed_positions.weight", "decoder.pos_embed.weight", "hf-whisper"),
        ("model.decoder.layers.1.self_attn.q_proj.weight", "decoder.layers.1.attn.q.weight", "hf-whisper"),
        ("model.decoder.layers.1.encoder_attn_layer_norm.weight", "decoder.layers.1.norm.xattn.weight", "hf-whisper"),
        ("model.decoder.layers.1.encoder_attn.q_proj.weight", "decoder.layers.1.xattn.q.weight", "hf-whisper"),
        ("model.decoder.layers.1.encoder_attn.k_proj.weight", "decoder.layers.1.xattn.k.weight", "hf-whisper"),
        ("model.decoder.layers.1.encoder_attn.v_proj.weight", "decoder.layers.1.xattn.v.weight", "hf-whisper"),
        ("model.decoder.layers.1.encoder_attn.out_proj.weight", "decoder.layers.1.xattn.o.weight", "hf-whisper"),
        ("model.decoder.layer_norm.weight", "decoder.norm.weight", "hf-whisper"),
        ("proj_out.weight", "decoder.lm_head.weight", "hf-whisper"),
        // Qwen2-Audio.
        ("audio_tower.conv1.weight", "audio.conv1.weight", "hf-whisper"),
        ("audio_tower.embed_positions.weight", "audio.pos_embed.weight", "hf-whisper"),
        ("audio_tower.layers.31.self_attn.q_proj.weight", "audio.layers.31.attn.q.weight", "hf-whisper"),
        ("audio_tower.layers.31.final_layer_norm.weight", "audio.layers.31.norm.mlp.weight", "hf-whisper"),
        ("audio_tower.layer_norm.weight", "audio.norm.weight", "hf-whisper"),
        ("multi_modal_projector.linear.weight", "projector.fc1.weight", "hf-projector"),
        ("language_model.model.layers.0.mlp.gate_proj.weight", "text.layers.0.mlp.gate.weight", "hf-decoder"),
        // Qwen2-VL visual tower and merger.
        ("visual.patch_embed.proj.weight", "vision.patch_embed.weight", "qwen-vl"),
        ("visual.blocks.0.norm1.weight", "vision.layers.0.norm.attn.weight", "qwen-vl"),
        ("visual.blocks.0.attn.qkv.weight", "vision.layers.0.attn.qkv.weight", "qwen-vl"),
        ("visual.blocks.0.attn.qkv.bias", "vision.layers.0.attn.qkv.bias", "qwen-vl"),
        ("visual.blocks.0.attn.proj.weight", "vision.layers.0.attn.o.weight", "qwen-vl"),
        ("visual.blocks.0.norm2.weight", "vision.layers.0.norm.mlp.weight", "qwen-vl"),
        ("visual.blocks.0.mlp.fc1.weight", "vision.layers.0.mlp.up.weight", "qwen-vl"),
        ("visual.blocks.0.mlp.fc2.weight", "vision.layers.0.mlp.down.weight", "qwen-vl"),
        ("visual.merger.ln_q.weight", "vision.norm.weight", "qwen-vl"),
        ("visual.merger.mlp.0.weight", "projector.fc1.weight", "qwen-vl"),
        ("visual.merger.mlp.2.weight", "projector.fc2.weight", "qwen-vl"),
        // Qwen2.5-VL (gated vision MLP) and Qwen3-VL.
        ("visual.blocks.7.mlp.gate_proj.weight", "vision.layers.7.mlp.gate.weight", "qwen-vl"),
        ("visual.blocks.7.mlp.up_proj.weight", "vision.layers.7.mlp.up.weight", "qwen-vl"),
        ("visual.blocks.7.mlp.down_proj.weight", "vision.layers.7.mlp.down.weight", "qwen-vl"),
        ("model.visual.blocks.7.mlp.linear_fc1.weight", "vision.layers.7.mlp.up.weight", "qwen-vl"),
        ("model.visual.pos_embed.weight", "vision.pos_embed.weight", "qwen-vl"),
        ("model.visual.merger.norm.weight", "vision.norm.weight", "qwen-vl"),
        ("model.visual.merger.linear_fc2.weight", "projector.fc2.weight", "qwen-vl"),
        // open_clip.
        ("visual.conv1.weight", "vision.patch_embed.weight", "open-clip"),
        ("visual.class_embedding", "vision.cls_token.weight", "open-clip"),
        ("visual.positional_embedding", "vision.pos_embed.weight", "open-clip"),
        ("visual.ln_pre.weight", "vision.norm.pre.weight", "open-clip"),
        ("visual.transformer.resblocks.0.ln_1.weight", "vision.layers.0.norm.attn.weight", "open-clip"),
        ("visual.transformer.resblocks.0.attn.in_proj_weight", "vision.layers.0.attn.qkv.weight", "open-clip"),
        ("visual.transformer.resblocks.0.attn.in_proj_bias", "vision.layers.0.attn.qkv.bias", "open-clip"),
        ("visual.transformer.resblocks.0.attn.out_proj.weight", "vision.layers.0.attn.o.weight", "open-clip"),
        ("visual.transformer.resblocks.0.ln_2.weight", "vision.layers.0.norm.mlp.weight", "open-clip"),
        ("visual.transformer.resblocks.0.mlp.c_fc.weight", "vision.layers.0.mlp.up.weight", "open-clip"),
        ("visual.transformer.resblocks.0.mlp.c_proj.weight", "vision.layers.0.mlp.down.weight", "open-clip"),
        ("visual.ln_post.weight", "vision.norm.weight", "open-clip"),
        ("visual.proj", "vision.proj.weight", "open-clip"),
        ("token_embedding.weight", "text.embed.weight", "open-clip"),
        ("positional_embedding", "text.pos_embed.weight", "open-clip"),
        ("transformer.resblocks.3.attn.in_proj_weight", "text.layers.3.attn.qkv.weight", "open-clip"),
        ("ln_final.weight", "text.norm.weight", "open-clip"),
        // llama.cpp GGUF, as written by convert_hf_to_gguf.py.
        ("token_embd.weight", "text.embed.weight", "gguf"),
        ("blk.0.attn_norm.weight", "text.layers.0.norm.attn.weight", "gguf"),
        ("blk.0.attn_q.weight", "text.layers.0.attn.q.weight", "gguf"),
        ("blk.0.attn_k.weight", "text.layers.0.attn.k.weight", "gguf"),
        ("blk.0.attn_v.weight", "text.layers.0.attn.v.weight", "gguf"),
        ("blk.0.attn_output.weight", "text.layers.0.attn.o.weight", "gguf"),
        ("blk.0.attn_qkv.weight", "text.layers.0.attn.qkv.weight", "gguf"),
        ("blk.0.attn_q_norm.weight", "text.layers.0.attn.q_norm.weight", "gguf"),
        ("blk.0.attn_k_norm.weight", "text.layers.0.attn.k_norm.weight", "gguf"),
        ("blk.0.post_attention_norm.weight", "text.layers.0.norm.attn_post.weight", "gguf"),
        ("blk.0.ffn_norm.weight", "text.layers.0.norm.mlp.weight", "gguf"),
        ("blk.0.post_ffw_norm.weight", "text.layers.0.norm.mlp_post.weight", "gguf"),
        ("blk.0.ffn_gate.weight", "text.layers.0.mlp.gate.weight", "gguf"),
        ("blk.0.ffn_up.weight", "text.layers.0.mlp.up.weight", "gguf"),
        ("blk.0.ffn_down.weight", "text.layers.0.mlp.down.weight", "gguf"),
        ("blk.4.attn_output_norm.bias", "text.layers.4.norm.attn_post.bias", "gguf"),
        ("blk.4.layer_output_norm.weight", "text.layers.4.norm.mlp_post.weight", "gguf"),
        ("token_types.weight", "text.type_embed.weight", "gguf"),
        ("position_embd.weight", "text.pos_embed.weight", "gguf"),
        ("token_embd_norm.weight", "text.norm.embed.weight", "gguf"),
        ("output_norm.weight", "text.norm.weight", "gguf"),
        ("output.weight", "text.lm_head.weight", "gguf"),
        // llama.cpp mmproj (clip.cpp).
        ("v.patch_embd.weight", "vision.patch_embed.weight", "gguf-mmproj"),
        ("v.patch_embd.weight.1", "vision.patch_embed.weight.1", "gguf-mmproj"),
        ("v.position_embd.weight", "vision.pos_embed.weight", "gguf-mmproj"),
        ("v.class_embd", "vision.cls_token.weight", "gguf-mmproj"),
        ("v.pre_ln.weight", "vision.norm.pre.weight", "gguf-mmproj"),
        ("v.blk.0.ln1.weight", "vision.layers.0.norm.attn.weight", "gguf-mmproj"),
        ("v.blk.0.attn_q.weight", "vision.layers.0.attn.q.weight", "gguf-mmproj"),
        ("v.blk.0.attn_k.weight", "vision.layers.0.attn.k.weight", "gguf-mmproj"),
        ("v.blk.0.attn_v.weight", "vision.layers.0.attn.v.weight", "gguf-mmproj"),
        ("v.blk.0.attn_qkv.weight", "vision.layers.0.attn.qkv.weight", "gguf-mmproj"),
        ("v.blk.0.attn_out.weight", "vision.layers.0.attn.o.weight", "gguf-mmproj"),
        ("v.blk.0.ln2.weight", "vision.layers.0.norm.mlp.weight", "gguf-mmproj"),
        ("v.blk.0.ffn_gate.weight", "vision.layers.0.mlp.gate.weight", "gguf-mmproj"),
        ("v.blk.0.ffn_up.weight", "vision.layers.0.mlp.up.weight", "gguf-mmproj"),
        ("v.blk.0.ffn_down.weight", "vision.layers.0.mlp.down.weight", "gguf-mmproj"),
        ("v.blk.0.ls1.weight", "vision.layers.0.scale.attn.weight", "gguf-mmproj"),
        ("v.blk.0.ls2.weight", "vision.layers.0.scale.mlp.weight", "gguf-mmproj"),
        ("v.post_ln.weight", "vision.norm.weight", "gguf-mmproj"),
        ("mm.0.weight", "projector.fc1.weight", "gguf-mmproj"),
        ("mm.2.bias", "projector.fc2.bias", "gguf-mmproj"),
        ("mm.input_projection.weight", "projector.fc1.weight", "gguf-mmproj"),
        ("mm.soft_emb_norm.weight", "projector.norm.weight", "gguf-mmproj"),
        ("mm.model.fc.weight", "projector.fc1.weight", "gguf-mmproj"),
        ("a.conv1d.1.weight", "audio.conv1.weight", "gguf-mmproj"),
        ("a.conv1d.2.bias", "audio.conv2.bias", "gguf-mmproj"),
        ("a.position_embd.weight", "audio.pos_embed.weight", "gguf-mmproj"),
        ("a.blk.3.attn_q.weight", "audio.layers.3.attn.q.weight", "gguf-mmproj"),
        ("a.blk.3.ln2.weight", "audio.layers.3.norm.mlp.weight", "gguf-mmproj"),
        ("a.post_ln.weight", "audio.norm.weight", "gguf-mmproj"),
        ("mm.a.fc.weight", "projector.fc1.weight", "gguf-mmproj"),
        // Megatron-LM legacy, and NeMo 1 (`model.` prefix).
        ("language_model.embedding.word_embeddings.weight", "text.embed.weight", "megatron"),
        ("language_model.embedding.position_embeddings.weight", "text.pos_embed.weight", "megatron"),
        ("language_model.encoder.layers.0.input_layernorm.weight", "text.layers.0.norm.attn.weight", "megatron"),
        ("language_model.encoder.layers.0.self_attention.query_key_value.weight", "text.layers.0.attn.qkv.weight", "megatron"),
        ("language_model.encoder.layers.0.self_attention.dense.weight", "text.layers.0.attn.o.weight", "megatron"),
        ("language_model.encoder.layers.0.post_attention_layernorm.weight", "text.layers.0.norm.mlp.weight", "megatron"),
        ("language_model.encoder.layers.0.mlp.dense_h_to_4h.weight", "text.layers.0.mlp.up.weight", "megatron"),
        ("language_model.encoder.layers.0.mlp.dense_4h_to_h.weight", "text.layers.0.mlp.down.weight", "megatron"),
        ("language_model.encoder.final_layernorm.weight", "text.norm.weight", "megatron"),
        ("language_model.output_layer.weight", "text.lm_head.weight", "megatron"),
        ("model.language_model.encoder.layers.5.self_attention.query_key_value.bias", "text.layers.5.attn.qkv.bias", "megatron"),
        // megatron-core, with Transformer Engine's fused norms, and NeMo (`model.`).
        ("embedding.word_embeddings.weight", "text.embed.weight", "megatron-core"),
        ("decoder.layers.0.input_layernorm.weight", "text.layers.0.norm.attn.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.linear_qkv.layer_norm_weight", "text.layers.0.norm.attn.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.linear_qkv.weight", "text.layers.0.attn.qkv.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.linear_proj.weight", "text.layers.0.attn.o.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.q_layernorm.weight", "text.layers.0.attn.q_norm.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.k_layernorm.weight", "text.layers.0.attn.k_norm.weight", "megatron-core"),
        ("decoder.layers.0.pre_mlp_layernorm.weight", "text.layers.0.norm.mlp.weight", "megatron-core"),
        ("decoder.layers.0.mlp.linear_fc1.layer_norm_weight", "text.layers.0.norm.mlp.weight", "megatron-core"),
        ("decoder.layers.0.mlp.linear_fc1.weight", "text.layers.0.mlp.up.weight", "megatron-core"),
        ("decoder.layers.0.mlp.linear_fc2.weight", "text.layers.0.mlp.down.weight", "megatron-core"),
        ("decoder.layers.0.self_attention.linear_proj._extra_state", "text.layers.0.attn.o._extra_state", "megatron-core"),
        ("decoder.final_layernorm.weight", "text.norm.weight", "megatron-core"),
        ("output_layer.weight", "text.lm_head.weight", "megatron-core"),
        ("model.decoder.layers.3.self_attention.linear_qkv.weight", "text.layers.3.attn.qkv.weight", "megatron-core"),
        ("model.embedding.word_embeddings.weight", "text.embed.weight", "megatron-core"),
        // Wrappers stripped.
        ("_orig_mod.model.layers.0.self_attn.q_proj.weight", "text.layers.0.attn.q.weight", "hf-decoder"),
        ("model._orig_mod.layers.0.mlp.up_proj.weight", "text.layers.0.mlp.up.weight", "hf-decoder"),
        ("module.vision_model.encoder.layers.1.mlp.fc1.weight", "vision.layers.1.mlp.up.weight", "hf-clip"),
        ("module._orig_mod.visual.blocks.2.attn.proj.bias", "vision.layers.2.attn.o.bias", "qwen-vl"),
        // The VAD fixtures: silero's TorchScript wrapper and akiki's state dict.
        ("_model.encoder.0.reparam_conv.weight", "encoder.layers.0.reparam_conv.weight", "generic"),
        ("encoder.0.reparam_conv.weight", "encoder.layers.0.reparam_conv.weight", "generic"),
        ("encoder.3.bias", "encoder.layers.3.bias", "generic"),
        ("_model.decoder.decoder.2.weight", "decoder.decoder.layers.2.weight", "generic"),
        ("backbone.blocks.4.attn.qkv.weight", "backbone.layers.4.attn.qkv.weight", "generic"),
        // Names no rule changes.
        ("conv1.weight", "conv1.weight", "none"),
        ("_model.stft.forward_basis_buffer", "stft.forward_basis_buffer", "none"),
        ("basis", "basis", "none"),
        ("logit_scale", "logit_scale", "none"),
        ("embeddings.position_ids", "embeddings.position_ids", "none"),
        ("encoder.layers.0.foo.weight", "encoder.layers.0.foo.weight", "none"),
        ("rnn.weight_hh_l0", "rnn.weight_hh_l0", "none"),
    ];

    #[test]
    fn every_case_normalises_as_its_convention_writes_it() {
        let mut failures = Vec::new();
        for &(name, canonical, convention) in CASES {
            let got = normalise(name);
            if got.canonical != canonical || got.convention != convention {
                failures.push(format!(
                    "{name}: got {} ({}), want {canonical} ({convention})",
                    got.canonical, got.convention
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_convention_is_documented_unique_and_exercised() {
        let names: BTreeSet<&str> = CONVENTIONS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CONVENTIONS.len(), "duplicate convention names");
        for c in CONVENTIONS {
            assert!(!c.families.is_empty(), "{} undocumented", c.name);
            assert!(
                CASES.iter().any(|&(_, _, conv)| conv == c.name),
                "no test row for convention {}",
                c.name
            );
        }
        for container in CONTAINERS {
            assert!(
                names.contains(container.body.convention.name),
                "container {:?} uses an unlisted convention",
                container.prefix
            );
        }
    }

    /// A role with its leaf, if the rule carries one (`attn.qkv.weight`).
    fn role_without_leaf(to: &str) -> &str {
        to.strip_suffix(".weight")
            .or_else(|| to.strip_suffix(".bias"))
            .unwrap_or(to)
    }

    #[test]
    fn every_rule_writes_a_documented_role_and_fused_rules_name_their_segment() {
        let source = include_str!("names.rs");
        let doc_row = |role: &str| source.contains(&format!("//! | `{role}` |"));
        for roles in [LAYER_ROLES, TOWER_ROLES] {
            let unique: BTreeSet<&str> = roles.iter().map(|r| r.name).collect();
            assert_eq!(unique.len(), roles.len(), "duplicate roles");
            for role in roles {
                assert!(!role.meaning.is_empty());
                assert!(
                    doc_row(role.name),
                    "role {} not in the module doc",
                    role.name
                );
            }
        }
        let layer: BTreeSet<&str> = LAYER_ROLES.iter().map(|r| r.name).collect();
        let tower: BTreeSet<&str> = TOWER_ROLES.iter().map(|r| r.name).collect();
        for container in CONTAINERS {
            let body = container.body;
            for (rules, vocabulary) in [(body.layer, &layer), (body.unlayered, &tower)] {
                let froms: BTreeSet<&str> = rules.iter().map(|r| r.from).collect();
                assert_eq!(
                    froms.len(),
                    rules.len(),
                    "duplicate rule in {}",
                    body.convention.name
                );
                for rule in rules {
                    for to in [Some(rule.to), rule.sandwich].into_iter().flatten() {
                        assert!(
                            vocabulary.contains(role_without_leaf(to)),
                            "{} → {to}: not a documented role",
                            rule.from
                        );
                    }
                    let (segment, parts) = rule.fusion.parts();
                    if rule.fusion != Fusion::No {
                        assert!(
                            rule.to.split('.').any(|s| s == segment),
                            "{}: fused role {} lacks `{segment}`",
                            rule.from,
                            rule.to
                        );
                        for part in parts {
                            let role = role_of(rule, false, Some(*part));
                            assert!(
                                vocabulary.contains(role_without_leaf(&role)),
                                "{}#{}: {role} is not a documented role",
                                rule.from,
                                part.as_str()
                            );
                        }
                    }
                }
            }
        }
    }

    /// One layer of each convention, every tensor: all canonical names distinct.
    const LAYERS: &[&[&str]] = &[
        &[
            "model.layers.4.input_layernorm.weight",
            "model.layers.4.self_attn.q_proj.weight",
            "model.layers.4.self_attn.k_proj.weight",
            "model.layers.4.self_attn.v_proj.weight",
            "model.layers.4.self_attn.o_proj.weight",
            "model.layers.4.self_attn.q_norm.weight",
            "model.layers.4.self_attn.k_norm.weight",
            "model.layers.4.post_attention_layernorm.weight",
            "model.layers.4.mlp.gate_proj.weight",
            "model.layers.4.mlp.up_proj.weight",
            "model.layers.4.mlp.down_proj.weight",
        ],
        // Gemma 2/3: four norms.
        &[
            "model.layers.4.input_layernorm.weight",
            "model.layers.4.self_attn.q_proj.weight",
            "model.layers.4.self_attn.k_proj.weight",
            "model.layers.4.self_attn.v_proj.weight",
            "model.layers.4.self_attn.o_proj.weight",
            "model.layers.4.self_attn.q_norm.weight",
            "model.layers.4.self_attn.k_norm.weight",
            "model.layers.4.post_attention_layernorm.weight",
            "model.layers.4.pre_feedforward_layernorm.weight",
            "model.layers.4.post_feedforward_layernorm.weight",
            "model.layers.4.mlp.gate_proj.weight",
            "model.layers.4.mlp.up_proj.weight",
            "model.layers.4.mlp.down_proj.weight",
        ],
        &[
            "model.layers.4.input_layernorm.weight",
            "model.layers.4.self_attn.qkv_proj.weight",
            "model.layers.4.self_attn.o_proj.weight",
            "model.layers.4.post_attention_layernorm.weight",
            "model.layers.4.mlp.gate_up_proj.weight",
            "model.layers.4.mlp.down_proj.weight",
        ],
        &[
            "encoder.layer.4.attention.self.query.weight",
            "encoder.layer.4.attention.self.key.weight",
            "encoder.layer.4.attention.self.value.weight",
            "encoder.layer.4.attention.output.dense.weight",
            "encoder.layer.4.attention.output.LayerNorm.weight",
            "encoder.layer.4.intermediate.dense.weight",
            "encoder.layer.4.output.dense.weight",
            "encoder.layer.4.output.LayerNorm.weight",
        ],
        &[
            "h.4.ln_1.weight",
            "h.4.attn.c_attn.weight",
            "h.4.attn.c_proj.weight",
            "h.4.ln_2.weight",
            "h.4.mlp.c_fc.weight",
            "h.4.mlp.c_proj.weight",
        ],
        &[
            "gpt_neox.layers.4.input_layernorm.weight",
            "gpt_neox.layers.4.post_attention_layernorm.weight",
            "gpt_neox.layers.4.attention.query_key_value.weight",
            "gpt_neox.layers.4.attention.dense.weight",
            "gpt_neox.layers.4.mlp.dense_h_to_4h.weight",
            "gpt_neox.layers.4.mlp.dense_4h_to_h.weight",
        ],
        &[
            "vision_model.encoder.layers.4.layer_norm1.weight",
            "vision_model.encoder.layers.4.self_attn.q_proj.weight",
            "vision_model.encoder.layers.4.self_attn.k_proj.weight",
            "vision_model.encoder.layers.4.self_attn.v_proj.weight",
            "vision_model.encoder.layers.4.self_attn.out_proj.weight",
            "vision_model.encoder.layers.4.layer_norm2.weight",
            "vision_model.encoder.layers.4.mlp.fc1.weight",
            "vision_model.encoder.layers.4.mlp.fc2.weight",
        ],
        &[
            "model.decoder.layers.4.self_attn_layer_norm.weight",
            "model.decoder.layers.4.self_attn.q_proj.weight",
            "model.decoder.layers.4.self_attn.k_proj.weight",
            "model.decoder.layers.4.self_attn.v_proj.weight",
            "model.decoder.layers.4.self_attn.out_proj.weight",
            "model.decoder.layers.4.encoder_attn_layer_norm.weight",
            "model.decoder.layers.4.encoder_attn.q_proj.weight",
            "model.decoder.layers.4.encoder_attn.k_proj.weight",
            "model.decoder.layers.4.encoder_attn.v_proj.weight",
            "model.decoder.layers.4.encoder_attn.out_proj.weight",
            "model.decoder.layers.4.final_layer_norm.weight",
            "model.decoder.layers.4.fc1.weight",
            "model.decoder.layers.4.fc2.weight",
        ],
        &[
            "visual.blocks.4.norm1.weight",
            "visual.blocks.4.attn.qkv.weight",
            "visual.blocks.4.attn.proj.weight",
            "visual.blocks.4.norm2.weight",
            "visual.blocks.4.mlp.gate_proj.weight",
            "visual.blocks.4.mlp.up_proj.weight",
            "visual.blocks.4.mlp.down_proj.weight",
        ],
        &[
            "visual.transformer.resblocks.4.ln_1.weight",
            "visual.transformer.resblocks.4.attn.in_proj_weight",
            "visual.transformer.resblocks.4.attn.out_proj.weight",
            "visual.transformer.resblocks.4.ln_2.weight",
            "visual.transformer.resblocks.4.mlp.c_fc.weight",
            "visual.transformer.resblocks.4.mlp.c_proj.weight",
        ],
        &[
            "blk.4.attn_norm.weight",
            "blk.4.attn_q.weight",
            "blk.4.attn_k.weight",
            "blk.4.attn_v.weight",
            "blk.4.attn_output.weight",
            "blk.4.attn_q_norm.weight",
            "blk.4.attn_k_norm.weight",
            "blk.4.post_attention_norm.weight",
            "blk.4.ffn_norm.weight",
            "blk.4.post_ffw_norm.weight",
            "blk.4.ffn_gate.weight",
            "blk.4.ffn_up.weight",
            "blk.4.ffn_down.weight",
        ],
        &[
            "v.blk.4.ln1.weight",
            "v.blk.4.attn_q.weight",
            "v.blk.4.attn_k.weight",
            "v.blk.4.attn_v.weight",
            "v.blk.4.attn_out.weight",
            "v.blk.4.ln2.weight",
            "v.blk.4.ffn_gate.weight",
            "v.blk.4.ffn_up.weight",
            "v.blk.4.ffn_down.weight",
            "v.blk.4.ls1.weight",
            "v.blk.4.ls2.weight",
        ],
        &[
            "language_model.encoder.layers.4.input_layernorm.weight",
            "language_model.encoder.layers.4.self_attention.query_key_value.weight",
            "language_model.encoder.layers.4.self_attention.dense.weight",
            "language_model.encoder.layers.4.post_attention_layernorm.weight",
            "language_model.encoder.layers.4.mlp.dense_h_to_4h.weight",
            "language_model.encoder.layers.4.mlp.dense_4h_to_h.weight",
        ],
        &[
            "decoder.layers.4.self_attention.linear_qkv.layer_norm_weight",
            "decoder.layers.4.self_attention.linear_qkv.weight",
            "decoder.layers.4.self_attention.linear_proj.weight",
            "decoder.layers.4.mlp.linear_fc1.layer_norm_weight",
            "decoder.layers.4.mlp.linear_fc1.weight",
            "decoder.layers.4.mlp.linear_fc2.weight",
        ],
    ];

    #[test]
    fn tensors_of_one_layer_stay_distinct_in_every_convention() {
        for layer in LAYERS {
            let got = normalise_all(layer.iter().copied());
            let canonical: BTreeSet<&str> = got.iter().map(|n| n.canonical.as_str()).collect();
            assert_eq!(canonical.len(), layer.len(), "{layer:?} → {got:?}");
            for n in &got {
                assert_ne!(n.convention, "none", "{n:?}");
                assert_ne!(n.convention, "generic", "{n:?}");
            }
            // With biases too: a weight and its bias never meet.
            let with_bias: BTreeSet<String> = layer
                .iter()
                .flat_map(|n| [n.to_string(), n.replace(".weight", ".bias")])
                .collect();
            let got = normalise_all(with_bias.iter().map(String::as_str));
            let canonical: BTreeSet<&str> = got.iter().map(|n| n.canonical.as_str()).collect();
            assert_eq!(canonical.len(), with_bias.len(), "{got:?}");
        }
    }

    #[test]
    fn gemma_sandwich_norms_read_in_context_and_llama_norms_do_not_move() {
        let gemma = [
            "model.layers.2.input_layernorm.weight",
            "model.layers.2.post_attention_layernorm.weight",
            "model.layers.2.pre_feedforward_layernorm.weight",
            "model.layers.2.post_feedforward_layernorm.weight",
            // A layer without a norm on its MLP's output keeps the Llama reading.
            "model.layers.3.post_attention_layernorm.weight",
        ];
        let got: Vec<String> = normalise_all(gemma)
            .into_iter()
            .map(|n| n.canonical)
            .collect();
        assert_eq!(
            got,
            [
                "text.layers.2.norm.attn.weight",
                "text.layers.2.norm.attn_post.weight",
                "text.layers.2.norm.mlp.weight",
                "text.layers.2.norm.mlp_post.weight",
                "text.layers.3.norm.mlp.weight",
            ]
        );
        let llama = normalise_all(["model.layers.2.post_attention_layernorm.weight"]);
        assert_eq!(llama[0].canonical, "text.layers.2.norm.mlp.weight");
        // Gemma 2 as GGUF names reads the same as Gemma 2 in transformers names.
        let gguf = normalise_all([
            "blk.2.attn_norm.weight",
            "blk.2.post_attention_norm.weight",
            "blk.2.ffn_norm.weight",
            "blk.2.post_ffw_norm.weight",
        ]);
        let gguf: Vec<String> = gguf.into_iter().map(|n| n.canonical).collect();
        assert_eq!(gguf[..], got[..4]);
    }

    #[test]
    fn vision_text_audio_and_projector_towers_of_one_model_stay_distinct() {
        for model in [
            // LLaVA.
            &[
                "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
                "language_model.model.layers.0.self_attn.q_proj.weight",
                "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                "language_model.model.layers.0.mlp.up_proj.weight",
                "vision_tower.vision_model.post_layernorm.weight",
                "language_model.model.norm.weight",
                "multi_modal_projector.linear_1.weight",
            ][..],
            // Qwen2-VL.
            &[
                "visual.blocks.0.attn.qkv.weight#q",
                "model.layers.0.self_attn.q_proj.weight",
                "visual.merger.ln_q.weight",
                "model.norm.weight",
                "visual.merger.mlp.0.weight",
            ],
            // Qwen2-Audio.
            &[
                "audio_tower.layers.0.self_attn.q_proj.weight",
                "language_model.model.layers.0.self_attn.q_proj.weight",
                "audio_tower.layer_norm.weight",
                "language_model.model.norm.weight",
                "multi_modal_projector.linear.weight",
            ],
            // CLIP.
            &[
                "vision_model.encoder.layers.0.self_attn.q_proj.weight",
                "text_model.encoder.layers.0.self_attn.q_proj.weight",
                "vision_model.post_layernorm.weight",
                "text_model.final_layer_norm.weight",
                "visual_projection.weight",
                "text_projection.weight",
            ],
            // Whisper.
            &[
                "model.encoder.layers.0.self_attn.q_proj.weight",
                "model.decoder.layers.0.self_attn.q_proj.weight",
                "model.encoder.layer_norm.weight",
                "model.decoder.layer_norm.weight",
                "model.encoder.embed_positions.weight",
                "model.decoder.embed_positions.weight",
            ],
        ] {
            let got = normalise_all(model.iter().copied());
            let canonical: BTreeSet<&str> = got.iter().map(|n| n.canonical.as_str()).collect();
            assert_eq!(canonical.len(), model.len(), "{got:?}");
        }
    }

    #[test]
    fn the_same_tensor_meets_itself_across_conventions() {
        for group in [
            // A SigLIP vision layer standalone, in LLaVA, in transformers ≥ 4.52, in an mmproj.
            &[
                "vision_model.encoder.layers.3.self_attn.q_proj.weight",
                "vision_tower.vision_model.encoder.layers.3.self_attn.q_proj.weight",
                "model.vision_tower.vision_model.encoder.layers.3.self_attn.q_proj.weight",
                "v.blk.3.attn_q.weight",
                "visual.blocks.3.attn.qkv.weight#q",
                "visual.transformer.resblocks.3.attn.in_proj_weight#q",
                "module._orig_mod.vision_model.encoder.layers.3.self_attn.q_proj.weight",
            ][..],
            &[
                "vision_model.encoder.layers.3.mlp.fc2.weight",
                "visual.blocks.3.mlp.fc2.weight",
                "v.blk.3.ffn_down.weight",
            ],
            &[
                "vision_model.post_layernorm.weight",
                "visual.merger.ln_q.weight",
                "v.post_ln.weight",
            ],
            &[
                "vision_model.embeddings.class_embedding",
                "v.class_embd",
                "visual.class_embedding",
            ],
            &[
                "multi_modal_projector.linear_1.weight",
                "visual.merger.mlp.0.weight",
                "mm.0.weight",
            ],
            // Whisper's encoder and Qwen2-Audio's audio tower, and its mmproj.
            &[
                "model.encoder.layers.5.final_layer_norm.weight",
                "audio_tower.layers.5.final_layer_norm.weight",
                "a.blk.5.ln2.weight",
            ],
            &[
                "model.encoder.conv1.weight",
                "audio_tower.conv1.weight",
                "a.conv1d.1.weight",
            ],
            // A Llama layer in transformers, GGUF, Megatron and megatron-core names.
            &[
                "model.layers.7.post_attention_layernorm.weight",
                "blk.7.ffn_norm.weight",
                "language_model.encoder.layers.7.post_attention_layernorm.weight",
                "decoder.layers.7.pre_mlp_layernorm.weight",
                "decoder.layers.7.mlp.linear_fc1.layer_norm_weight",
            ],
            &[
                "model.layers.7.mlp.gate_proj.weight",
                "model.layers.7.mlp.gate_up_proj.weight#gate",
                "decoder.layers.7.mlp.linear_fc1.weight#gate",
                "language_model.encoder.layers.7.mlp.dense_h_to_4h.weight#gate",
                "blk.7.ffn_gate.weight",
            ],
            &[
                "model.layers.7.self_attn.v_proj.bias",
                "model.layers.7.self_attn.qkv_proj.bias#v",
                "decoder.layers.7.self_attention.linear_qkv.bias#v",
                "gpt_neox.layers.7.attention.query_key_value.bias#v",
                "transformer.h.7.attn.c_attn.bias#v",
                "blk.7.attn_v.bias",
            ],
            // BERT and its GGUF.
            &[
                "encoder.layer.2.attention.output.LayerNorm.weight",
                "bert.encoder.layer.2.attention.output.LayerNorm.weight",
                "blk.2.attn_output_norm.weight",
            ],
        ] {
            let got: BTreeSet<String> = group.iter().map(|n| normalise(n).canonical).collect();
            assert_eq!(got.len(), 1, "{group:?} → {got:?}");
        }
    }

    #[test]
    fn part_names_read_as_their_role_and_unknown_parts_stay_verbatim() {
        let n = normalise("visual.blocks.3.attn.qkv.weight#q");
        assert_eq!(n.canonical, "vision.layers.3.attn.q.weight");
        assert_eq!(n.convention, "qwen-vl");
        assert_eq!(
            normalise("visual.blocks.3.attn.qkv.weight#k").canonical,
            "vision.layers.3.attn.k.weight"
        );
        assert_eq!(
            normalise("model.layers.1.mlp.gate_up_proj.weight#up").canonical,
            "text.layers.1.mlp.up.weight"
        );
        assert_eq!(
            normalise("vision_model.head.attention.in_proj_weight#v").canonical,
            "vision.pool.attn.v.weight"
        );
        // Not a part of that fusion, or not fused at all: the suffix is kept.
        assert_eq!(
            normalise("visual.blocks.3.attn.qkv.weight#gate").canonical,
            "vision.layers.3.attn.qkv.weight#gate"
        );
        assert_eq!(
            normalise("model.layers.0.self_attn.q_proj.weight#q").canonical,
            "text.layers.0.attn.q.weight#q"
        );
        assert_eq!(
            normalise("encoder.0.weight#x").canonical,
            "encoder.layers.0.weight#x"
        );
    }

    #[test]
    fn wrappers_are_reported() {
        let n = normalise("module._orig_mod.visual.blocks.2.attn.proj.bias");
        assert_eq!(n.wrappers, ["module", "_orig_mod"]);
        let n = normalise("model._orig_mod.layers.0.mlp.up_proj.weight");
        assert_eq!(n.wrappers, ["_orig_mod"]);
        let n = normalise("_model.stft.forward_basis_buffer");
        assert_eq!(
            (n.wrappers.as_slice(), n.convention),
            (&["_model"][..], "none")
        );
        assert!(normalise("model.layers.0.self_attn.q_proj.weight")
            .wrappers
            .is_empty());
        // `module` mid-name is a real module, not DataParallel's.
        assert_eq!(
            normalise("encoder.module.weight").canonical,
            "encoder.module.weight"
        );
    }

    #[test]
    fn odd_names_never_panic_and_come_back() {
        let huge = format!("model.layers.{}.self_attn.q_proj.weight", "9".repeat(400));
        let long = "a.".repeat(5000);
        let odd = [
            "",
            ".",
            "..",
            "...",
            "#",
            "##",
            "#q",
            "model.",
            "model.layers.",
            "model.layers.0",
            "model.layers.0.",
            "model.layers..self_attn.q_proj.weight",
            "model.layers.-1.self_attn.q_proj.weight",
            "model.layers.0x1.self_attn.q_proj.weight",
            "module.",
            "module",
            "_orig_mod",
            "_orig_mod._orig_mod.",
            "blk.٣.attn_q.weight",
            "модель.слои.0.вес",
            "视觉.blocks.0.attn.qkv.weight",
            "visual.blocks.0.attn.qkv.weight#",
            "visual.blocks.0.attn.qkv.weight#q#k",
            "🦀.0.🦀",
            "mm.",
            "v.blk.0",
            "\u{0}",
            &huge,
            &long,
        ];
        for name in odd {
            let n = normalise(name);
            let _ = fused(name, &[12, 4], None, Hints::default());
            let _ = fused(name, &[], Some(&[]), Hints::default());
            assert!(!n.convention.is_empty());
        }
        let n = normalise(&huge);
        assert_eq!(
            n.canonical,
            format!("text.layers.{}.attn.q.weight", "9".repeat(400))
        );
        // Non-ASCII digits are not a layer index.
        assert_eq!(normalise("blk.٣.attn_q.weight").convention, "none");
        assert_eq!(normalise("").canonical, "");
        assert_eq!(normalise("").convention, "none");
        let all = normalise_all(odd.iter().copied());
        assert_eq!(all.len(), odd.len());
    }

    // ---- fused -------------------------------------------------------------------------

    fn spans(split: &Split) -> Vec<(PartKind, Vec<(usize, usize)>)> {
        split
            .parts
            .iter()
            .map(|p| (p.kind, p.spans.iter().map(|s| (s.start, s.len)).collect()))
            .collect()
    }

    #[test]
    fn contiguous_qkv_splits_around_the_model_width() {
        // Qwen2-VL's vision tower: d = 1280, q = k = v.
        let split = fused(
            "visual.blocks.3.attn.qkv.weight",
            &[3840, 1280],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(split.axis, 0);
        assert_eq!(
            spans(&split),
            [
                (PartKind::Q, vec![(0, 1280)]),
                (PartKind::K, vec![(1280, 1280)]),
                (PartKind::V, vec![(2560, 1280)]),
            ]
        );
        assert_eq!(split.parts[0].name, "visual.blocks.3.attn.qkv.weight#q");
        assert_eq!(split.parts[2].len(), 1280);
        // Its bias, given the weight.
        let bias = fused(
            "visual.blocks.3.attn.qkv.bias",
            &[3840],
            Some(&[3840, 1280]),
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(spans(&bias), spans(&split));
        // Phi-3-medium (GQA): d = 5120, 40 query heads, 10 kv heads of 128.
        let gqa = fused(
            "model.layers.0.self_attn.qkv_proj.weight",
            &[7680, 5120],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            spans(&gqa),
            [
                (PartKind::Q, vec![(0, 5120)]),
                (PartKind::K, vec![(5120, 1280)]),
                (PartKind::V, vec![(6400, 1280)]),
            ]
        );
        // The same from head counts.
        let hints = Hints {
            heads: Some(Heads {
                q: 40,
                kv: 10,
                head_dim: 128,
            }),
            ffn: None,
        };
        let by_heads = fused(
            "model.layers.0.self_attn.qkv_proj.weight",
            &[7680, 5120],
            None,
            hints,
        )
        .unwrap()
        .unwrap();
        assert_eq!(spans(&by_heads), spans(&gqa));
        // A bias with head counts needs no weight.
        let bias = fused(
            "model.layers.0.self_attn.qkv_proj.bias",
            &[7680],
            None,
            hints,
        )
        .unwrap()
        .unwrap();
        assert_eq!(spans(&bias), spans(&gqa));
        // open_clip and SigLIP's pooling head: `in_proj_weight`, no `.weight` leaf.
        let mha = fused(
            "visual.transformer.resblocks.0.attn.in_proj_weight",
            &[2304, 768],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            mha.parts[1].spans,
            [Span {
                start: 768,
                len: 768
            }]
        );
        assert!(fused(
            "vision_model.head.attention.in_proj_bias",
            &[3456],
            Some(&[3456, 1152]),
            Hints::default()
        )
        .unwrap()
        .is_some());
    }

    #[test]
    fn gpt2_conv1d_splits_along_columns() {
        let split = fused(
            "transformer.h.0.attn.c_attn.weight",
            &[768, 2304],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(split.axis, 1);
        assert_eq!(
            spans(&split),
            [
                (PartKind::Q, vec![(0, 768)]),
                (PartKind::K, vec![(768, 768)]),
                (PartKind::V, vec![(1536, 768)]),
            ]
        );
        let bias = fused(
            "transformer.h.0.attn.c_attn.bias",
            &[2304],
            Some(&[768, 2304]),
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(bias.axis, 0);
        assert_eq!(spans(&bias), spans(&split));
        // A `[d, 3·d]` weight read as rows would be wrong: a bias that matches the wrong axis
        // of its weight is refused.
        assert!(matches!(
            fused(
                "transformer.h.0.attn.c_attn.bias",
                &[768],
                Some(&[768, 2304]),
                Hints::default()
            ),
            Err(FusedProblem::WeightMismatch { .. })
        ));
    }

    #[test]
    fn gate_up_splits_gate_first() {
        // Phi-3-mini: f = 8192.
        let split = fused(
            "model.layers.0.mlp.gate_up_proj.weight",
            &[16384, 3072],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            spans(&split),
            [
                (PartKind::Gate, vec![(0, 8192)]),
                (PartKind::Up, vec![(8192, 8192)]),
            ]
        );
        assert_eq!(
            split.parts[0].name,
            "model.layers.0.mlp.gate_up_proj.weight#gate"
        );
        assert!(matches!(
            fused(
                "model.layers.0.mlp.gate_up_proj.weight",
                &[16383, 3072],
                None,
                Hints::default()
            ),
            Err(FusedProblem::DoesNotDivide {
                expected: Expected::Halves,
                len: 16383,
                ..
            })
        ));
        let wrong_f = Hints {
            heads: None,
            ffn: Some(1000),
        };
        assert!(matches!(
            fused(
                "model.layers.0.mlp.gate_up_proj.weight",
                &[16384, 3072],
                None,
                wrong_f
            ),
            Err(FusedProblem::FfnMismatch { ffn: 1000, .. })
        ));
    }

    #[test]
    fn megatron_fc1_needs_the_intermediate_size() {
        let name = "decoder.layers.0.mlp.linear_fc1.weight";
        assert!(matches!(
            fused(name, &[22016, 4096], None, Hints::default()),
            Err(FusedProblem::Ambiguous { .. })
        ));
        let f = |ffn| Hints {
            heads: None,
            ffn: Some(ffn),
        };
        // SwiGLU (Llama-2-7B: f = 11008): gate then up.
        let gated = fused(name, &[22016, 4096], None, f(11008))
            .unwrap()
            .unwrap();
        assert_eq!(
            spans(&gated),
            [
                (PartKind::Gate, vec![(0, 11008)]),
                (PartKind::Up, vec![(11008, 11008)]),
            ]
        );
        // GeLU (GPT-3 style: f = 4·d): up alone, nothing to split.
        assert_eq!(fused(name, &[16384, 4096], None, f(16384)), Ok(None));
        assert!(matches!(
            fused(name, &[16000, 4096], None, f(11008)),
            Err(FusedProblem::FfnMismatch { len: 16000, .. })
        ));
        // A split part's name reads as its role.
        assert_eq!(
            normalise(&gated.parts[1].name).canonical,
            "text.layers.0.mlp.up.weight"
        );
        assert_eq!(
            normalise(&gated.parts[0].name).canonical,
            "text.layers.0.mlp.gate.weight"
        );
    }

    #[test]
    fn interleaved_qkv_needs_heads_and_splits_per_group() {
        let name = "decoder.layers.0.self_attention.linear_qkv.weight";
        let problem = fused(name, &[6144, 4096], None, Hints::default()).unwrap_err();
        assert!(matches!(
            problem,
            FusedProblem::Interleaved {
                convention: "megatron-core",
                ..
            }
        ));
        let text = problem.to_string();
        assert!(
            text.contains(name) && text.contains("[6144, 4096]"),
            "{text}"
        );
        // GQA: 32 query heads in 8 groups of 4, head width 128 → per group 4·128 q rows,
        // 128 k rows, 128 v rows.
        let hints = Hints {
            heads: Some(Heads {
                q: 32,
                kv: 8,
                head_dim: 128,
            }),
            ffn: None,
        };
        let split = fused(name, &[6144, 4096], None, hints).unwrap().unwrap();
        assert_eq!(split.axis, 0);
        let group = 768;
        for part in &split.parts {
            assert_eq!(part.spans.len(), 8);
        }
        assert_eq!(
            split.parts[0].spans[1],
            Span {
                start: group,
                len: 512
            }
        );
        assert_eq!(
            split.parts[1].spans[1],
            Span {
                start: group + 512,
                len: 128
            }
        );
        assert_eq!(
            split.parts[2].spans[7],
            Span {
                start: 7 * group + 640,
                len: 128
            }
        );
        assert_eq!(split.parts[0].len(), 4096);
        assert_eq!(split.parts[1].len(), 1024);
        // Every row exactly once.
        let mut rows: Vec<usize> = split
            .parts
            .iter()
            .flat_map(|p| p.spans.iter().flat_map(|s| s.start..s.start + s.len))
            .collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..6144).collect::<Vec<_>>());
        // NeoX / legacy Megatron MHA: kv = q, per head q, k, v.
        let mha = Hints {
            heads: Some(Heads {
                q: 4,
                kv: 4,
                head_dim: 2,
            }),
            ffn: None,
        };
        let split = fused(
            "gpt_neox.layers.0.attention.query_key_value.bias",
            &[24],
            None,
            mha,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            spans(&split),
            [
                (PartKind::Q, vec![(0, 2), (6, 2), (12, 2), (18, 2)]),
                (PartKind::K, vec![(2, 2), (8, 2), (14, 2), (20, 2)]),
                (PartKind::V, vec![(4, 2), (10, 2), (16, 2), (22, 2)]),
            ]
        );
        // Head counts that do not fit, or are not valid.
        for heads in [
            Heads {
                q: 32,
                kv: 8,
                head_dim: 64,
            },
            Heads {
                q: 32,
                kv: 0,
                head_dim: 128,
            },
            Heads {
                q: 30,
                kv: 8,
                head_dim: 128,
            },
            Heads {
                q: usize::MAX,
                kv: usize::MAX,
                head_dim: usize::MAX,
            },
        ] {
            let hints = Hints {
                heads: Some(heads),
                ffn: None,
            };
            let problem = fused(name, &[6144, 4096], None, hints).unwrap_err();
            assert!(
                matches!(problem, FusedProblem::HeadsMismatch { .. }),
                "{problem}"
            );
            assert!(problem.to_string().contains("[6144, 4096]"));
        }
    }

    #[test]
    fn sizes_that_do_not_divide_are_clear_errors() {
        let name = "visual.blocks.0.attn.qkv.weight";
        for rows in [1280, 1281, 1000, 0, 3841] {
            let problem = fused(name, &[rows, 1280], None, Hints::default()).unwrap_err();
            assert!(
                matches!(
                    problem,
                    FusedProblem::DoesNotDivide {
                        expected: Expected::QkvAround { d: 1280 },
                        ..
                    }
                ),
                "{rows}: {problem}"
            );
            let text = problem.to_string();
            assert!(
                text.contains(name) && text.contains(&format!("[{rows}, 1280]")),
                "{text}"
            );
        }
        assert!(matches!(
            fused(name, &[3840, 0], None, Hints::default()),
            Err(FusedProblem::DoesNotDivide { .. })
        ));
        assert!(matches!(
            fused(
                "visual.blocks.0.attn.qkv.bias",
                &[3840],
                None,
                Hints::default()
            ),
            Err(FusedProblem::NeedsWeight { .. })
        ));
        assert!(matches!(
            fused(
                "visual.blocks.0.attn.qkv.bias",
                &[3840],
                Some(&[3000, 1280]),
                Hints::default()
            ),
            Err(FusedProblem::WeightMismatch { .. })
        ));
        assert!(matches!(
            fused(
                "visual.blocks.0.attn.qkv.bias",
                &[3840],
                Some(&[3840]),
                Hints::default()
            ),
            Err(FusedProblem::WeightMismatch { .. })
        ));
        // A weight is 2-D and a bias 1-D.
        for shape in [&[][..], &[3840][..], &[3, 3, 3][..]] {
            assert!(matches!(
                fused(name, shape, None, Hints::default()),
                Err(FusedProblem::Rank { .. })
            ));
        }
        assert!(matches!(
            fused(
                "visual.blocks.0.attn.qkv.bias",
                &[3840, 1280],
                None,
                Hints::default()
            ),
            Err(FusedProblem::Rank { .. })
        ));
    }

    #[test]
    fn a_fused_module_no_convention_knows_is_split_by_its_own_name() {
        // timm-style names (no `visual.` container): q = d, kv from the rest (GQA).
        let split = fused(
            "trunk.blocks.3.attn.qkv.weight",
            &[128, 64],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        let lens: Vec<usize> = split.parts.iter().map(Part::len).collect();
        assert_eq!((split.axis, lens), (0, vec![64, 32, 32]));
        assert_eq!(split.parts[1].name, "trunk.blocks.3.attn.qkv.weight#k");
        let bias = fused(
            "trunk.blocks.3.attn.qkv.bias",
            &[128],
            Some(&[128, 64]),
            Hints::default(),
        );
        assert_eq!(bias.unwrap().unwrap().parts.len(), 3);
        assert!(matches!(
            fused(
                "trunk.blocks.3.attn.qkv.weight",
                &[7, 4],
                None,
                Hints::default()
            ),
            Err(FusedProblem::DoesNotDivide { .. })
        ));
        // A module of another name is not fused, nor is a part.
        for name in [
            "trunk.blocks.3.attn.qkvx.weight",
            "trunk.blocks.3.attn.qkv.weight#q",
        ] {
            assert_eq!(
                fused(name, &[128, 64], None, Hints::default()),
                Ok(None),
                "{name}"
            );
        }
    }

    #[test]
    fn unfused_names_and_parts_are_not_split() {
        for name in [
            "model.layers.0.self_attn.q_proj.weight",
            "visual.blocks.0.attn.proj.weight",
            "visual.blocks.0.attn.qkv.weight#q",
            "decoder.layers.0.self_attention.linear_qkv._extra_state",
            "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight",
            "encoder.0.weight",
            "",
        ] {
            assert_eq!(
                fused(name, &[3840, 1280], None, Hints::default()),
                Ok(None),
                "{name}"
            );
        }
        // Wrappers do not hide a fused tensor; the parts keep the name as given.
        let split = fused(
            "_orig_mod.visual.blocks.0.attn.qkv.weight",
            &[3840, 1280],
            None,
            Hints::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            split.parts[0].name,
            "_orig_mod.visual.blocks.0.attn.qkv.weight#q"
        );
        assert_eq!(
            normalise(&split.parts[0].name).canonical,
            "vision.layers.0.attn.q.weight"
        );
    }
}
