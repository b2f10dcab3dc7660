//! `weightkin-runner`: from an audit recipe to a deterministic report.
//!
//! The data flow is the design card's: recipe TOML → [`recipe::parse`] (raw structs, then
//! validation against the [`weightkin_core::Registry`] collecting every error with its line
//! and column) → [`execute::run`] (open models, [`pairing`], one fused pass per tensor pair,
//! summaries) → [`report::Report`] → JSON and Markdown renderers.
//!
//! The built-in plugins are registered in exactly one place, [`registry::builtin`]; metrics
//! from third-party shared libraries are added to that registry by
//! [`weightkin_plugin_host::load`].

pub mod demo;
pub mod execute;
pub mod grid;
pub mod hashcache;
mod html;
mod markdown;
pub mod pairing;
pub mod recipe;
pub mod registry;
pub mod report;
mod stats;
pub mod synth;
pub mod verdict;

use std::path::{Path, PathBuf};

pub use execute::{run, NoProgress, Progress, RunOptions};
pub use hashcache::HashCache;
pub use recipe::{Recipe, RecipeError};
pub use report::{Report, ReportFormat};

/// Errors from running an audit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The recipe file could not be read.
    #[error("cannot read recipe {}", path.display())]
    ReadRecipe {
        /// The recipe path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The recipe is invalid; the error lists every problem.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A model could not be opened.
    #[error("cannot open model `{model}` ({path})")]
    OpenModel {
        /// Model name in the recipe.
        model: String,
        /// Its path as written.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// Rename rules mapped two tensors of one model to the same name.
    #[error(
        "model `{model}`: rename rules map both `{first}` and `{second}` to `{renamed}`; \
         make the rules more specific"
    )]
    RenameCollision {
        /// Model name.
        model: String,
        /// The name both became.
        renamed: String,
        /// First original name.
        first: String,
        /// Second original name.
        second: String,
    },
    /// Reading or converting tensor data failed during a comparison.
    #[error("comparison `{compare}`: tensor `{tensor}`")]
    Measure {
        /// The comparison.
        compare: String,
        /// The (renamed) tensor.
        tensor: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// A report file could not be written.
    #[error("cannot write report {}", path.display())]
    WriteReport {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A shared-library plugin could not be loaded ([`weightkin_plugin_host::load`]); the
    /// host's error names the library and says why.
    #[error(transparent)]
    Plugin(#[from] weightkin_plugin_host::Error),
    /// A broken invariant inside weightkin (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Reads, validates and runs the recipe at `path`.
pub fn audit_file(
    path: &Path,
    registry: &weightkin_core::Registry,
    opts: &RunOptions<'_>,
) -> Result<(Recipe, Report), Error> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::ReadRecipe {
        path: path.to_owned(),
        source,
    })?;
    let recipe = recipe::parse(path, &source, registry)?;
    let report = run(&recipe, registry, opts)?;
    Ok((recipe, report))
}

/// The recipe `weightkin compare A B` runs: two models named `a` and `b` and one comparison.
/// Built as TOML text so that ad-hoc comparisons go through exactly the same validation as
/// recipes (and their report carries a recipe hash like any other).
pub fn adhoc_recipe(
    a: &str,
    b: &str,
    metrics: &[String],
    include: &[String],
    exclude: &[String],
) -> String {
    let mut root = toml::Table::new();
    let mut audit = toml::Table::new();
    audit.insert("name".into(), format!("compare {a} {b}").into());
    root.insert("audit".into(), audit.into());
    let mut models = toml::Table::new();
    for (name, path) in [("a", a), ("b", b)] {
        let mut m = toml::Table::new();
        m.insert("path".into(), path.into());
        models.insert(name.into(), m.into());
    }
    root.insert("models".into(), models.into());
    let mut cmp = toml::Table::new();
    cmp.insert("a".into(), "a".into());
    cmp.insert("b".into(), "b".into());
    let list = |v: &[String]| toml::Value::Array(v.iter().map(|s| s.as_str().into()).collect());
    if !metrics.is_empty() {
        cmp.insert("metrics".into(), list(metrics));
    }
    if !include.is_empty() {
        cmp.insert("include".into(), list(include));
    }
    if !exclude.is_empty() {
        cmp.insert("exclude".into(), list(exclude));
    }
    root.insert(
        "compare".into(),
        toml::Value::Array(vec![toml::Value::Table(cmp)]),
    );
    toml::to_string(&root).unwrap_or_default()
}
