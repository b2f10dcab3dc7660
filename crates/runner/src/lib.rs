//! `weightkin-runner`: from an audit recipe to a deterministic report.
//!
//! One module per stage of the design's data flow, in the order an audit runs them, wired
//! together by [`run`] (`run.rs`, the pipeline):
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | recipe | [`recipe`] | TOML → raw structs → validated [`Recipe`] (every problem with its line and column) |
//! | open | [`open`] | models opened by their format (headers only), renamed, described; file hashes ([`HashCache`]) |
//! | plan | [`plan`] | which tensor of B is compared with which of A, and why anything is not |
//! | align | [`align`] | layer alignment from the layer grids (`align = "auto"` re-pairs along it) |
//! | measure | [`measure`] | one streaming pass per pair, tensor metrics, layer × layer grids |
//! | calibrate | [`calibrate`] | nulls: reference models, cross-layer |
//! | judge | [`judge`] | roles, z and p per tensor, verdicts per component |
//! | report | [`report`] | the report model (a leaf: it imports no other stage) and its JSON, Markdown and HTML renderers |
//!
//! Each stage imports only stages before it (`report` none); a test reads the sources and
//! fails on any import cycle between them.
//!
//! The built-in plugins are registered in exactly one place, [`registry::builtin`]; metrics
//! from third-party shared libraries are added to that registry by [`dylib::load`].

pub mod align;
pub mod calibrate;
pub mod demo;
pub mod dylib;
mod error;
pub mod judge;
pub mod measure;
pub mod open;
mod options;
pub mod plan;
pub mod recipe;
pub mod registry;
pub mod report;
mod run;
mod stats;

use std::path::Path;

pub use error::Error;
pub use open::HashCache;
pub use options::{NoProgress, Progress, RunOptions};
pub use recipe::{adhoc_recipe, Recipe, RecipeError};
pub use report::{Report, ReportFormat};
pub use run::run;

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
