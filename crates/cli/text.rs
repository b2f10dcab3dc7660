//! The plain-text views the CLI prints itself: `inspect`, `plugins` and the demo's summary.
//!
//! Reports (Markdown, JSON, HTML) are rendered by `weightkin-runner` from its report model;
//! these are terminal views, not reports (no recipe is embedded, nothing re-runs them), so
//! they stay in the front end, as plain functions from data to a `String`.

use std::fmt::Write as _;

use weightkin_core::{Origin, Registry, WeightSource};
use weightkin_runner::Report;

/// `weightkin inspect`: a model's format, files, metadata, transforms and tensors, as a
/// table or (`json`) as one JSON object.
pub fn inspect(source: &dyn WeightSource, json: bool) -> String {
    if json {
        return weightkin_runner::inspect::ModelInfo::of(source).to_json();
    }
    let tensors = source.tensors();
    let params: u64 = tensors.iter().map(|t| t.numel as u64).sum();
    let mut o = String::new();
    let _ = writeln!(o, "format: {}", source.format());
    for f in source.files() {
        let _ = writeln!(o, "file: {} ({} bytes)", f.path.display(), f.size);
    }
    let _ = writeln!(o, "tensors: {}  parameters: {params}", tensors.len());
    for (k, v) in source.metadata() {
        let _ = writeln!(o, "metadata: {k} = {v}");
    }
    for t in source.transforms() {
        let _ = writeln!(
            o,
            "transform: {} ({} tensors): {}",
            t.name, t.tensors, t.detail
        );
    }
    let width = tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let _ = writeln!(o);
    for t in tensors {
        let _ = write!(
            o,
            "{:width$}  {:8}  {:>12}  {:?}",
            t.name,
            t.dtype.as_str(),
            t.numel,
            t.shape
        );
        match &t.stored_name {
            Some(stored) => {
                let _ = writeln!(o, "  (stored as {stored})");
            }
            None => o.push('\n'),
        }
    }
    o
}

/// `weightkin plugins`: every format and metric with its origin (`built-in` or the name of the
/// plugin it came from), then each loaded plugin with its version and path.
pub fn plugins(registry: &Registry) -> String {
    let metrics: Vec<_> = registry.metrics_with_origin().collect();
    let origin = |o: &Origin| match o {
        Origin::BuiltIn => "built-in".to_owned(),
        Origin::Library { plugin, .. } => plugin.clone(),
    };
    let w_name = registry
        .formats()
        .iter()
        .map(|f| f.name().len())
        .chain(metrics.iter().map(|(m, _)| m.name.len()))
        .max()
        .unwrap_or(0);
    let w_origin = metrics
        .iter()
        .map(|(_, o)| origin(o).len())
        .chain(["built-in".len()])
        .max()
        .unwrap_or(0);
    let mut o = String::from("formats:\n");
    for f in registry.formats() {
        let _ = writeln!(
            o,
            "  {:w_name$}  {:w_origin$}  {}",
            f.name(),
            "built-in",
            f.doc()
        );
    }
    o.push_str("metrics:\n");
    let mut libraries: Vec<(&Origin, Vec<&str>)> = Vec::new();
    for (m, from) in &metrics {
        let identity = m
            .identity
            .map(|v| format!(", m(a,a) = {v}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:w_name$}  {:w_origin$}  {} [range {}..{}{}{identity}]",
            m.name,
            origin(from),
            m.doc,
            m.range.0,
            m.range.1,
            if m.symmetric { ", symmetric" } else { "" }
        );
        if matches!(from, Origin::Library { .. }) {
            match libraries.iter_mut().find(|(l, _)| *l == *from) {
                Some((_, names)) => names.push(m.name),
                None => libraries.push((from, vec![m.name])),
            }
        }
    }
    if !libraries.is_empty() {
        o.push_str("plugins (loading a plugin runs its code):\n");
        for (lib, names) in libraries {
            if let Origin::Library {
                path,
                plugin,
                version,
            } = lib
            {
                let _ = writeln!(
                    o,
                    "  {plugin} {version}: {} ({})",
                    path.display(),
                    names.join(", ")
                );
            }
        }
    }
    o
}

/// The demo's terminal output: per comparison, the class table (the full report is written
/// to disk beside the models).
pub fn demo_summary(report: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}\n", report.audit.name);
    for c in &report.comparisons {
        let _ = writeln!(
            o,
            "{}: {} tensor pairs compared, {} not compared",
            c.name, c.summary.compared, c.summary.not_compared
        );
        let _ = writeln!(
            o,
            "  verdict: {}. {}",
            c.verdicts.overall.name(),
            c.verdicts.sentence
        );
        let w = c.classes.iter().map(|k| k.class.len()).max().unwrap_or(5);
        let _ = writeln!(
            o,
            "  {:w$} {:>4} {:>16} {:>16}",
            "class", "n", "cosine (median)", "pearson (median)"
        );
        for k in &c.classes {
            let med = |m: &str| {
                k.stats
                    .iter()
                    .find(|s| s.metric == m)
                    .and_then(|s| s.median)
                    .map_or_else(|| "—".to_owned(), |v| format!("{v:.4}"))
            };
            let _ = writeln!(
                o,
                "  {:w$} {:>4} {:>16} {:>16}",
                k.class,
                k.count,
                med("cosine"),
                med("pearson")
            );
        }
        for (reason, n) in c.summary.not_compared_by_text() {
            let _ = writeln!(o, "  not compared: {n} tensor(s), {reason}");
        }
        for a in &c.alignments {
            let _ = writeln!(
                o,
                "  layer alignment of {} (B→A, from {} grids): {}  (mean {} on it, {} off it{})",
                a.stack,
                a.metric,
                a.mapping_text(),
                a.score.map_or("—".to_owned(), |v| format!("{v:.4}")),
                a.off_mapping_mean
                    .map_or("—".to_owned(), |v| format!("{v:.4}")),
                if a.meaningful {
                    ""
                } else {
                    ": no layer correspondence"
                }
            );
        }
        o.push('\n');
    }
    o.push_str(
        "Note the norm weights: cosine ≈ 0.99 even for the independent model, because norm \
         weights sit near 1.0 in every model; Pearson removes that shared mean and drops to ≈ 0.\n",
    );
    o
}
