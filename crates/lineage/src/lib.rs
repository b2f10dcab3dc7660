//! `weightkin-lineage`: from one audit ("is B derived from A?") to a hub ("what here
//! descends from A?") without auditing every pair (issue 21).
//!
//! ```text
//! models ──sketch (weightkin_runner::sketch, one pass each)──▶ sketches ──store (Parquet)──▶ sketches.parquet
//!        ──search (blocked by architecture, calibrated null, Bonferroni over the hub)──▶ candidate pairs
//!        ──audit (exactly `weightkin compare`)──▶ verdicts ──graph──▶ graph.json, graph.html
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`store`] | sketches as Parquet, one row per tensor, schema versioned |
//! | [`search`] | candidate pairs: per-tensor Fisher z of sketch Pearson, Stouffer per component, a measured null, a threshold that accounts for the search |
//! | [`graph`] | exact audits of the candidates, `derived` edges, families, direction cues, JSON and HTML/SVG |
//! | [`simhub`] | a simulated hub of model families with known truth, and the scoring of a graph against it |
//!
//! The sketch itself lives in the runner (`weightkin_runner::sketch`) beside the stages it
//! reuses (naming conventions, roles, views); this crate adds what needs Parquet and what
//! works across many models. The API is small on purpose so that a Python binding (and a
//! Ray layer above it) can call each step: [`sketch_paths`], [`store::write_parquet`],
//! [`store::read_store`], [`search::search`], [`graph::audit_pair`], [`graph::lineage`].

pub mod error;
pub mod graph;
pub mod search;
pub mod simhub;
mod stats;
pub mod store;

use std::path::Path;

use rayon::prelude::*;
use weightkin_core::Registry;
use weightkin_runner::sketch::{sketch_model, Sketch, SketchOptions};
use weightkin_runner::RunOptions;

pub use error::{Error, SchemaProblem};

/// Sketches each model path (named by its path as given), in parallel; results in input
/// order. The first failure is returned, naming its path.
pub fn sketch_paths(
    paths: &[String],
    registry: &Registry,
    opts: &SketchOptions,
    run: &RunOptions<'_>,
) -> Result<Vec<Sketch>, Error> {
    paths
        .par_iter()
        .map(|p| {
            sketch_model(Path::new(p), p, registry, opts, run).map_err(|source| Error::Sketch {
                path: p.clone(),
                source: Box::new(source),
            })
        })
        .collect()
}
