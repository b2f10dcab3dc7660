//! The lineage graph: exact audits on the search's candidates, `derived` edges from their
//! verdicts, families, direction cues, and the graph written as JSON and as a self-contained
//! HTML page with an SVG picture.
//!
//! Every candidate pair is audited exactly as `weightkin compare A B` audits it (the same
//! ad-hoc recipe, parser and pipeline: [`weightkin_runner::adhoc_recipe`],
//! [`weightkin_runner::run`]); an edge is `derived` only when that audit's overall verdict is.
//! Before its verdict is used, the files the audit read are checked against the hashes the
//! sketch recorded: a model changed since it was sketched is an error, not an edge.
//!
//! **Families** are the connected components of `derived` edges (a merge of two parents
//! joins their families). Within a family, the maximum spanning tree over the audit's Pearson
//! marks the likely parent–child links (`tree`). **Direction** is given only on those links
//! and only where the evidence has a cue, and the cue is named: a model stored at lower precision than the other (fewer bits per parameter:
//! F32 → BF16, BF16 → Q4) is the child (`precision`); a model of the same architecture with
//! fewer layers is the child (`layer-subset`). Every other edge is undirected — `derived`
//! means shared ancestry, not which came first — and the JSON says so (`direction: null`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use weightkin_core::Registry;
use weightkin_runner::judge::Verdict;
use weightkin_runner::sketch::Sketch;
use weightkin_runner::RunOptions;

use crate::error::Error;
use crate::search::{Search, SearchStats};

/// Version of `graph.json`'s schema.
pub const GRAPH_SCHEMA_VERSION: u32 = 1;

/// Smallest difference in bits per parameter that counts as a precision cue.
const PRECISION_CUE_BITS: f64 = 0.5;

/// Most nodes the HTML picture draws (the JSON always has all of them).
pub const MAX_DRAWN: usize = 1500;

/// The audit of one candidate pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audited {
    /// Index of model A in the sketches.
    pub a: usize,
    /// Index of model B.
    pub b: usize,
    /// The audit's overall verdict.
    pub verdict: Verdict,
    /// The largest median Pearson of a `derived` component (of any component, if none is).
    pub pearson: Option<f64>,
    /// The audit's sentence.
    pub sentence: String,
}

/// A direction cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cue {
    /// The child is stored at lower precision.
    Precision,
    /// The child has fewer layers of the same architecture.
    LayerSubset,
}

/// A `derived` edge's direction, where a cue gives one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Direction {
    /// The parent (model name).
    pub parent: String,
    /// The child.
    pub child: String,
    /// Why.
    pub cue: Cue,
}

/// An edge: a candidate pair and what its audit said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Model A.
    pub a: String,
    /// Model B.
    pub b: String,
    /// The audit's verdict (`derived` edges make families; the rest are listed).
    pub verdict: Verdict,
    /// The search's standardised Z for the pair.
    pub sketch_z: f64,
    /// Mean sketch Pearson over the tensors compared.
    pub sketch_pearson: f64,
    /// The audit's Pearson ([`Audited::pearson`]).
    pub audit_pearson: Option<f64>,
    /// Whether the edge is in the family's maximum spanning tree over the audit's Pearson
    /// (the likely parent–child links: a model correlates more with its parent than with its
    /// siblings or grandparents).
    pub tree: bool,
    /// Direction, for a tree edge with a cue; `null` otherwise.
    pub direction: Option<Direction>,
}

/// A node: one sketched model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Model name.
    pub model: String,
    /// Path as sketched.
    pub path: String,
    /// Architecture key.
    pub arch_key: String,
    /// Storage dtype.
    pub dtype: String,
    /// Index of its family in [`Graph::families`].
    pub family: usize,
}

/// The lineage graph (`graph.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// [`GRAPH_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Every model.
    pub nodes: Vec<Node>,
    /// Every audited candidate pair, `derived` or not.
    pub edges: Vec<Edge>,
    /// Families: connected components of `derived` edges, largest first (singletons too).
    pub families: Vec<Vec<String>>,
    /// What the search did.
    pub search: SearchStats,
    /// Audits run (one per candidate).
    pub audits: usize,
}

/// Audits every candidate of `search` (in parallel; results in candidate order).
pub fn audit_candidates(
    sketches: &[Sketch],
    search: &Search,
    registry: &Registry,
    run: &RunOptions<'_>,
) -> Result<Vec<Audited>, Error> {
    search
        .candidates
        .par_iter()
        .map(|c| audit_pair(sketches, c.a, c.b, registry, run))
        .collect()
}

/// Audits models `a` and `b` of `sketches` as `weightkin compare` does, after checking their
/// files against the sketches.
pub fn audit_pair(
    sketches: &[Sketch],
    a: usize,
    b: usize,
    registry: &Registry,
    run: &RunOptions<'_>,
) -> Result<Audited, Error> {
    let model = |index: usize| {
        sketches.get(index).ok_or(Error::NoSuchModel {
            index,
            models: sketches.len(),
        })
    };
    let (sa, sb) = (model(a)?, model(b)?);
    let audit_error = |source| Error::Audit {
        a: sa.model.clone(),
        b: sb.model.clone(),
        source: Box::new(source),
    };
    let source = weightkin_runner::adhoc_recipe(&sa.path, &sb.path, &[], &[], &[]);
    let recipe = weightkin_runner::recipe::parse(Path::new("<lineage>"), &source, registry)
        .map_err(|e| audit_error(e.into()))?;
    let report = weightkin_runner::run(&recipe, registry, run).map_err(audit_error)?;
    for (sketch, model) in [(sa, "a"), (sb, "b")] {
        let Some(m) = report.models.iter().find(|m| m.name == model) else {
            continue;
        };
        for (f, s) in m.files.iter().zip(&sketch.files) {
            // A remote `hf://` file not fetched whole has no BLAKE3 on either side; its
            // commit (pinned in the sketch's path) identifies it.
            if !f.blake3.is_empty() && !s.blake3.is_empty() && f.blake3 != s.blake3 {
                return Err(Error::Changed {
                    model: sketch.model.clone(),
                    file: s.path.clone(),
                    now: f.blake3.clone(),
                    sketched: s.blake3.clone(),
                });
            }
        }
    }
    let Some(c) = report.comparisons.first() else {
        return Err(audit_error(weightkin_runner::Error::Internal(
            "an ad-hoc recipe has one comparison",
        )));
    };
    let derived = c
        .verdicts
        .components
        .iter()
        .filter(|v| v.verdict == Verdict::Derived)
        .filter_map(|v| v.median_pearson)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let any = c
        .verdicts
        .components
        .iter()
        .filter_map(|v| v.median_pearson)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok(Audited {
        a,
        b,
        verdict: c.verdicts.overall,
        pearson: derived.or(any),
        sentence: c.verdicts.sentence.clone(),
    })
}

/// Layers of a model: the most layers any class has.
fn layers(s: &Sketch) -> usize {
    s.layer_counts().values().copied().max().unwrap_or(0)
}

/// The direction cue between two models that share ancestry, if any.
pub fn direction(a: &Sketch, b: &Sketch) -> Option<Direction> {
    let dir = |parent: &Sketch, child: &Sketch, cue| Direction {
        parent: parent.model.clone(),
        child: child.model.clone(),
        cue,
    };
    if (a.bits - b.bits).abs() >= PRECISION_CUE_BITS && a.bits > 0.0 && b.bits > 0.0 {
        return Some(if a.bits > b.bits {
            dir(a, b, Cue::Precision)
        } else {
            dir(b, a, Cue::Precision)
        });
    }
    let (la, lb) = (layers(a), layers(b));
    if a.arch_key == b.arch_key && la != lb {
        return Some(if la > lb {
            dir(a, b, Cue::LayerSubset)
        } else {
            dir(b, a, Cue::LayerSubset)
        });
    }
    None
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Builds the graph from the sketches, the search, and the candidates' audits.
pub fn graph(sketches: &[Sketch], search: &Search, audited: &[Audited]) -> Graph {
    let by_pair: BTreeMap<(usize, usize), &crate::search::Candidate> =
        search.candidates.iter().map(|c| ((c.a, c.b), c)).collect();
    let mut parent: Vec<usize> = (0..sketches.len()).collect();
    let mut edges = Vec::new();
    for au in audited {
        let derived = au.verdict == Verdict::Derived;
        if derived {
            let (ra, rb) = (find(&mut parent, au.a), find(&mut parent, au.b));
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
        let c = by_pair.get(&(au.a, au.b));
        edges.push(Edge {
            tree: false,
            a: sketches[au.a].model.clone(),
            b: sketches[au.b].model.clone(),
            verdict: au.verdict,
            sketch_z: c.map_or(f64::NAN, |c| c.z),
            sketch_pearson: c.map_or(f64::NAN, |c| c.mean_pearson),
            audit_pearson: au.pearson,
            direction: None,
        });
    }
    // Maximum spanning forest over derived edges (Kruskal, by the audit's Pearson, ties by
    // names): only its edges get a direction, since a cue between siblings (a BF16 copy of
    // one, an F32 fine-tune of another) says nothing about who made whom.
    let mut order: Vec<usize> = (0..edges.len())
        .filter(|&e| edges[e].verdict == Verdict::Derived)
        .collect();
    order.sort_by(|&x, &y| {
        let (ex, ey) = (&edges[x], &edges[y]);
        ey.audit_pearson
            .unwrap_or(0.0)
            .total_cmp(&ex.audit_pearson.unwrap_or(0.0))
            .then_with(|| (&ex.a, &ex.b).cmp(&(&ey.a, &ey.b)))
    });
    let mut forest: Vec<usize> = (0..sketches.len()).collect();
    for e in order {
        let (a, b) = (audited[e].a, audited[e].b);
        let (ra, rb) = (find(&mut forest, a), find(&mut forest, b));
        if ra != rb {
            forest[ra.max(rb)] = ra.min(rb);
            edges[e].tree = true;
            edges[e].direction = direction(&sketches[a], &sketches[b]);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..sketches.len() {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut families: Vec<Vec<usize>> = groups.into_values().collect();
    families.sort_by(|x, y| y.len().cmp(&x.len()).then(x[0].cmp(&y[0])));
    let mut family_of = vec![0; sketches.len()];
    for (f, members) in families.iter().enumerate() {
        for &m in members {
            family_of[m] = f;
        }
    }
    Graph {
        schema_version: GRAPH_SCHEMA_VERSION,
        nodes: sketches
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                model: s.model.clone(),
                path: s.path.clone(),
                arch_key: s.arch_key.clone(),
                dtype: s.dtype.clone(),
                family: family_of[i],
            })
            .collect(),
        edges,
        families: families
            .iter()
            .map(|m| m.iter().map(|&i| sketches[i].model.clone()).collect())
            .collect(),
        search: search.stats.clone(),
        audits: audited.len(),
    }
}

/// Search, audits and graph in one call: what `weightkin lineage` runs.
pub fn lineage(
    sketches: &[Sketch],
    search_opts: &crate::search::SearchOptions,
    registry: &Registry,
    run: &RunOptions<'_>,
) -> Result<Graph, Error> {
    let found = crate::search::search(sketches, search_opts)?;
    let audited = audit_candidates(sketches, &found, registry, run)?;
    Ok(graph(sketches, &found, &audited))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Graph {
    /// `graph.json`: pretty JSON, deterministic (NaN written as null).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// `graph.html`: a self-contained page (no script, no external resource) with an SVG of
    /// the families that have edges, largest first, up to [`MAX_DRAWN`] nodes, then a table.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let derived = self
            .edges
            .iter()
            .filter(|e| e.verdict == Verdict::Derived)
            .count();
        let _ = write!(
            out,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>weightkin lineage</title>\
             <style>body{{font-family:sans-serif;margin:1.5em}}text{{font-size:9px}}\
             .u{{stroke:#888}}.d{{stroke:#c33}}table{{border-collapse:collapse}}\
             td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}}</style></head><body>\n\
             <h1>Lineage graph</h1>\n<p>{} models, {} families, {} candidate pairs audited, {} \
             <code>derived</code> edges (of {} pairs the sketch search scored). Red arrows point \
             from parent to child where a cue gives a direction (lower precision, fewer layers); \
             grey lines are derived edges without one: shared ancestry, not direction.</p>\n",
            self.nodes.len(),
            self.families.len(),
            self.audits,
            derived,
            self.search.pairs_searched
        );
        let index: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.model.as_str(), i))
            .collect();
        let drawn: Vec<&Vec<String>> = {
            let mut budget = MAX_DRAWN;
            self.families
                .iter()
                .filter(|f| f.len() > 1)
                .take_while(|f| {
                    let ok = f.len() <= budget;
                    budget = budget.saturating_sub(f.len());
                    ok
                })
                .collect()
        };
        let multi = self.families.iter().filter(|f| f.len() > 1).count();
        if drawn.len() < multi {
            let _ = writeln!(
                out,
                "<p>The picture shows the {} largest of {multi} families with more than one \
                 model (at most {MAX_DRAWN} models); graph.json has all of them.</p>",
                drawn.len()
            );
        }
        let (cell, cols) = (220.0f64, 5usize);
        let rows = drawn.len().div_ceil(cols).max(1);
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\
             <defs><marker id=\"arr\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" \
             fill=\"#c33\"/></marker></defs>",
            cell * cols as f64,
            cell * rows as f64
        );
        let mut pos: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for (f, members) in drawn.iter().enumerate() {
            let (cx, cy) = (
                cell * (f % cols) as f64 + cell / 2.0,
                cell * (f / cols) as f64 + cell / 2.0,
            );
            let r = if members.len() == 1 { 0.0 } else { cell * 0.36 };
            for (k, m) in members.iter().enumerate() {
                let angle = std::f64::consts::TAU * k as f64 / members.len() as f64;
                if let Some(&i) = index.get(m.as_str()) {
                    pos.insert(i, (cx + r * angle.cos(), cy + r * angle.sin()));
                }
            }
        }
        for e in self.edges.iter().filter(|e| e.verdict == Verdict::Derived) {
            let (Some(&ia), Some(&ib)) = (index.get(e.a.as_str()), index.get(e.b.as_str())) else {
                continue;
            };
            let (Some(&pa), Some(&pb)) = (pos.get(&ia), pos.get(&ib)) else {
                continue;
            };
            match &e.direction {
                Some(d) => {
                    let (p, c) = if d.parent == e.a { (pa, pb) } else { (pb, pa) };
                    // Stop short of the child's circle so the arrow head shows.
                    let (dx, dy) = (c.0 - p.0, c.1 - p.1);
                    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
                    let end = (c.0 - dx / len * 5.0, c.1 - dy / len * 5.0);
                    let _ = writeln!(
                        out,
                        "<line class=\"d\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
                         marker-end=\"url(#arr)\"><title>{} → {} ({})</title></line>",
                        p.0,
                        p.1,
                        end.0,
                        end.1,
                        escape(&d.parent),
                        escape(&d.child),
                        match d.cue {
                            Cue::Precision => "lower precision",
                            Cue::LayerSubset => "layer subset",
                        }
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<line class=\"u\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
                        pa.0, pa.1, pb.0, pb.1
                    );
                }
            }
        }
        for (&i, &(x, y)) in &pos {
            let n = &self.nodes[i];
            let short = n.model.rsplit('/').next().unwrap_or(&n.model);
            let _ = writeln!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#258\"><title>{} ({})</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                escape(&n.model),
                escape(&n.dtype),
                x + 5.0,
                y - 5.0,
                escape(short)
            );
        }
        out.push_str("</svg>\n<h2>Derived edges</h2>\n<table><tr><th>A</th><th>B</th><th>sketch Z</th><th>audit Pearson</th><th>direction</th></tr>\n");
        for e in self.edges.iter().filter(|e| e.verdict == Verdict::Derived) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.a),
                escape(&e.b),
                e.sketch_z,
                e.audit_pearson
                    .map_or_else(String::new, |p| format!("{p:.3}")),
                e.direction.as_ref().map_or_else(
                    || "undirected".to_owned(),
                    |d| format!("{} → {}", escape(&d.parent), escape(&d.child))
                )
            );
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }

    /// Writes `graph.json` and `graph.html` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            action: "create the output directory",
            source,
        })?;
        let mut written = Vec::new();
        for (name, text) in [
            ("graph.json", self.to_json()),
            ("graph.html", self.to_html()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Io {
                path: path.clone(),
                action: "write",
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }
}
