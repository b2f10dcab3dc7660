//! Audit recipes: TOML in, a validated [`Recipe`] out.
//!
//! Three phases, as in helix's and nushell's config handling:
//! 1. **parse** into raw serde structs (module `raw`) with `deny_unknown_fields` and spans;
//! 2. **validate** against the [`Registry`], collecting *every* problem with its line and
//!    column, so a user fixes a recipe in one round instead of one error per run;
//! 3. the result, [`Recipe`], holds compiled regexes, globs and built metrics: nothing
//!    downstream re-checks it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use regex::Regex;
use weightkin_core::{Metric, MetricSpec, Params, Registry};

use crate::report::ReportFormat;

mod adhoc;
mod diagnostic;
mod raw;
mod validate;

pub use adhoc::{adhoc_recipe, adhoc_recipe_with, Adhoc};
use diagnostic::Diagnostics;
pub use diagnostic::{suggest, Diagnostic, RecipeError};

/// Metrics a `[[compare]]` uses when it lists none.
pub const DEFAULT_METRICS: &[&str] = &[
    weightkin_metrics::cosine::NAME,
    weightkin_metrics::pearson::NAME,
];

/// Report formats written when `[report]` lists none.
pub const DEFAULT_FORMATS: &[ReportFormat] = &[ReportFormat::Json, ReportFormat::Markdown];

/// A validated recipe, ready to plan and run.
#[derive(Debug)]
pub struct Recipe {
    /// `[audit] name`.
    pub name: String,
    /// `[audit] description`.
    pub description: Option<String>,
    /// BLAKE3 of the recipe's bytes, hex.
    pub blake3: String,
    /// The recipe's text, exactly as read: the report embeds it, so that `weightkin verify`
    /// can run it again.
    pub source: String,
    /// Models by name (sorted).
    pub models: BTreeMap<String, ModelSpec>,
    /// Comparisons in recipe order.
    pub compares: Vec<CompareSpec>,
    /// Report formats to write, deduplicated, in canonical order.
    pub formats: Vec<ReportFormat>,
}

/// One `[models.NAME]` table.
#[derive(Debug)]
pub struct ModelSpec {
    /// The path exactly as written in the recipe (shown in reports).
    pub path_as_given: String,
    /// The path to open: relative paths are resolved against the recipe's directory; an
    /// `hf://` reference is kept as written (see [`ModelSpec::hub`]).
    pub path: PathBuf,
    /// The parsed reference, when the path is `hf://org/name[@revision][/subpath]`.
    pub hub: Option<weightkin_hub::HfRef>,
    /// Explicit format name, if given (already checked to be registered).
    pub format: Option<String>,
    /// Rename rules, applied in order with `replace_all`.
    pub rename: Vec<RenameRule>,
    /// Globs of fused tensors to compare as their parts (`NAME#q`, `NAME#k`, …), matched on
    /// stored names before renaming.
    pub split: Vec<String>,
    split_m: Vec<GlobMatcher>,
    /// Globs of 2-D tensors to present transposed (`NAME#T`), matched on stored names.
    pub transpose: Vec<String>,
    transpose_m: Vec<GlobMatcher>,
    /// Attention heads `(query, key/value)` as the recipe states them (`heads`, `kv-heads`),
    /// over what the file's metadata or `config.json` says.
    pub heads: Option<(usize, usize)>,
}

impl ModelSpec {
    /// Whether the recipe asks for the tensor stored as `name` to be split into its parts.
    pub fn splits(&self, name: &str) -> bool {
        self.split_m.iter().any(|g| g.is_match(name))
    }

    /// Whether the recipe asks for the tensor stored as `name` to be presented transposed.
    pub fn transposes(&self, name: &str) -> bool {
        self.transpose_m.iter().any(|g| g.is_match(name))
    }
}

/// One rename rule.
#[derive(Debug, Clone)]
pub struct RenameRule {
    /// Compiled pattern.
    pub from: Regex,
    /// Replacement (`$1`-style groups allowed).
    pub to: String,
    /// How a search found the pairs this rule makes, when a search did (`weightkin match
    /// --emit-recipe` writes it): the pairs keep their search's null.
    pub found: Option<Found>,
}

/// What a discovered pairing kept in a recipe says about how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `normalised`, `structure` or `content`.
    pub method: crate::report::PairMethod,
    /// Candidates the search chose among (the p-value is multiplied by it).
    pub candidates: usize,
}

/// One `[[compare]]` table.
pub struct CompareSpec {
    /// Display name: the recipe's `name`, or "A ↔ B".
    pub name: String,
    /// Model on side A.
    pub a: String,
    /// Model on side B.
    pub b: String,
    /// Include globs as written (empty: everything).
    pub include: Vec<String>,
    /// Exclude globs as written.
    pub exclude: Vec<String>,
    include_m: Vec<GlobMatcher>,
    exclude_m: Vec<GlobMatcher>,
    /// Metrics to compute, in recipe order, with their built runtime objects.
    pub metrics: Vec<BuiltMetric>,
    /// Layer × layer grids to compute, if asked for.
    pub grid: Option<GridSpec>,
    /// Whether to pair layers along the alignment recovered from the grids.
    pub align: Align,
    /// How tensors are paired.
    pub pairing: PairingMode,
    /// Whether B's MLP hidden units are aligned to A's before measuring.
    pub permutation: Permutation,
    /// Models declared independent of A, whose values form the null (`references`).
    pub references: Vec<String>,
    /// Globs of tensors that are evidence whatever the automatic checks say.
    pub evidence: Vec<String>,
    evidence_m: Vec<GlobMatcher>,
    /// Globs of tensors that are never evidence.
    pub not_evidence: Vec<String>,
    not_evidence_m: Vec<GlobMatcher>,
    /// Recipe-declared components, tried before the built-in patterns.
    pub components: Vec<ComponentSpec>,
}

/// A recipe-declared component: a name and the globs of its tensors.
pub struct ComponentSpec {
    /// Component name.
    pub name: String,
    /// Globs as written.
    pub include: Vec<String>,
    include_m: Vec<GlobMatcher>,
}

impl ComponentSpec {
    /// Whether a (renamed) tensor belongs to this component.
    pub fn selects(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.include_m.iter().any(|g| g.is_match(&path))
    }
}

/// A metric as a compare uses it: its registered description and the runnable object built
/// from the recipe's parameters.
pub struct BuiltMetric {
    /// The registered spec (name, range, needs, …).
    pub spec: &'static MetricSpec,
    /// The built metric.
    pub metric: Box<dyn Metric>,
    /// The parameters it was built with (the compare's `params.NAME` table): what a stage
    /// that computes a built-in metric its own way rebuilds it from (the layer grids'
    /// prepared CKA, [`crate::measure::grid`]).
    pub params: Params,
}

/// `grid = { … }` of a compare: which classes get a layer × layer grid, with which metric.
pub struct GridSpec {
    /// The metric computed in every cell.
    pub metric: BuiltMetric,
    /// Globs over class names (`model.layers.*.mlp.up_proj.weight`); empty: every class that
    /// has at least two layers in both models.
    pub classes: Vec<String>,
    classes_m: Vec<GlobMatcher>,
}

impl GridSpec {
    /// Whether a class gets a grid.
    pub fn selects(&self, class: &str) -> bool {
        let path = glob_path(class);
        self.classes_m.is_empty() || self.classes_m.iter().any(|g| g.is_match(&path))
    }
}

/// How a compare pairs tensors (`pairing = "auto" | "names"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingMode {
    /// Equal names after the models' rename rules (the default when a model has any).
    Names,
    /// Names, then normalised names, structure and content ([`crate::correspond`]); the
    /// default when neither model has rename rules.
    Auto,
}

/// Whether a compare aligns hidden units (`permutation = "off" | "auto"`; default `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permutation {
    /// Units compared in stored order.
    Off,
    /// B's MLP hidden units matched to A's by assignment, judged against the same alignment
    /// across layers ([`crate::align::units`]).
    Auto,
}

/// How a compare pairs layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Layer i of A with layer i of B (by name).
    Index,
    /// Layer f(j) of A with layer j of B, f the monotone alignment recovered from the grids.
    Auto,
}

impl fmt::Debug for CompareSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareSpec")
            .field("name", &self.name)
            .field("a", &self.a)
            .field("b", &self.b)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field(
                "metrics",
                &self.metrics.iter().map(|m| m.spec.name).collect::<Vec<_>>(),
            )
            .field("grid", &self.grid.as_ref().map(|g| g.metric.spec.name))
            .field("align", &self.align)
            .finish()
    }
}

impl CompareSpec {
    /// Whether the recipe declares this tensor evidence.
    pub fn forced_evidence(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.evidence_m.iter().any(|g| g.is_match(&path))
    }

    /// Whether the recipe declares this tensor not evidence.
    pub fn forced_not_evidence(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.not_evidence_m.iter().any(|g| g.is_match(&path))
    }

    /// Whether a (renamed) tensor name passes the include/exclude filters.
    pub fn selects(&self, name: &str) -> bool {
        let path = glob_path(name);
        (self.include_m.is_empty() || self.include_m.iter().any(|g| g.is_match(&path)))
            && !self.exclude_m.iter().any(|g| g.is_match(&path))
    }
}

/// Tensor names are dotted; globs treat `.` as the segment separator, so `*` stays within one
/// segment and `**` spans any number (`model.layers.*.mlp.**`).
fn glob_path(s: &str) -> String {
    s.replace('.', "/")
}

fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    globset::GlobBuilder::new(&glob_path(pattern))
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
}

/// Parses and validates a recipe. `path` names the file in diagnostics and anchors relative
/// model paths.
pub fn parse(path: &Path, source: &str, registry: &Registry) -> Result<Recipe, RecipeError> {
    let raw: raw::RawRecipe = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            return Err(RecipeError::at(
                path,
                source,
                e.span().map_or(0, |s| s.start),
                e.message().trim(),
            ))
        }
    };
    let mut diags = Diagnostics::new(source);
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let recipe = validate::validate(raw, base_dir, registry, &mut diags);
    diags.finish(path)?;
    Ok(recipe)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs_use_dots_as_separators() {
        let g = compile_glob("model.layers.*.mlp.**").unwrap();
        assert!(g.is_match(glob_path("model.layers.3.mlp.up_proj.weight")));
        assert!(!g.is_match(glob_path("model.layers.3.attn.q.weight")));
        let g = compile_glob("**.weight").unwrap();
        assert!(g.is_match(glob_path("a.b.c.weight")));
        assert!(!g.is_match(glob_path("a.b.bias")));
    }

    #[test]
    fn permutation_is_off_by_default_and_checked() {
        let reg = crate::registry::builtin().unwrap();
        let recipe = |extra: &str| {
            format!(
                "[audit]\nname = \"t\"\n[models.a]\npath = \"a.safetensors\"\n\
                 [models.b]\npath = \"b.safetensors\"\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\n{extra}\n"
            )
        };
        let p = Path::new("r.toml");
        let r = parse(p, &recipe(""), &reg).unwrap();
        assert_eq!(r.compares[0].permutation, Permutation::Off);
        let r = parse(p, &recipe("permutation = \"auto\""), &reg).unwrap();
        assert_eq!(r.compares[0].permutation, Permutation::Auto);
        let err = parse(p, &recipe("permutation = \"atuo\""), &reg).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        let msg = &err.diagnostics[0].message;
        assert!(msg.contains("unknown `permutation` `atuo`"), "{msg}");
        assert!(msg.contains("did you mean"), "{msg}");
        // The ad-hoc recipe of `compare --align-units` asks for it.
        let text = adhoc_recipe_with("a.safetensors", "b.safetensors", &[], &[], &[], true);
        let r = parse(p, &text, &reg).unwrap();
        assert_eq!(r.compares[0].permutation, Permutation::Auto);
    }
}
