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
    /// A fused tensor (q, k and v in one `qkv`) compared as its parts, listed separately.
    SplitIntoParts,
    /// A fused tensor whose documented layout does not fit its shape: not split.
    FusedNotSplit,
    /// Presented transposed (`NAME#T`) to pair with a tensor stored the other way round.
    Transposed,
    /// On the residual axis outside the layers, after a residual alignment fitted on the
    /// token embeddings: its agreement is not independent evidence.
    AlignmentFitted,
    /// A norm gain under a rotated residual stream: it does not rotate.
    NotRotatable,
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
            Reason::SplitIntoParts => "fused tensor, compared as its parts",
            Reason::FusedNotSplit => "fused tensor whose layout does not fit its shape",
            Reason::Transposed => "compared transposed (as NAME#T)",
            Reason::AlignmentFitted => "fitted by the residual alignment (not evidence)",
            Reason::NotRotatable => "norm gain under a rotated residual stream",
        }
    }
}

/// How a tensor pair was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairMethod {
    /// Equal names (after the recipe's rename rules).
    Name,
    /// Equal names after normalisation across naming conventions.
    Normalised,
    /// Decided by structure: the only candidate of its shape, the same role in a matched
    /// layer stack, or the same leaf name.
    Structure,
    /// Chosen among several candidates of one shape by content (Pearson on a fixed
    /// subsample): its p-value is adjusted for the number of candidates searched.
    Content,
}

impl PairMethod {
    /// Name used in reports.
    pub const fn name(self) -> &'static str {
        match self {
            PairMethod::Name => "name",
            PairMethod::Normalised => "normalised name",
            PairMethod::Structure => "structure",
            PairMethod::Content => "content",
        }
    }
}

/// How one pair was found, and what the search behind it considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedBy {
    /// The method.
    pub method: PairMethod,
    /// The rule that decided it, in words ("only tensor of shape [64, 128, 3] on both
    /// sides", "normalised name vision.layers.3.attn.q.weight").
    pub rule: String,
    /// The content score (Pearson on the fixed subsample) when content chose the pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Candidates the search chose among (1 when nothing was chosen by content). The
    /// pair's p-value is multiplied by it (Bonferroni: the null of the maximum over the
    /// candidates searched).
    pub candidates: usize,
}

/// A prefix mapping: the tensors under `a` in A correspond to those under `b` in B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// Prefix in A (`encoder.layer.*` for a layer stack).
    pub a: String,
    /// Prefix in B.
    pub b: String,
    /// Distinct layers paired (0 for unlayered tensors).
    pub layers: usize,
    /// Tensor pairs under the mapping.
    pub tensors: usize,
    /// Pairs by method.
    pub methods: std::collections::BTreeMap<PairMethod, usize>,
}

/// How much of one component of a model found a counterpart in the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Which model (`a` or `b`).
    pub model: &'static str,
    /// The component.
    pub component: String,
    /// Its selected tensors.
    pub tensors: usize,
    /// Of which paired.
    pub paired: usize,
}

/// The correspondence automatic pairing found (`pairing = "auto"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorrespondenceReport {
    /// Prefix mappings, sorted by A prefix then B prefix.
    pub mappings: Vec<Mapping>,
    /// Pairs by method.
    pub methods: std::collections::BTreeMap<PairMethod, usize>,
    /// Per component of each model: how much of it found a counterpart.
    pub coverage: Vec<Coverage>,
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
