//! `weightkin-runner`: from an audit recipe to a deterministic report.
//!
//! One module per stage of the design's data flow, in the order an audit runs them, wired
//! together by [`run`] (`run.rs`, the pipeline):
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | recipe | [`recipe`] | TOML → raw structs → validated [`Recipe`] (every problem with its line and column) |
//! | open | [`open`] | models opened by their format (headers only), renamed, described; file hashes |
//! | correspond | [`correspond`] | automatic pairing: names, normalised names, structure, content (with the search's null); fused parts and transposes as views |
//! | plan | [`plan`] | which tensor of B is compared with which of A, and why anything is not |
//! | align | [`align`] | layer alignment from the layer grids (`align = "auto"` re-pairs along it) |
//! | measure | [`measure`] | one streaming pass per pair, tensor metrics, layer × layer grids |
//! | calibrate | [`calibrate`] | nulls: reference models, cross-layer |
//! | judge | [`judge`] | roles, z and p per tensor, verdicts per component |
//! | report | [`report`] | the report model (a leaf: it imports no other stage) and its JSON, Markdown and HTML renderers |
//!
//! Beside them: [`hashcache`] (file hashes kept between runs), the [`registry`] of built-in
//! plugins, the [`demo`] generator, [`discover`] (`weightkin match`), [`verify`] (`weightkin verify`:
//! a report's audit run again and compared), [`inspect`] (one model described, headers
//! only), [`sketch`] (`weightkin sketch`: a model condensed for the lineage search of
//! `weightkin-lineage`), and small leaves (errors, run options, statistics).
//!
//! Two front ends call this crate, the `weightkin` binary and the Python package
//! (`crates/python`); every step either runs — [`audit_file`], [`audit_str`], [`compare`],
//! [`inspect::open`], the report's renderers and writer — is a function here, so the two
//! produce the same bytes for the same inputs.
//! There is no import cycle between these modules, and the report model imports none of
//! them: a test reads the sources and fails on any cycle.
//!
//! The built-in plugins are registered in exactly one place, [`registry::builtin`]; metrics
//! from third-party shared libraries are added to that registry by
//! [`weightkin_plugin_host::load`].

pub mod align;
pub mod calibrate;
pub mod correspond;
pub mod demo;
pub mod discover;
mod error;
pub mod hashcache;
pub mod inspect;
pub mod judge;
pub mod measure;
pub mod open;
mod options;
pub mod plan;
pub mod recipe;
pub mod registry;
pub mod report;
mod run;
pub mod sketch;
mod stats;
pub mod verify;

use std::path::Path;

pub use error::{Change, Error, FileProblem, VerifyProblem};
pub use hashcache::HashCache;
pub use options::{
    hub_from_env, NoProgress, Progress, RunOptions, CANCEL_PAUSE_ENV, DIRECT_READS_ENV,
};
pub use recipe::{adhoc_recipe, Adhoc, Recipe, RecipeError};
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
    audit_str(path, &source, registry, opts)
}

/// Validates and runs the recipe `source`, read from `path` (which names it in errors and
/// anchors its relative model paths).
pub fn audit_str(
    path: &Path,
    source: &str,
    registry: &weightkin_core::Registry,
    opts: &RunOptions<'_>,
) -> Result<(Recipe, Report), Error> {
    let recipe = recipe::parse(path, source, registry)?;
    let report = run(&recipe, registry, opts)?;
    Ok((recipe, report))
}

/// Name an ad-hoc comparison's recipe has in errors; its relative model paths are relative to
/// the current directory.
pub const COMMAND_LINE: &str = "<command line>";

/// Runs the ad-hoc comparison `adhoc` (`weightkin compare A B`): its recipe
/// ([`Adhoc::recipe`]) through the same parser as any recipe, then the pipeline.
pub fn compare(
    adhoc: &Adhoc,
    registry: &weightkin_core::Registry,
    opts: &RunOptions<'_>,
) -> Result<Report, Error> {
    let (_, report) = audit_str(Path::new(COMMAND_LINE), &adhoc.recipe(), registry, opts)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module of each source file, and the top-level modules it names through
    /// `crate::` (items re-exported at the crate root resolve to the module they come from).
    fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        // `pub use module::{A, B};` / `pub use module::A;` at the root.
        let reexport =
            regex::Regex::new(r"(?m)^pub use ([a-z_]+)::(?:\{([^}]*)\}|([A-Za-z_]+));").unwrap();
        let mut root: BTreeMap<String, String> = BTreeMap::new();
        for c in reexport.captures_iter(&lib) {
            let names = c.get(2).or(c.get(3)).unwrap().as_str();
            for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                root.insert(n.to_owned(), c[1].to_owned());
            }
        }
        let path_re =
            regex::Regex::new(r"crate::(?:([a-z_]+)\b|([A-Z][A-Za-z]*)|\{([^}]*)\})").unwrap();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap();
                let first = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy();
                let module = first.trim_end_matches(".rs").to_owned();
                if module == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let deps = graph.entry(module.clone()).or_default();
                // Code only: doc links and comments are not imports.
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for c in path_re.captures_iter(line) {
                        let names: Vec<&str> = match (c.get(1), c.get(2), c.get(3)) {
                            (Some(m), _, _) | (_, Some(m), _) => vec![m.as_str()],
                            (_, _, Some(group)) => group
                                .as_str()
                                .split(',')
                                .map(|n| n.trim().split("::").next().unwrap_or(""))
                                .collect(),
                            _ => Vec::new(),
                        };
                        for n in names.into_iter().filter(|n| !n.is_empty()) {
                            let target = root.get(n).cloned().unwrap_or_else(|| n.to_owned());
                            if target != module {
                                deps.insert(target);
                            }
                        }
                    }
                }
            }
        }
        graph
    }

    /// A cycle through `node`, if the graph has one reachable from it.
    fn cycle(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = cycle(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }

    #[test]
    fn no_import_cycle_between_modules_and_the_report_is_a_leaf() {
        let graph = module_graph();
        for stage in [
            "recipe",
            "open",
            "plan",
            "align",
            "measure",
            "calibrate",
            "judge",
            "report",
            "run",
        ] {
            assert!(graph.contains_key(stage), "no module `{stage}`: {graph:?}");
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            // `done` is per start: a node finished from another start may still close a cycle
            // through this one only if it was on that path, which `path` catches.
            if let Some(c) = cycle(&graph, node, &mut Vec::new(), &mut done) {
                panic!("import cycle between runner modules: {}", c.join(" → "));
            }
        }
        assert_eq!(
            graph["report"],
            BTreeSet::new(),
            "the report model imports nothing"
        );
    }

    #[test]
    fn the_cycle_check_finds_a_cycle() {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        graph.insert("a".into(), ["b".to_owned()].into());
        graph.insert("b".into(), ["c".to_owned()].into());
        graph.insert("c".into(), ["a".to_owned()].into());
        let c = cycle(&graph, "a", &mut Vec::new(), &mut BTreeSet::new()).unwrap();
        assert_eq!(c, ["a", "b", "c", "a"]);
    }
}
