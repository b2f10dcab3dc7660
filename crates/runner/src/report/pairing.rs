//! The report's vocabulary of pairing: why a tensor was not compared ([`Reason`],
//! [`Unpaired`]) and the broad kind of a tensor class ([`Kind`]). Defined here, in the leaf
//! report model, so that the report depends on nothing upstream; the plan stage fills them.

use serde::Serialize;

/// Why a tensor was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The recipe's include/exclude globs leave it out.
    Excluded,
    /// Model B has no tensor of this name.
    OnlyInA,
    /// Model A has no tensor of this name.
    OnlyInB,
    /// Both models have it, with different shapes.
    ShapeMismatch,
    /// At least one side is an integer, boolean or complex tensor.
    NonFloatDtype,
}

impl Reason {
    /// Human-readable text for reports.
    pub const fn text(self) -> &'static str {
        match self {
            Reason::Excluded => "excluded by the compare's include/exclude globs",
            Reason::OnlyInA => "only in A",
            Reason::OnlyInB => "only in B",
            Reason::ShapeMismatch => "shape mismatch",
            Reason::NonFloatDtype => "non-float dtype (listed, not compared)",
        }
    }
}

/// A tensor that was not compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpaired {
    /// Normalised name.
    pub name: String,
    /// Why.
    pub reason: Reason,
    /// Specifics: the shapes or dtypes on each side, or the original name.
    pub detail: String,
}

/// Broad role of a tensor class, from its name: what kind of evidence it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// LayerNorm / RMSNorm parameters: sit near their init constant in every model.
    Norm,
    /// Token, position or patch embeddings.
    Embedding,
    /// Attention projections.
    Attention,
    /// Feed-forward / MLP projections.
    Mlp,
    /// Output head.
    Head,
    /// Anything else.
    Other,
}

impl Kind {
    /// Name used in reports (the JSON form).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Norm => "norm",
            Kind::Embedding => "embedding",
            Kind::Attention => "attention",
            Kind::Mlp => "mlp",
            Kind::Head => "head",
            Kind::Other => "other",
        }
    }

    /// Classifies a tensor name.
    pub fn of(name: &str) -> Kind {
        let lower = name.to_ascii_lowercase();
        let segs: Vec<&str> = lower.split('.').collect();
        let any = |f: &dyn Fn(&str) -> bool| segs.iter().any(|s| f(s));
        if any(&|s| s.contains("norm") || s.starts_with("ln") || s == "ln_f") {
            Kind::Norm
        } else if any(&|s| s.contains("embed") || s == "wte" || s == "wpe" || s == "tok_embeddings")
        {
            Kind::Embedding
        } else if any(&|s| {
            s.contains("attn")
                || s.contains("attention")
                || matches!(
                    s,
                    "q_proj" | "k_proj" | "v_proj" | "o_proj" | "query" | "key" | "value" | "qkv"
                )
        }) {
            Kind::Attention
        } else if any(&|s| {
            s.contains("mlp")
                || s.contains("ffn")
                || s.contains("feed_forward")
                || matches!(
                    s,
                    "intermediate" | "up_proj" | "down_proj" | "gate_proj" | "fc1" | "fc2"
                )
        }) {
            Kind::Mlp
        } else if any(&|s| s == "lm_head" || s == "output" || s == "head" || s == "classifier") {
            Kind::Head
        } else {
            Kind::Other
        }
    }
}
