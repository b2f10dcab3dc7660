//! The report's vocabulary of verdicts: what the judge stage decides and cites. Defined in
//! the leaf report model so that renderers and the report depend on nothing upstream.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use weightkin_core::UlpStats;

use super::generator::Generator;

/// Why a compared (or listed) tensor is not evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exclusion {
    /// The recipe's `not-evidence` globs name it.
    Declared,
    /// A known computed buffer (position ids, rotary tables, masks, signal-processing bases),
    /// recognised by its name.
    DeterministicBuffer,
    /// Identical in both models and reproduced by a known generator (recognised by content,
    /// whatever its name).
    Generated {
        /// The generator that reproduces it.
        generator: Generator,
    },
    /// Identical in both models and takes few distinct values.
    StructuredIdentical,
    /// Constant or zero: Pearson is undefined.
    Constant,
    /// An integer or boolean buffer, listed but not compared.
    NonFloatBuffer,
}

impl Exclusion {
    /// The reason in words, as the report states it.
    pub fn text(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Exclusion::Declared => "declared not evidence in the recipe",
            Exclusion::DeterministicBuffer => {
                "deterministic buffer (computed, not learned: same in unrelated models)"
            }
            Exclusion::Generated { generator } => {
                return Cow::Owned(format!(
                    "generated: {generator} (identical in both models and computed by a \
                     formula, not learned: unrelated models store the same values)"
                ))
            }
            Exclusion::StructuredIdentical => {
                "identical in both models and takes few distinct values: a structured, likely \
                 non-learned tensor (declare it `evidence` in the recipe if it is learned)"
            }
            Exclusion::Constant => "constant or zero tensor: Pearson undefined",
            Exclusion::NonFloatBuffer => "integer or boolean buffer (listed, not compared)",
        })
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Serialised as its text: the report states the reason in words.
impl Serialize for Exclusion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// B (or this component of B) shares ancestry with A.
    Derived,
    /// Nothing in B's weights shows shared ancestry with A.
    Independent,
    /// The evidence does not settle it.
    Inconclusive,
}

impl Verdict {
    /// Name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Derived => "derived",
            Verdict::Independent => "independent",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Verdict> {
        [
            Verdict::Derived,
            Verdict::Independent,
            Verdict::Inconclusive,
        ]
        .into_iter()
        .find(|v| v.name() == s)
    }
}

/// How a tensor counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "role", content = "reason")]
pub enum Role {
    /// Evidence, judged by Pearson against its null.
    Evidence,
    /// Evidence judged by Pearson only: the tensor sits near a constant in both models
    /// (norm weights), so raw cosine would be high for unrelated models too.
    InitPrior,
    /// Not evidence, with the reason.
    NotEvidence(Exclusion),
}

/// Which null a tensor's z-score is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NullKind {
    /// Pearson of independent n-vectors: mean 0, s.d. 1/√n.
    Analytic,
    /// A's other layers against B's, same class.
    CrossLayer,
    /// Reference models declared independent of A, same class.
    Reference,
    /// A's layer i against B's layer j ≠ i, after aligning their hidden units by the same
    /// assignment that aligned the pair (the null under the same search).
    AlignedCrossLayer,
    /// A's matrix against B's with one axis shifted: keeps structure both models share along
    /// the other axis (a vocabulary, a label set), destroys shared ancestry.
    Shift,
}

/// The evidence statistics of one compared pair (in the report's per-tensor table).
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Component of B the tensor belongs to.
    pub component: String,
    /// How it counts.
    #[serde(flatten)]
    pub role: Role,
    /// Pearson correlation (the deciding statistic).
    pub pearson: Option<f64>,
    /// Raw cosine, for comparison with what others report.
    pub cosine: Option<f64>,
    /// Fraction of elements exactly equal (as f32) in A and B.
    pub equal_fraction: f64,
    /// ‖a − b‖ / ‖a‖.
    pub relative_l2: Option<f64>,
    /// Distance in BF16 units in the last place, on the stored bits of a subsample (both
    /// tensors stored as BF16, in a format that exposes its bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_ulp: Option<UlpStats>,
    /// The null the z-score is against.
    pub null: Option<NullKind>,
    /// Null mean.
    pub null_mean: Option<f64>,
    /// Null s.d. (floored at 1/√n).
    pub null_sd: Option<f64>,
    /// (pearson − null mean) / null s.d.
    pub z: Option<f64>,
    /// One-sided p-value of z.
    pub p: Option<f64>,
    /// Holm-adjusted p across the comparison's evidence tensors.
    pub p_adjusted: Option<f64>,
}

/// One tensor cited as evidence or counter-evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Cited {
    /// Tensor.
    pub tensor: String,
    /// Pearson.
    pub pearson: Option<f64>,
    /// z against its null.
    pub z: Option<f64>,
    /// Holm-adjusted p.
    pub p_adjusted: Option<f64>,
    /// Null used.
    pub null: Option<NullKind>,
}

/// A tensor that is not evidence, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Tensor.
    pub tensor: String,
    /// Why.
    pub reason: Exclusion,
}

/// The verdict on one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentVerdict {
    /// Component name.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// A sentence a journalist can quote.
    pub sentence: String,
    /// Compared tensors in the component.
    pub tensors: usize,
    /// Of which evidence (including init-prior).
    pub evidence: usize,
    /// Of which init-prior (judged by Pearson only).
    pub init_prior: usize,
    /// Evidence tensors supporting derivation (adjusted p < α and effect ≥ minimum).
    pub supporting: usize,
    /// Evidence tensors with adjusted p < α at all.
    pub significant: usize,
    /// Evidence tensors byte-for-byte (value-for-value) identical to A's.
    pub identical: usize,
    /// Mean fraction of sampled weights within 1 BF16 ULP of A's, over evidence tensors
    /// stored as BF16 on both sides.
    pub bf16_within_one_ulp: Option<f64>,
    /// Median Pearson over evidence tensors.
    pub median_pearson: Option<f64>,
    /// Median z.
    pub median_z: Option<f64>,
    /// Smallest Holm-adjusted p.
    pub min_p_adjusted: Option<f64>,
    /// Stouffer's combined z (assumes independent tensors; a summary, not the decision).
    pub stouffer_z: Option<f64>,
    /// The strongest evidence tensors (up to 5, by z).
    pub deciding: Vec<Cited>,
    /// The weakest evidence tensors (up to 5, by z): the counter-evidence to `derived`.
    pub counter: Vec<Cited>,
    /// Tensors of the component that are not evidence.
    pub not_evidence: Vec<Excluded>,
}

/// The verdict section of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Verdicts {
    /// Overall verdict: derived if any component is, independent if all are.
    pub overall: Verdict,
    /// The overall sentence.
    pub sentence: String,
    /// How the verdict was reached.
    pub method: Method,
    /// Per component, sorted by name.
    pub components: Vec<ComponentVerdict>,
    /// What this does not show: caveats that applied to this comparison.
    pub caveats: Vec<String>,
}

/// The decision rule, stated in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// Deciding statistic.
    pub statistic: &'static str,
    /// Multiple-testing correction.
    pub correction: &'static str,
    /// Family-wise error rate.
    pub alpha: f64,
    /// Minimum Pearson excess over the null mean.
    pub min_effect: f64,
    /// Fraction of evidence tensors that must support derivation.
    pub min_support_fraction: f64,
    /// Combination reported per component.
    pub combination: &'static str,
    /// Nulls, in order of preference.
    pub nulls: &'static str,
}
