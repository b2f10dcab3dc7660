//! The report model: one canonical, serialisable value that every renderer reads.
//!
//! Determinism rules: every collection is ordered (vectors sorted by name, `BTreeMap`s), every
//! float is rounded to [`DIGITS`] decimals when the report is built, and nothing
//! machine-specific (absolute paths, times, thread counts) is stored. Same inputs → same bytes.
//!
//! The JSON form is documented in the README ("Report schema"); bump [`SCHEMA_VERSION`] on
//! any incompatible change.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};
use weightkin_core::{ExampleAxis, ExampleSample, Undefined};

pub mod generator;
mod html;
pub(crate) mod markdown;
mod pairing;
pub mod publish;
mod verdict;

pub use pairing::{
    CorrespondenceReport, Coverage, Kind, Mapping, PairMethod, PairedBy, Reason, Unpaired,
};
pub use verdict::{
    Cited, ComponentVerdict, Evidence, Excluded, Exclusion, Method, NullKind, Role, Verdict,
    Verdicts,
};

/// Version of the JSON report schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Decimal places kept for metric values. Enough to tell 0.999999 from 1, few enough that
/// last-bit differences between CPUs' float paths do not change the bytes.
pub const DIGITS: i32 = 9;

/// Rounds to [`DIGITS`] decimals (and turns -0.0 into 0.0).
pub fn round(x: f64) -> f64 {
    let s = 10f64.powi(DIGITS);
    let r = (x * s).round() / s;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// A rendered output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    /// Canonical JSON (`report.json`).
    Json,
    /// Markdown for people and pull requests (`report.md`).
    Markdown,
    /// A self-contained HTML page with heatmaps and plots (`report.html`).
    Html,
}

impl ReportFormat {
    /// Every format.
    pub const ALL: &'static [ReportFormat] = &[
        ReportFormat::Json,
        ReportFormat::Markdown,
        ReportFormat::Html,
    ];

    /// Name used in recipes and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<ReportFormat> {
        ReportFormat::ALL.iter().copied().find(|f| f.name() == s)
    }

    /// File name the report is written to.
    pub const fn file_name(self) -> &'static str {
        match self {
            ReportFormat::Json => "report.json",
            ReportFormat::Markdown => "report.md",
            ReportFormat::Html => "report.html",
        }
    }

    /// Renders `report` in this format.
    pub fn render(self, report: &Report) -> String {
        match self {
            ReportFormat::Json => report.to_json(),
            ReportFormat::Markdown => markdown::render(report),
            ReportFormat::Html => html::render(report),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The tool that wrote it.
    pub tool: Tool,
    /// The audit as declared in the recipe.
    pub audit: AuditInfo,
    /// Every model the recipe declares, sorted by name.
    pub models: Vec<ModelReport>,
    /// Comparisons in recipe order.
    pub comparisons: Vec<Comparison>,
}

/// Tool name and version.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// Always "weightkin".
    pub name: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// Audit metadata.
#[derive(Debug, Clone, Serialize)]
pub struct AuditInfo {
    /// `[audit] name`.
    pub name: String,
    /// `[audit] description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// BLAKE3 of the recipe bytes (hex).
    pub recipe_blake3: String,
    /// The recipe's text, exactly as run (model paths as written): `weightkin verify` runs
    /// it again. For `weightkin compare`, the recipe the command line stands for.
    pub recipe: String,
}

/// One model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Name in the recipe.
    pub name: String,
    /// Path as written in the recipe.
    pub path: String,
    /// Format that opened it.
    pub format: &'static str,
    /// Its files.
    pub files: Vec<FileReport>,
    /// Number of tensors.
    pub tensors: usize,
    /// Total elements over all tensors.
    pub parameters: u64,
    /// Tensor count per dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// What the format did to present the tensors (renaming, undone converter conventions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<weightkin_core::Transform>,
    /// For an `hf://` model: the repository, the commit it resolved to, where the bytes came
    /// from and what identifies them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubReport>,
}

/// One file of a model.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Path relative to the model path (the file name for a single-file model); for an
    /// `hf://` model, the path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the contents (hex). Empty (and left out) for a hub file that was only
    /// partly fetched: [`HubReport::tensors`] identifies what was read of it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// The hub's SHA-256 of the whole file (its LFS object id), for an `hf://` model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Where an `hf://` model came from and what identifies the bytes audited.
#[derive(Debug, Clone, Serialize)]
pub struct HubReport {
    /// `org/name`.
    pub repo: String,
    /// The revision asked for (`main` when none was given).
    pub revision: String,
    /// The commit it resolved to: `hf://org/name@{commit}` audits the same bytes again.
    pub commit: String,
    /// `hf-cache` (a complete local snapshot) or `hub` (fetched by range requests, possibly
    /// in an earlier run).
    pub origin: weightkin_hub::Origin,
    /// What identifies the bytes.
    pub identified_by: Identity,
    /// Tensor name (as stored) → BLAKE3 of its stored bytes, for every tensor read from a
    /// file that is not wholly present; empty when [`Identity::FileBlake3`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tensors: BTreeMap<String, String>,
}

/// What identifies an `hf://` model's audited bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// Every file is whole: each file's BLAKE3 (and, where the hub lists one, its SHA-256,
    /// verified for fetched files) is in `files`.
    FileBlake3,
    /// Some file was only partly fetched, so it has no whole-file hash: the BLAKE3 of each
    /// tensor read from it is in `tensors`; the hub's SHA-256 in `files` names the whole
    /// file but was not verified.
    TensorBlake3,
}

impl Identity {
    /// The sentence renderers print.
    pub fn text(self) -> &'static str {
        match self {
            Identity::FileBlake3 => "whole files: BLAKE3 of each file",
            Identity::TensorBlake3 => {
                "partly fetched: BLAKE3 of each tensor read (no whole-file hash; the hub's \
                 SHA-256 names the file but was not verified)"
            }
        }
    }
}

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Display name.
    pub name: String,
    /// Model on side A.
    pub a: String,
    /// Model on side B.
    pub b: String,
    /// Metrics computed, in recipe order.
    pub metrics: Vec<String>,
    /// Include globs (empty: all).
    pub include: Vec<String>,
    /// Exclude globs.
    pub exclude: Vec<String>,
    /// Calibrated verdicts per component, with evidence and caveats.
    pub verdicts: Verdicts,
    /// Counts.
    pub summary: Summary,
    /// Per tensor class, sorted by class.
    pub classes: Vec<ClassSummary>,
    /// Every compared pair, sorted by name.
    pub tensors: Vec<TensorRow>,
    /// Every tensor not compared, with its reason, sorted by name.
    pub not_compared: Vec<Unpaired>,
    /// Layer × layer grids, sorted by class (empty unless the recipe asks for them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grids: Vec<Grid>,
    /// Classes the grid settings selected that got no grid, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_grids: Vec<SkippedGrid>,
    /// Layer alignments recovered from the grids, one per layer stack.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alignments: Vec<Alignment>,
    /// The correspondence automatic pairing found beyond equal names; absent when every
    /// pair was paired by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correspondence: Option<CorrespondenceReport>,
    /// The residual-stream alignment (`permutation = "auto"`); absent when not asked for or
    /// when the models have no token embedding to align on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual: Option<ResidualReport>,
    /// The MLP hidden-unit alignment (`permutation = "auto"`); absent when not asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<UnitsReport>,
}

/// What the residual-stream alignment ([`crate::align::residual`]) found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResidualReport {
    /// The tower aligned (`text`).
    pub tower: String,
    /// The token embedding it was fitted on (A's name).
    pub embedding: String,
    /// Which rows correspond: shared tokens (and where the token strings came from) or row
    /// order (and why).
    pub rows: String,
    /// Tokens both vocabularies hold (when matched by token strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_tokens: Option<usize>,
    /// Embedding rows used (fit and check halves).
    pub rows_used: usize,
    /// Sampled rows dropped (all zero, not finite, or repeated).
    pub rows_dropped: usize,
    /// A's residual width.
    pub width_a: usize,
    /// B's residual width.
    pub width_b: usize,
    /// Held-out fit of the identity (equal widths only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_identity: Option<f64>,
    /// Held-out fit of the best signed permutation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_permutation: Option<f64>,
    /// Held-out fit of the orthogonal Procrustes rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_rotation: Option<f64>,
    /// Held-out fit of the basis chosen.
    pub fit: f64,
    /// `identity`, `signed permutation`, `rotation`, `projection` (a rotation between widths)
    /// or `not aligned`.
    pub basis: String,
    /// Whether the chosen basis fits the held-out rows well enough to be reported as found
    /// (≥ 0.8; wording only, never evidence).
    pub recovered: bool,
    /// Dimensions matched by the permutation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<usize>,
    /// Matched dimensions not at A's index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<usize>,
    /// Matched dimensions with flipped sign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_flips: Option<usize>,
    /// Token rows at which the embedding and output head are compared, when B's vocabulary
    /// is not A's in A's order (B's rows presented in A's token order over the shared tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_rows: Option<usize>,
    /// B tensors presented in A's basis (or token order).
    pub tensors: usize,
    /// Tensors not compared because of the alignment (listed under not compared).
    pub withheld: usize,
    /// What could not be aligned, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// One sentence (or three) on what the residual alignment fitted and chose, for the Markdown
/// and HTML reports.
pub fn residual_text(r: &ResidualReport) -> String {
    let fits = [
        ("identity", r.fit_identity),
        ("signed permutation", r.fit_permutation),
        ("rotation", r.fit_rotation),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} {v:.4}")))
    .collect::<Vec<_>>()
    .join(", ");
    let mut t = format!(
        "Tower `{}`, fitted on `{}` (A {} wide, B {} wide) over {}: {} rows used ({} dropped).",
        r.tower, r.embedding, r.width_a, r.width_b, r.rows, r.rows_used, r.rows_dropped
    );
    if !fits.is_empty() {
        t.push_str(&format!(" Held-out fit: {fits}."));
    }
    t.push_str(&format!(
        " Basis: {}{}; {} tensors of B presented in A's basis, {} withheld from the \
         evidence.",
        r.basis,
        if r.recovered {
            " (recovered)"
        } else if r.basis == "identity" || r.basis == "not aligned" {
            " (no basis recovered: tensors compared as stored)"
        } else {
            " (not recovered: the best fit, applied so that the layers can be compared, and \
             judged against the same alignment across layers)"
        },
        r.tensors,
        r.withheld
    ));
    if let Some(n) = r.vocabulary_rows {
        t.push_str(&format!(
            " Embedding and output head compared over {n} shared tokens in A's token order."
        ));
    }
    t
}

/// What unit alignment ([`crate::align::units`]) found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitsReport {
    /// Per layer stack with an MLP on both sides, sorted by name.
    pub stacks: Vec<UnitStack>,
    /// What was not aligned, and why.
    pub skipped: Vec<String>,
    /// The finding a recovered permutation or cut is: a sentence, or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

/// One stack's MLP unit alignment.
#[derive(Debug, Clone, Serialize)]
pub struct UnitStack {
    /// The stack (`encoder.layer`).
    pub stack: String,
    /// What was aligned: `mlp units` or `attention heads` (KV groups with their query heads).
    pub what: String,
    /// Mean matched cosine of the cross-layer alignments (A's layer i with B's layer j ≠ i).
    pub null_similarity_mean: f64,
    /// Their s.d. (floored at 0.001).
    pub null_similarity_sd: f64,
    /// How many cross-layer alignments the null has.
    pub null_alignments: usize,
    /// Per layer, in layer order.
    pub layers: Vec<UnitLayer>,
}

/// One layer's MLP unit alignment.
#[derive(Debug, Clone, Serialize)]
pub struct UnitLayer {
    /// Layer index.
    pub layer: u32,
    /// A's hidden units.
    pub units_a: usize,
    /// B's hidden units.
    pub units_b: usize,
    /// Units matched (B's, all of them).
    pub matched: usize,
    /// Matched units not at A's index, or (attention) with their query heads in another
    /// order (0: B's units are in A's order).
    pub moved: usize,
    /// Mean cosine of the matched units' weights.
    pub similarity: f64,
    /// Its z against the cross-layer alignments.
    pub similarity_z: f64,
    /// Whether the alignment stands out from the cross-layer alignments (z ≥ 5).
    pub recovered: bool,
    /// Mean Pearson of the layer's MLP tensors before alignment (none if the widths differ).
    pub pearson_before: Option<f64>,
    /// Mean Pearson after alignment.
    pub pearson_after: Option<f64>,
    /// How the units were matched when not by the assignment (a layer too wide for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matching: Option<String>,
    /// The tensors aligned (A's names).
    pub tensors: Vec<String>,
}

/// One metric for every (layer of A, layer of B) of one tensor class.
#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    /// The class (`model.layers.*.mlp.up_proj.weight`).
    pub class: String,
    /// Its layer stack (`model.layers`).
    pub stack: String,
    /// The metric in every cell.
    pub metric: String,
    /// A's layers (rows), ascending.
    pub layers_a: Vec<u32>,
    /// B's layers (columns), ascending.
    pub layers_b: Vec<u32>,
    /// `values[i][j]`: metric of A's `layers_a[i]` against B's `layers_b[j]`.
    pub values: Vec<Vec<Option<f64>>>,
    /// Mean over cells with equal layer indices.
    pub diagonal_mean: Option<f64>,
    /// Mean over all other cells: what "same class, different layer" looks like.
    pub off_diagonal_mean: Option<f64>,
    /// The subset of examples every cell's metric was evaluated on, when the class's tensors
    /// are larger than the metric's `max-elements` (all cells share one shape, hence one
    /// subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsampled: Option<Subsampled>,
}

/// A class the grid settings selected that got no grid.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedGrid {
    /// The class.
    pub class: String,
    /// Why it has no grid.
    pub reason: GridSkip,
}

/// Why a selected class got no layer grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridSkip {
    /// Only model A has the class.
    OnlyInA,
    /// Only model B has the class.
    OnlyInB,
    /// Neither model has two layers of it.
    FewerThanTwoLayers,
    /// Some layer is not a floating-point tensor.
    NonFloat,
    /// Shapes differ between layers or models.
    ShapesDiffer,
    /// The grid metric is undefined in every cell.
    Undefined {
        /// The grid metric.
        metric: String,
    },
}

impl fmt::Display for GridSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GridSkip::OnlyInA => f.write_str("only model A has this class"),
            GridSkip::OnlyInB => f.write_str("only model B has this class"),
            GridSkip::FewerThanTwoLayers => f.write_str("fewer than two layers in both models"),
            GridSkip::NonFloat => f.write_str("non-float dtype"),
            GridSkip::ShapesDiffer => f.write_str("shapes differ between layers or models"),
            GridSkip::Undefined { metric } => {
                write!(f, "{metric} is undefined for every cell of this class")
            }
        }
    }
}

/// Serialised as its text: the report states the reason in words.
impl Serialize for GridSkip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// B's layer `b` matched to A's layer `a`.
#[derive(Debug, Clone, Serialize)]
pub struct LayerMatch {
    /// Layer of B.
    pub b: u32,
    /// Layer of A.
    pub a: u32,
    /// The (class-averaged) grid value of the match.
    pub score: Option<f64>,
}

/// The alignment of B's layers to A's for one layer stack.
#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// The stack (`model.layers`).
    pub stack: String,
    /// Metric of the grids it was computed from.
    pub metric: String,
    /// Classes whose grids were averaged.
    pub classes: Vec<String>,
    /// Best monotone (non-decreasing) mapping, one entry per layer of B.
    pub mapping: Vec<LayerMatch>,
    /// Mean grid value along the mapping.
    pub score: Option<f64>,
    /// Mean grid value off the mapping.
    pub off_mapping_mean: Option<f64>,
    /// The best A layer for each B layer, without the monotonicity constraint.
    pub best_match: Vec<LayerMatch>,
    /// Whether the alignment reflects a real correspondence: its mean exceeds the mean off it
    /// by at least the verdict's minimum effect. A meaningless alignment is never applied.
    pub meaningful: bool,
    /// Whether tensors were paired along `mapping` (`align = "auto"` and `meaningful`).
    pub applied: bool,
}

/// Counts for one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Tensor pairs compared.
    pub compared: usize,
    /// Elements compared (per side).
    pub elements: u64,
    /// Tensors not compared (both sides counted).
    pub not_compared: usize,
    /// Tensors not compared, by reason (serialised keyed by the reason's text, in text
    /// order).
    #[serde(serialize_with = "by_reason_text")]
    pub not_compared_by_reason: BTreeMap<Reason, usize>,
}

impl Summary {
    /// Tensors not compared, keyed by the reason's text, in text order (the report's order).
    pub fn not_compared_by_text(&self) -> BTreeMap<&'static str, usize> {
        by_text(&self.not_compared_by_reason)
    }
}

fn by_text(counts: &BTreeMap<Reason, usize>) -> BTreeMap<&'static str, usize> {
    counts.iter().map(|(r, n)| (r.text(), *n)).collect()
}

/// Serialises counts by reason as a map keyed by each reason's text, sorted by that text.
fn by_reason_text<S: Serializer>(
    counts: &BTreeMap<Reason, usize>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(by_text(counts))
}

/// Statistics of one metric over the tensors of a class.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Metric name.
    pub metric: String,
    /// Median of the defined values (mean of the middle two for an even count).
    pub median: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// How many tensors had no value.
    pub undefined: usize,
}

/// A tensor class within one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ClassSummary {
    /// The class: tensor name with its layer index replaced by `*`.
    pub class: String,
    /// Broad role.
    pub kind: Kind,
    /// Number of tensors.
    pub count: usize,
    /// Layer indices present, ascending (empty for unlayered classes).
    pub layers: Vec<u32>,
    /// Per metric, in recipe order.
    pub stats: Vec<Stats>,
    /// Per metric: the value at each entry of `layers` (`null` where undefined). Empty for
    /// unlayered classes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_layer: BTreeMap<String, Vec<Option<f64>>>,
}

/// A metric value against the metric's own null.
#[derive(Debug, Clone, Serialize)]
pub struct MetricNull {
    /// Null samples (permutations).
    pub samples: usize,
    /// Their mean.
    pub mean: f64,
    /// Their s.d. (floored at 0.001).
    pub sd: f64,
    /// (value − mean) / s.d.
    pub z: f64,
    /// One-sided normal p-value of z.
    pub p: f64,
}

/// The subset of examples a tensor metric was evaluated on: `examples` of the tensor's `of`
/// rows (or columns), evenly strided (example `i` is `⌊i · of / examples⌋`), the same in A and
/// B. Taken when a pair holds more elements per side than the metric's `max-elements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Subsampled {
    /// The axis holding the examples: "rows" or "columns".
    pub axis: ExampleAxis,
    /// Examples kept.
    pub examples: usize,
    /// Examples in the tensor.
    pub of: usize,
}

impl From<ExampleSample> for Subsampled {
    fn from(s: ExampleSample) -> Subsampled {
        Subsampled {
            axis: s.axis,
            examples: s.kept,
            of: s.examples,
        }
    }
}

impl Subsampled {
    /// In words, for the human-readable renderers: "2,048 of 32,768 rows".
    pub fn text(&self) -> String {
        let axis = match self.axis {
            ExampleAxis::Rows => "rows",
            ExampleAxis::Columns => "columns",
        };
        format!(
            "{} of {} {axis}",
            thousands(self.examples as u64),
            thousands(self.of as u64)
        )
    }
}

/// Integer with thousands separators: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One compared tensor pair.
#[derive(Debug, Clone, Serialize)]
pub struct TensorRow {
    /// Normalised name.
    pub name: String,
    /// Original name in A, if renaming changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_name: Option<String>,
    /// Original name in B, if renaming changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_name: Option<String>,
    /// Class.
    pub class: String,
    /// Layer index.
    pub layer: Option<u32>,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Dtype in A.
    pub dtype_a: String,
    /// Dtype in B.
    pub dtype_b: String,
    /// Metric values (rounded); `null` when undefined.
    pub values: BTreeMap<String, Option<f64>>,
    /// Why a metric is undefined, for those that are.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub undefined: BTreeMap<String, Undefined>,
    /// Metrics with a null of their own (CKA's row-permutation null): the value's z-score.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_nulls: BTreeMap<String, MetricNull>,
    /// Tensor metrics evaluated on a subset of examples, because the pair is larger than the
    /// metric's `max-elements`: which subset. Absent for metrics that saw whole tensors.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subsampled: BTreeMap<String, Subsampled>,
    /// How the pair was found; absent when it was paired by equal names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_by: Option<PairedBy>,
    /// How the pair counts for the verdict, and its statistics against the null.
    pub evidence: Option<Evidence>,
}

impl Report {
    /// Canonical JSON: pretty-printed, trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising plain structs, maps and finite floats cannot fail; if it ever did, an
        // empty object is still valid JSON and the tests would catch it.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        s.push('\n');
        s
    }
}

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write report {}", path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A metric value with fixed precision (6 decimals) for the human-readable renderers;
/// "—" when undefined.
pub fn fixed(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |x| format!("{x:.6}"))
}

/// A z-score with one decimal for the human-readable renderers; "—" when there is none.
pub fn z_text(z: Option<f64>) -> String {
    z.map_or_else(|| "—".to_owned(), |z| format!("{z:.1}"))
}

impl TensorRow {
    /// One metric of the pair in words, for the human-readable renderers: its value with
    /// [`fixed`] precision, `undefined: <reason>`, or "—" when it has neither.
    pub fn value_text(&self, metric: &str) -> String {
        match (
            self.values.get(metric).copied().flatten(),
            self.undefined.get(metric),
        ) {
            (Some(v), _) => fixed(Some(v)),
            (None, Some(why)) => format!("undefined: {why}"),
            (None, None) => "—".to_owned(),
        }
    }
}

impl Alignment {
    /// The mapping as text, one `b→a` per layer of B: `0→0 1→2 2→4`.
    pub fn mapping_text(&self) -> String {
        let pairs: Vec<String> = self
            .mapping
            .iter()
            .map(|m| format!("{}→{}", m.b, m.a))
            .collect();
        pairs.join(" ")
    }
}

/// Mean of `v`, rounded; `None` when empty.
pub fn rounded_mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| round(v.iter().sum::<f64>() / v.len() as f64))
}

/// Median, min and max of `values` (already rounded).
pub fn stats(metric: &str, values: &[Option<f64>]) -> Stats {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some(round((v[n / 2 - 1] + v[n / 2]) / 2.0)),
    };
    Stats {
        metric: metric.to_owned(),
        median,
        min: v.first().copied(),
        max: v.last().copied(),
        undefined: values.len() - v.len(),
    }
}

/// Per-class summaries of a comparison's rows, sorted by class: the metric statistics over the
/// class's tensors and, for layered classes, each metric layer by layer.
pub fn class_summaries(rows: &[TensorRow], metrics: &[String]) -> Vec<ClassSummary> {
    let mut by_class: BTreeMap<&str, Vec<&TensorRow>> = BTreeMap::new();
    for r in rows {
        by_class.entry(&r.class).or_default().push(r);
    }
    by_class
        .into_iter()
        .map(|(class, members)| {
            // Within a class, names differ only in the layer index, so layers are unique.
            let mut layered: Vec<(u32, &TensorRow)> = members
                .iter()
                .filter_map(|r| r.layer.map(|l| (l, *r)))
                .collect();
            layered.sort_by_key(|(l, _)| *l);
            let layers: Vec<u32> = layered.iter().map(|(l, _)| *l).collect();
            let value = |r: &TensorRow, m: &str| r.values.get(m).copied().flatten();
            let per_layer = if layered.is_empty() {
                BTreeMap::new()
            } else {
                metrics
                    .iter()
                    .map(|m| {
                        (
                            m.clone(),
                            layered.iter().map(|(_, r)| value(r, m)).collect(),
                        )
                    })
                    .collect()
            };
            ClassSummary {
                per_layer,
                class: class.to_owned(),
                kind: Kind::of(class),
                count: members.len(),
                layers,
                stats: metrics
                    .iter()
                    .map(|m| {
                        let vals: Vec<Option<f64>> = members.iter().map(|r| value(r, m)).collect();
                        stats(m, &vals)
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_stable_and_has_no_negative_zero() {
        assert_eq!(round(1.0), 1.0);
        assert_eq!(round(0.123_456_789_49), 0.123_456_789);
        assert_eq!(round(-1e-12).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn stats_of_values() {
        let s = stats("m", &[Some(3.0), None, Some(1.0), Some(2.0), Some(4.0)]);
        assert_eq!(
            (s.median, s.min, s.max, s.undefined),
            (Some(2.5), Some(1.0), Some(4.0), 1)
        );
        let s = stats("m", &[None]);
        assert_eq!((s.median, s.min, s.max, s.undefined), (None, None, None, 1));
    }

    #[test]
    fn value_and_z_texts() {
        let row = TensorRow {
            name: "w".to_owned(),
            a_name: None,
            b_name: None,
            class: "w".to_owned(),
            layer: None,
            shape: vec![2, 2],
            dtype_a: "F32".to_owned(),
            dtype_b: "F32".to_owned(),
            values: BTreeMap::from([("cosine".to_owned(), Some(0.5)), ("cka".to_owned(), None)]),
            undefined: BTreeMap::from([("cka".to_owned(), Undefined::TooFewExamples)]),
            metric_nulls: BTreeMap::new(),
            subsampled: BTreeMap::new(),
            paired_by: None,
            evidence: None,
        };
        assert_eq!(row.value_text("cosine"), "0.500000");
        assert_eq!(
            row.value_text("cka"),
            "undefined: too few rows for the estimator"
        );
        assert_eq!(row.value_text("pearson"), "—");
        assert_eq!(z_text(Some(-2.26)), "-2.3");
        assert_eq!(z_text(None), "—");
    }
}
