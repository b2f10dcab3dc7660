//! A simulated hub: thousands of small models in known family trees, and the scoring of a
//! lineage graph against the truth (issue 21, item 5).
//!
//! # What is generated
//!
//! Two Llama-shaped architectures under Hugging Face names (hidden 64 with 4 layers, and
//! hidden 48 with 6 layers), drawn by the runner's synthetic-model generator
//! ([`weightkin_runner::demo::synth`]: Gaussian matrices with 1/√fan-in spread, norm weights
//! 1 + N(0, 0.1²) — the generator the verdict validation uses). Each **clan** is one family or,
//! with probability [`MERGE_CLAN`], two families of one architecture joined by a merge:
//!
//! * a **base**: independently initialised (its own seed);
//! * **fine-tunes** of the base or of an earlier fine-tune, at strengths s ∈ {0.25, 0.5, 1,
//!   2, 4, 8}: the parent plus Gaussian noise of s times each tensor's s.d., expected Pearson
//!   1/√(1 + s²) with the parent (s = 8 is the audit's power limit, expected Pearson 0.124,
//!   VALIDATION.md); stored as F32 or BF16;
//! * **casts** to F16 or BF16 of a member;
//! * **quantized** copies: block-wise absmax quantisation (blocks of 32; 8 or 4 bits), then
//!   dequantised and stored as F16;
//! * **layer subsets**: every second layer of a member, renumbered;
//! * **merges**: the average of one member of each family of a two-family clan;
//! * **unrelated** same-architecture bases without descendants.
//!
//! Fine-tunes are simulated by structured perturbation, not by training: training 10⁴ models
//! on 2 cores is out of reach, and the perturbation is the model under which the audit's
//! power was measured, so "down to the audit's power limit" is well defined. The null on
//! *trained* unrelated models is measured separately, on the model zoo
//! (`weightkin-simhub null`).
//!
//! # Truth
//!
//! Every model is a linear combination of independent unit-variance sources (each base's
//! initialisation, each fine-tune's noise), tracked as coefficients; the expected Pearson of
//! two models' corresponding tensors is the cosine of their coefficient vectors (casts,
//! quantisation and layer subsets keep the coefficients). Two models **share ancestry** when
//! their roots intersect; a shared-ancestry pair is **detectable** when its expected Pearson
//! is at least [`POWER_LIMIT`]. Precision counts every `derived` edge between models that
//! share ancestry as correct; recall is over detectable pairs (shared-ancestry pairs below the
//! limit, e.g. two strong fine-tunes' siblings, are reported but neither required nor
//! penalised).
//!
//! The hub is written to a directory with `manifest.json` (this truth) and `models/…`; it is
//! deterministic for (model count, seed, [`GENERATOR_VERSION`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use weightkin_core::rng::Rng;
use weightkin_runner::demo::synth::{Arch, Model, Store};
use weightkin_runner::judge::Verdict;

use crate::error::Error;
use crate::graph::Graph;

/// Version of the generator: part of the cache key; any change to the models' bytes bumps it.
pub const GENERATOR_VERSION: u32 = 1;

/// Expected Pearson below which the audit is not required to find a pair (VALIDATION.md:
/// fine-tuned copies are `derived` down to an expected Pearson of 0.124).
pub const POWER_LIMIT: f64 = 0.12;

/// Probability that a clan is two families joined by a merge.
pub const MERGE_CLAN: f64 = 0.1;

/// Probability that a clan is a lone unrelated base.
pub const LONE_BASE: f64 = 0.15;

/// Fine-tune strengths (noise s.d. relative to each tensor's).
pub const STRENGTHS: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// The simulated architectures: (name, shape).
pub fn architectures() -> [(&'static str, Arch); 2] {
    [
        (
            "h64",
            Arch {
                layers: 4,
                hidden: 64,
                intermediate: 128,
                vocab: 256,
                vision_layers: 0,
                vision_hidden: 0,
            },
        ),
        (
            "h48",
            Arch {
                layers: 6,
                hidden: 48,
                intermediate: 96,
                vocab: 192,
                vision_layers: 0,
                vision_hidden: 0,
            },
        ),
    ]
}

/// How a model was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Transform {
    /// An independent base.
    Base,
    /// Parent plus noise of `strength` × each tensor's s.d.
    FineTune {
        /// Relative noise s.d.
        strength: f64,
    },
    /// Stored in another dtype.
    Cast,
    /// Block-wise absmax quantisation at `bits`, dequantised, stored as F16.
    Quantize {
        /// 8 or 4.
        bits: u32,
    },
    /// Every second layer, renumbered.
    LayerSubset,
    /// Average of the parents.
    Merge,
}

/// One model of the truth manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthModel {
    /// Name (also its path under `models/`, without `.safetensors`).
    pub name: String,
    /// Architecture name.
    pub arch: String,
    /// Parents (empty for a base).
    pub parents: Vec<String>,
    /// Independent bases it descends from.
    pub roots: Vec<String>,
    /// How it was made.
    pub transform: Transform,
    /// Storage dtype.
    pub dtype: String,
    /// Coefficients over the independent sources (module doc).
    pub sources: BTreeMap<String, f64>,
}

/// The truth manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Schema version (1).
    pub schema_version: u32,
    /// [`GENERATOR_VERSION`].
    pub generator_version: u32,
    /// Seed.
    pub seed: u64,
    /// Models, parents before children.
    pub models: Vec<TruthModel>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            action: "read",
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Manifest { path, source })
    }

    /// The model file of `m` in a hub at `dir`.
    pub fn path_of(dir: &Path, m: &TruthModel) -> PathBuf {
        dir.join("models").join(format!("{}.safetensors", m.name))
    }
}

/// Expected Pearson of two models' corresponding tensors: the cosine of their coefficients.
pub fn expected_pearson(a: &TruthModel, b: &TruthModel) -> f64 {
    let norm = |m: &TruthModel| m.sources.values().map(|c| c * c).sum::<f64>().sqrt();
    let dot: f64 = a
        .sources
        .iter()
        .filter_map(|(k, c)| b.sources.get(k).map(|d| c * d))
        .sum();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

/// A model being generated: its weights and its truth.
struct Member {
    model: Model,
    truth: TruthModel,
    store: Store,
}

fn store_name(s: Store) -> &'static str {
    match s {
        Store::F32 => "F32",
        Store::Bf16 => "BF16",
        Store::F16 => "F16",
    }
}

fn quantize(m: &Model, bits: u32) -> Model {
    let levels = ((1u32 << (bits - 1)) - 1) as f32;
    let mut out = m.clone();
    // Matrices only: llama.cpp and its kin keep 1-D tensors (norm weights) in full precision.
    for t in out.tensors.iter_mut().filter(|t| t.shape.len() >= 2) {
        for block in t.data.chunks_mut(32) {
            let max = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            if max > 0.0 {
                let step = max / levels;
                for v in block.iter_mut() {
                    *v = (*v / step).round() * step;
                }
            }
        }
    }
    out
}

fn merge(a: &Model, b: &Model) -> Model {
    let mut out = a.clone();
    for (t, u) in out.tensors.iter_mut().zip(&b.tensors) {
        for (x, y) in t.data.iter_mut().zip(&u.data) {
            *x = 0.5 * (*x + *y);
        }
    }
    out
}

/// One family of a clan: its members, generated from `rng`.
fn family(arch: (&'static str, Arch), prefix: &str, rng: &mut Rng, lone: bool) -> Vec<Member> {
    let root = format!("{prefix}-base");
    let base = Member {
        model: Model::init(&arch.1, rng.next_u64()),
        truth: TruthModel {
            name: root.clone(),
            arch: arch.0.to_owned(),
            parents: Vec::new(),
            roots: vec![root.clone()],
            transform: Transform::Base,
            dtype: "F32".to_owned(),
            sources: [(root.clone(), 1.0)].into(),
        },
        store: Store::F32,
    };
    let mut members = vec![base];
    if lone {
        return members;
    }
    let children = 3 + rng.below(7) as usize;
    for c in 0..children {
        // Parents: the base or an earlier fine-tune (fine-tunes of fine-tunes), else anyone.
        let tunable: Vec<usize> = (0..members.len())
            .filter(|&i| {
                matches!(
                    members[i].truth.transform,
                    Transform::Base | Transform::FineTune { .. }
                )
            })
            .collect();
        let kind = rng.below(100);
        let (model, transform, store, parent) = if kind < 55 {
            let p = tunable[rng.below(tunable.len() as u64) as usize];
            // A fine-tune of a fine-tune stays above the power limit with its parent.
            let max = if p == 0 { STRENGTHS.len() } else { 4 };
            let s = STRENGTHS[rng.below(max as u64) as usize];
            let store = if rng.below(5) == 0 {
                Store::Bf16
            } else {
                Store::F32
            };
            (
                members[p].model.fine_tune(rng.next_u64(), s),
                Transform::FineTune { strength: s },
                store,
                p,
            )
        } else if kind < 70 {
            let p = rng.below(members.len() as u64) as usize;
            let store = if rng.below(2) == 0 {
                Store::F16
            } else {
                Store::Bf16
            };
            (members[p].model.clone(), Transform::Cast, store, p)
        } else if kind < 85 {
            let p = tunable[rng.below(tunable.len() as u64) as usize];
            let bits = if rng.below(2) == 0 { 8 } else { 4 };
            (
                quantize(&members[p].model, bits),
                Transform::Quantize { bits },
                Store::F16,
                p,
            )
        } else {
            let p = tunable[rng.below(tunable.len() as u64) as usize];
            (
                members[p].model.every_second_layer(),
                Transform::LayerSubset,
                members[p].store,
                p,
            )
        };
        let parent = &members[parent].truth;
        let name = format!("{prefix}-{c}-{}", kind_name(&transform));
        let mut sources = parent.sources.clone();
        if let Transform::FineTune { strength } = transform {
            let norm = sources.values().map(|v| v * v).sum::<f64>().sqrt();
            sources.insert(name.clone(), strength * norm);
        }
        let truth = TruthModel {
            name,
            arch: arch.0.to_owned(),
            parents: vec![parent.name.clone()],
            roots: parent.roots.clone(),
            transform,
            dtype: store_name(store).to_owned(),
            sources,
        };
        members.push(Member {
            model,
            truth,
            store,
        });
    }
    members
}

fn kind_name(t: &Transform) -> String {
    match t {
        Transform::Base => "base".to_owned(),
        Transform::FineTune { strength } => format!("ft{strength}"),
        Transform::Cast => "cast".to_owned(),
        Transform::Quantize { bits } => format!("q{bits}"),
        Transform::LayerSubset => "subset".to_owned(),
        Transform::Merge => "merge".to_owned(),
    }
}

/// A clan's plan, drawn sequentially from the hub's seed.
struct ClanPlan {
    seed: u64,
    arch: usize,
    lone: bool,
    merged: bool,
}

/// Generates a hub of at least `models` models into `dir` (models/ and manifest.json),
/// deterministically for (`models`, `seed`). Returns the manifest.
pub fn generate(dir: &Path, models: usize, seed: u64) -> Result<Manifest, Error> {
    let mut rng = Rng::new(seed);
    let mut plans = Vec::new();
    // ~6.5 models per clan on average: plan generously, then cut at the count.
    while plans.len() * 4 < models + 8 {
        let lone = rng.uniform() < LONE_BASE;
        plans.push(ClanPlan {
            seed: rng.next_u64(),
            arch: rng.below(2) as usize,
            lone,
            merged: !lone && rng.uniform() < MERGE_CLAN,
        });
    }
    let models_dir = dir.join("models");
    let archs = architectures();
    let clans: Vec<Vec<TruthModel>> = plans
        .par_iter()
        .enumerate()
        .map(|(c, plan)| -> Result<Vec<TruthModel>, Error> {
            let mut r = Rng::new(plan.seed);
            let arch = archs[plan.arch];
            let prefix = format!("{}/c{c:05}", arch.0);
            let mut members = family(arch, &format!("{prefix}-f0"), &mut r, plan.lone);
            if plan.merged {
                let other = family(arch, &format!("{prefix}-f1"), &mut r, false);
                let (i, j) = (
                    r.below(members.len() as u64) as usize,
                    r.below(other.len() as u64) as usize,
                );
                let (a, b) = (&members[i], &other[j]);
                let mut sources: BTreeMap<String, f64> = BTreeMap::new();
                for (k, v) in a.truth.sources.iter().chain(&b.truth.sources) {
                    *sources.entry(k.clone()).or_default() += 0.5 * v;
                }
                let mut roots: Vec<String> = a
                    .truth
                    .roots
                    .iter()
                    .chain(&b.truth.roots)
                    .cloned()
                    .collect();
                roots.sort();
                roots.dedup();
                let m = Member {
                    model: merge(&a.model, &b.model),
                    truth: TruthModel {
                        name: format!("{prefix}-merge"),
                        arch: arch.0.to_owned(),
                        parents: vec![a.truth.name.clone(), b.truth.name.clone()],
                        roots,
                        transform: Transform::Merge,
                        dtype: "F32".to_owned(),
                        sources,
                    },
                    store: Store::F32,
                };
                members.extend(other);
                members.push(m);
            }
            for m in &members {
                let path = models_dir.join(format!("{}.safetensors", m.truth.name));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                        path: parent.to_owned(),
                        action: "create the directory",
                        source,
                    })?;
                }
                m.model.write(&path, m.store).map_err(|source| Error::Io {
                    path: path.clone(),
                    action: "write",
                    source,
                })?;
            }
            Ok(members.into_iter().map(|m| m.truth).collect())
        })
        .collect::<Result<_, _>>()?;
    let mut all: Vec<TruthModel> = Vec::new();
    for clan in clans {
        if all.len() >= models {
            // Whole clans only; remove the files of clans cut off.
            for m in clan {
                let _ = std::fs::remove_file(Manifest::path_of(dir, &m));
            }
            continue;
        }
        all.extend(clan);
    }
    let manifest = Manifest {
        schema_version: 1,
        generator_version: GENERATOR_VERSION,
        seed,
        models: all,
    };
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| Error::Io {
        path,
        action: "write",
        source,
    })?;
    Ok(manifest)
}

/// How well a graph recovers the truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Models.
    pub models: usize,
    /// `derived` edges in the graph.
    pub derived_edges: usize,
    /// Of those, between models that share ancestry.
    pub correct_edges: usize,
    /// correct / derived.
    pub precision: f64,
    /// Detectable shared-ancestry pairs (expected Pearson ≥ [`POWER_LIMIT`]).
    pub detectable_pairs: usize,
    /// Of those, found `derived`.
    pub found_pairs: usize,
    /// found / detectable.
    pub recall: f64,
    /// Shared-ancestry pairs below the power limit, and how many were found anyway.
    pub below_limit: (usize, usize),
    /// Recall per expected-Pearson bin: (lower edge, detectable, found).
    pub recall_by_pearson: Vec<(f64, usize, usize)>,
    /// Recall of the search alone: detectable pairs that were candidates.
    pub search_recall: f64,
    /// Candidates (audits).
    pub candidates: usize,
    /// True families (connected components of parent links).
    pub families: usize,
    /// Fraction of true families recovered exactly (same member set).
    pub family_accuracy: f64,
    /// Fraction of models whose recovered family is exactly their true family.
    pub model_family_accuracy: f64,
    /// Structure recovery: fraction of true parent links that are tree edges of the graph
    /// (its maximum-Pearson spanning forest; undirected).
    pub structure_accuracy: f64,
    /// Directed edges whose parent is a true ancestor of the child, of all directed edges.
    pub direction_accuracy: (usize, usize),
}

/// Scores `graph` against the truth of `manifest`. Graph nodes are matched to truth models by
/// their model name: the truth name (sketched as such, `sketch_hub`).
pub fn score(manifest: &Manifest, graph: &Graph) -> Scores {
    let truth: BTreeMap<&str, &TruthModel> = manifest
        .models
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    let shares = |a: &TruthModel, b: &TruthModel| a.roots.iter().any(|r| b.roots.contains(r));
    let key = |a: &str, b: &str| {
        if a < b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        }
    };
    let derived: BTreeSet<(String, String)> = graph
        .edges
        .iter()
        .filter(|e| e.verdict == Verdict::Derived)
        .map(|e| key(&e.a, &e.b))
        .collect();
    let candidates: BTreeSet<(String, String)> =
        graph.edges.iter().map(|e| key(&e.a, &e.b)).collect();
    let correct = derived
        .iter()
        .filter(
            |(a, b)| match (truth.get(a.as_str()), truth.get(b.as_str())) {
                (Some(x), Some(y)) => shares(x, y),
                _ => false,
            },
        )
        .count();
    // Shared-ancestry pairs, by root.
    let mut by_root: BTreeMap<&str, Vec<&TruthModel>> = BTreeMap::new();
    for m in &manifest.models {
        for r in &m.roots {
            by_root.entry(r.as_str()).or_default().push(m);
        }
    }
    let mut related: BTreeMap<(String, String), f64> = BTreeMap::new();
    for members in by_root.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                related.insert(key(&a.name, &b.name), expected_pearson(a, b));
            }
        }
    }
    let bins = [POWER_LIMIT, 0.25, 0.5, 0.9];
    let mut by_bin: Vec<(f64, usize, usize)> = bins.iter().map(|&b| (b, 0, 0)).collect();
    let (mut detectable, mut found, mut below, mut below_found, mut searched) = (0, 0, 0, 0, 0);
    for (pair, &rho) in &related {
        let hit = derived.contains(pair);
        if rho >= POWER_LIMIT {
            detectable += 1;
            found += usize::from(hit);
            searched += usize::from(candidates.contains(pair));
            if let Some(bin) = by_bin.iter_mut().rev().find(|b| rho >= b.0) {
                bin.1 += 1;
                bin.2 += usize::from(hit);
            }
        } else {
            below += 1;
            below_found += usize::from(hit);
        }
    }
    // True families: components of parent links.
    let index: BTreeMap<&str, usize> = manifest
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..manifest.models.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut links: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, m) in manifest.models.iter().enumerate() {
        for p in &m.parents {
            if let Some(&j) = index.get(p.as_str()) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
                links.insert(key(&m.name, p));
            }
        }
    }
    let mut true_family: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for (i, m) in manifest.models.iter().enumerate() {
        let r = find(&mut parent, i);
        true_family.entry(r).or_default().insert(m.name.as_str());
    }
    let found_families: BTreeSet<BTreeSet<&str>> = graph
        .families
        .iter()
        .map(|f| f.iter().map(String::as_str).collect())
        .collect();
    let exact = true_family
        .values()
        .filter(|f| found_families.contains(*f))
        .count();
    let model_exact: usize = true_family
        .values()
        .filter(|f| found_families.contains(*f))
        .map(BTreeSet::len)
        .sum();
    // Structure: the graph's tree edges (maximum spanning forest over the audit's Pearson).
    let tree_hits = graph
        .edges
        .iter()
        .filter(|e| e.tree && links.contains(&key(&e.a, &e.b)))
        .count();
    // Directions: is the parent a true ancestor of the child?
    let ancestor = |anc: &str, child: &str| -> bool {
        let mut stack = vec![child];
        let mut seen = BTreeSet::new();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            if let Some(m) = truth.get(c) {
                for p in &m.parents {
                    if p == anc {
                        return true;
                    }
                    stack.push(p.as_str());
                }
            }
        }
        false
    };
    let directed: Vec<_> = graph
        .edges
        .iter()
        .filter_map(|e| e.direction.as_ref())
        .collect();
    let right = directed
        .iter()
        .filter(|d| ancestor(&d.parent, &d.child))
        .count();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Scores {
        models: manifest.models.len(),
        derived_edges: derived.len(),
        correct_edges: correct,
        precision: ratio(correct, derived.len()),
        detectable_pairs: detectable,
        found_pairs: found,
        recall: ratio(found, detectable),
        below_limit: (below, below_found),
        recall_by_pearson: by_bin,
        search_recall: ratio(searched, detectable),
        candidates: graph.edges.len(),
        families: true_family.len(),
        family_accuracy: ratio(exact, true_family.len()),
        model_family_accuracy: ratio(model_exact, manifest.models.len()),
        structure_accuracy: ratio(tree_hits, links.len()),
        direction_accuracy: (right, directed.len()),
    }
}
