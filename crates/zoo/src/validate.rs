//! Validation: weightkin's real comparison on zoo pairs whose truth the manifest records.
//!
//! Each pair goes through the same path as `weightkin compare A B` (an ad-hoc recipe with the
//! default metrics, parsed and run by `weightkin-runner`), and its canonical JSON report
//! (schema_version 1, README "Report schema") is read back: the overall and per-component
//! verdicts, and every evidence tensor's Pearson, null, z and Holm-adjusted p. Reading the
//! documented JSON rather than the runner's structs keeps this crate independent of the
//! runner's internals.
//!
//! Pairs:
//!
//! - **unrelated** (roots disjoint, truth: not derived): every pair of independent bases of an
//!   architecture; every other model against every base it does not descend from; the
//!   strong fine-tunes of different bases on the same data (two unrelated models pulled
//!   towards the same data: the hardest unrelated case the zoo has).
//! - **derived** (truth: shared ancestry): every model against its root base; each merge
//!   against each of its parents.
//!
//! The table gives, for unrelated pairs, how many were called `derived` (false positives),
//! `inconclusive` or `independent`, and the distribution of z per tensor class (under a
//! correct null, z is roughly standard normal and almost no tensor is significant); for
//! derived pairs, the verdicts by transform and strength (power).
//!
//! **Hidden names** ([`Naming`], `validate --names opaque|convention`): every B is first
//! rewritten under names that do not say what its tensors are ([`crate::rename`]), and each
//! pair is compared with `pairing = "auto"`, so the verdicts measure the correspondence search
//! itself — its false positives (a content search maximises similarity, so unrelated pairs
//! are where it could create evidence) and its power once names are gone. Each pair's
//! discovered pairing is checked against the truth the renaming recorded ([`PairingCheck`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::arch::Architecture;
use crate::manifest::{Manifest, Model, Transform};
pub use crate::rename::Naming;
use crate::rename::{counterpart, layer_origins, rename};
use crate::Error;

/// Whether a pair shares ancestry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truth {
    /// Roots intersect: `derived` is right.
    Related,
    /// Roots disjoint: `derived` is a false positive.
    Unrelated,
}

/// One evidence tensor of a compared pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorResult {
    /// Tensor name.
    pub name: String,
    /// Its class (layer index replaced by `*`).
    pub class: String,
    /// Its shape.
    pub shape: Vec<u64>,
    /// `evidence` or `init-prior`.
    pub role: String,
    /// Null kind (`cross-layer`, `analytic`, `reference`).
    pub null: String,
    /// Pearson.
    pub pearson: f64,
    /// The null's mean.
    pub null_mean: f64,
    /// The null's s.d. (what z divides by).
    pub null_sd: f64,
    /// z against the null.
    pub z: f64,
    /// One-sided p against the null, multiplied by `candidates` (before Holm).
    pub p: f64,
    /// Holm-adjusted p.
    pub p_adjusted: f64,
    /// p_adjusted < α.
    pub significant: bool,
    /// B's tensor (view) name, when it differs from A's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_name: Option<String>,
    /// How the pair was found (`name`, `normalised`, `structure`, `content`), when
    /// automatic pairing found it other than by equal names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_by: Option<String>,
    /// Candidates the search chose among (its p-value was multiplied by this).
    pub candidates: u64,
}

/// The discovered pairing of one compared pair, checked against the truth of the renaming.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PairingCheck {
    /// A's float tensors that have a true counterpart in B.
    pub expected: u64,
    /// Of those, paired with their true counterpart.
    pub correct: u64,
    /// Paired with another tensor of B whose values are bit-identical to the true
    /// counterpart's (e.g. the biases of two BatchNorms that feed one residual sum get the
    /// same gradient from the same zero start, so they are equal in every trained ResNet).
    pub equivalent: u64,
    /// Paired with another tensor of B.
    pub wrong: u64,
    /// Not paired at all.
    pub missing: u64,
    /// Compared pairs by how they were found.
    pub methods: BTreeMap<String, u64>,
    /// The wrong pairs, `A name → B name found (true: B name)`, for derived pairs only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wrong_pairs: Vec<String>,
}

/// One compared pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairResult {
    /// Model A (manifest name).
    pub a: String,
    /// Model B.
    pub b: String,
    /// Architecture.
    pub architecture: Architecture,
    /// The truth.
    pub truth: Truth,
    /// What kind of pair (a table row).
    pub category: String,
    /// Overall verdict: `derived`, `independent` or `inconclusive`.
    pub verdict: String,
    /// Verdict per component, by component name.
    pub components: BTreeMap<String, String>,
    /// Median Pearson over evidence tensors.
    pub median_pearson: Option<f64>,
    /// Evidence and init-prior tensors with a z.
    pub tensors: Vec<TensorResult>,
    /// How B's names were presented.
    pub naming: Naming,
    /// The discovered pairing against the truth (hidden names only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingCheck>,
    /// What the alignment stage found (`validate --align` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aligned: Option<AlignCheck>,
}

/// The alignment stage's findings on one pair (`permutation = "auto"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlignCheck {
    /// Layers aligned (MLP units and attention head groups, every stack).
    pub layers: u64,
    /// Of those, recovered (matched similarity ≥ 5 s.d. above the cross-layer alignments).
    pub recovered: u64,
    /// The residual basis chosen (`identity`, `signed permutation`, `rotation`, …, or `not
    /// aligned`), if the models have a token embedding.
    pub residual: Option<String>,
    /// B was given a function-preserving scramble before the comparison
    /// (`validate --align --scramble`, Llama only: [`crate::scramble`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub scrambled: bool,
    /// Per kind of alignment (`mlp units`, `attention heads`).
    pub kinds: BTreeMap<String, AlignKind>,
}

/// The alignment stage's findings for one kind of unit on one pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlignKind {
    /// Layers aligned.
    pub layers: u64,
    /// Of those, recovered.
    pub recovered: u64,
    /// Units (KV groups, for heads) the alignment moved, over all layers.
    pub moved: u64,
    /// With a scrambled B: units the scramble moved in the same layers (a derived B, whose
    /// units are in A's order before the scramble, is aligned back exactly only if the two
    /// agree layer by layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_by_scramble: Option<u64>,
    /// With a scrambled B: layers whose alignment moved as many units as the scramble.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers_moved_as_scrambled: Option<u64>,
    /// Sum over layers of the mean Pearson of the layer's tensors before alignment.
    pub pearson_before_sum: f64,
    /// Sum over layers of the mean Pearson after alignment.
    pub pearson_after_sum: f64,
    /// (layer, units moved by the alignment), for the scramble check.
    #[serde(skip)]
    layer_moves: Vec<(usize, u64)>,
}

fn align_check(c: &Value) -> Option<AlignCheck> {
    let units = c.get("units")?;
    let mut out = AlignCheck {
        residual: c
            .pointer("/residual/basis")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..AlignCheck::default()
    };
    for s in units
        .get("stacks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let kind = out.kinds.entry(str_of(s, "what")).or_default();
        for l in s
            .get("layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.layers += 1;
            kind.layers += 1;
            if l.get("recovered").and_then(Value::as_bool) == Some(true) {
                out.recovered += 1;
                kind.recovered += 1;
            }
            let num = |k: &str| l.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let moved = l.get("moved").and_then(Value::as_u64).unwrap_or(0);
            kind.moved += moved;
            kind.pearson_before_sum += num("pearson_before");
            kind.pearson_after_sum += num("pearson_after");
            if let Some(i) = l.get("layer").and_then(Value::as_u64) {
                kind.layer_moves.push((i as usize, moved));
            }
        }
    }
    Some(out)
}

/// Fills in, for a derived B scrambled as `model`, how many units the scramble moved in the layers
/// aligned, and in how many layers the alignment moved as many.
fn check_scramble(a: &mut AlignCheck, model: &str) {
    let config = crate::arch::llama::CONFIG;
    for (what, kind) in &mut a.kinds {
        let (mut total, mut agree) = (0, 0);
        for &(layer, moved) in &kind.layer_moves {
            let (groups, units) = crate::scramble::permutations(model, layer, &config);
            let want = crate::scramble::moved(if what == "attention heads" {
                &groups
            } else {
                &units
            }) as u64;
            total += want;
            agree += u64::from(want == moved);
        }
        kind.moved_by_scramble = Some(total);
        kind.layers_moved_as_scrambled = Some(agree);
    }
}

/// A pair to compare.
struct Pair<'m> {
    a: &'m Model,
    b: &'m Model,
    truth: Truth,
    category: String,
}

fn is_base(m: &Model) -> bool {
    matches!(m.transform, Transform::Train { .. })
}

fn pairs(m: &Manifest) -> Vec<Pair<'_>> {
    let mut out = Vec::new();
    for arch in Architecture::ALL {
        let models: Vec<&Model> = m.models.iter().filter(|x| x.architecture == arch).collect();
        let bases: Vec<&Model> = models.iter().copied().filter(|x| is_base(x)).collect();
        for (i, a) in bases.iter().enumerate() {
            for b in &bases[i + 1..] {
                out.push(Pair {
                    a,
                    b,
                    truth: Truth::Unrelated,
                    category: "independent bases".into(),
                });
            }
        }
        for x in models.iter().filter(|x| !is_base(x)) {
            for base in &bases {
                if !x.related(base) {
                    out.push(Pair {
                        a: base,
                        b: x,
                        truth: Truth::Unrelated,
                        category: "base vs another base's descendant".into(),
                    });
                }
            }
        }
        let strong: Vec<&Model> = models
            .iter()
            .copied()
            .filter(|x| x.transform.label() == "fine-tune strong")
            .collect();
        for (i, a) in strong.iter().enumerate() {
            for b in &strong[i + 1..] {
                if !a.related(b) && same_data(a, b) {
                    out.push(Pair {
                        a,
                        b,
                        truth: Truth::Unrelated,
                        category: "strong fine-tunes of two bases, same data".into(),
                    });
                }
            }
        }
        for x in models.iter().filter(|x| !is_base(x)) {
            for root in &x.roots {
                if let Some(r) = m.model(root) {
                    out.push(Pair {
                        a: r,
                        b: x,
                        truth: Truth::Related,
                        category: format!("{} of A", x.transform.label()),
                    });
                }
            }
            if matches!(x.transform, Transform::Merge { .. }) {
                for p in &x.parents {
                    if let Some(p) = m.model(p) {
                        out.push(Pair {
                            a: p,
                            b: x,
                            truth: Truth::Related,
                            category: "merge of A and another model".into(),
                        });
                    }
                }
            }
        }
    }
    out
}

fn same_data(a: &Model, b: &Model) -> bool {
    match (&a.transform, &b.transform) {
        (Transform::FineTune { data: x, .. }, Transform::FineTune { data: y, .. }) => x == y,
        _ => false,
    }
}

/// Runs weightkin on `a` and `b` (paths) exactly as `weightkin compare a b --format json`
/// does, and returns the parsed JSON report.
pub fn compare(a: &Path, b: &Path) -> Result<Value, Error> {
    let text = weightkin_runner::adhoc_recipe(
        &a.display().to_string(),
        &b.display().to_string(),
        &[],
        &[],
        &[],
    );
    compare_recipe(a, b, &text)
}

/// Runs weightkin on `a` and `b` with `pairing = "auto"` stated in the recipe (the default
/// metrics), and returns the parsed JSON report.
pub fn compare_auto(a: &Path, b: &Path) -> Result<Value, Error> {
    // JSON string literals are TOML basic strings.
    let quote = |p: &Path| serde_json::Value::from(p.display().to_string()).to_string();
    let text = format!(
        "[audit]\nname = \"weightkin-zoo automatic pairing\"\n\n[models.a]\npath = {}\n\n\
         [models.b]\npath = {}\n\n[[compare]]\na = \"a\"\nb = \"b\"\npairing = \"auto\"\n",
        quote(a),
        quote(b)
    );
    compare_recipe(a, b, &text)
}

fn compare_recipe(a: &Path, b: &Path, text: &str) -> Result<Value, Error> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Compare {
        a: a.display().to_string(),
        b: b.display().to_string(),
        source,
    };
    let registry = weightkin_runner::registry::builtin().map_err(|e| err(Box::new(e)))?;
    let recipe = weightkin_runner::recipe::parse(Path::new("<weightkin-zoo>"), text, &registry)
        .map_err(|e| err(Box::new(e)))?;
    let report =
        weightkin_runner::run(&recipe, &registry, &weightkin_runner::RunOptions::default())
            .map_err(|e| err(Box::new(e)))?;
    serde_json::from_str(&report.to_json()).map_err(|e| err(Box::new(e)))
}

fn field<'v>(v: &'v Value, path: &'static str) -> Result<&'v Value, Error> {
    v.pointer(path).ok_or(Error::ReportField { field: path })
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Reads a pair's result from its JSON report.
fn read_result(pair: &Pair<'_>, report: &Value) -> Result<PairResult, Error> {
    let c = field(report, "/comparisons/0")?;
    let alpha = field(c, "/verdicts/method/alpha")?
        .as_f64()
        .ok_or(Error::ReportField {
            field: "/verdicts/method/alpha",
        })?;
    let verdict = field(c, "/verdicts/overall")?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut components = BTreeMap::new();
    for k in field(c, "/verdicts/components")?
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        components.insert(str_of(k, "name"), str_of(k, "verdict"));
    }
    let mut tensors = Vec::new();
    let mut pearsons = Vec::new();
    for t in field(c, "/tensors")?
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(e) = t.get("evidence") else { continue };
        let role = str_of(e, "role");
        let num = |k: &str| e.get(k).and_then(Value::as_f64);
        if let (Some(pearson), Some(null_mean), Some(null_sd), Some(z), Some(p), Some(p_adjusted)) = (
            num("pearson"),
            num("null_mean"),
            num("null_sd"),
            num("z"),
            num("p"),
            num("p_adjusted"),
        ) {
            if role == "evidence" {
                pearsons.push(pearson);
            }
            tensors.push(TensorResult {
                name: str_of(t, "name"),
                class: str_of(t, "class"),
                shape: t
                    .get("shape")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
                role,
                null: str_of(e, "null"),
                pearson,
                null_mean,
                null_sd,
                z,
                p,
                p_adjusted,
                significant: p_adjusted < alpha,
                b_name: t.get("b_name").and_then(Value::as_str).map(str::to_owned),
                paired_by: t
                    .pointer("/paired_by/method")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                candidates: t
                    .pointer("/paired_by/candidates")
                    .and_then(Value::as_u64)
                    .unwrap_or(1),
            });
        }
    }
    pearsons.sort_by(f64::total_cmp);
    Ok(PairResult {
        a: pair.a.name.clone(),
        b: pair.b.name.clone(),
        architecture: pair.a.architecture,
        truth: pair.truth,
        category: pair.category.clone(),
        verdict,
        components,
        median_pearson: pearsons.get(pearsons.len() / 2).copied(),
        tensors,
        naming: Naming::Original,
        pairing: None,
        aligned: align_check(c),
    })
}

/// Runs weightkin on `a` and `b` with `permutation = "auto"` (residual stream, attention
/// heads and MLP units aligned before measuring), stating the Llama models' head counts in
/// the recipe (the zoo writes no `config.json`).
pub fn compare_aligned(a: &Path, b: &Path, arch: Architecture) -> Result<Value, Error> {
    let quote = |p: &Path| serde_json::Value::from(p.display().to_string()).to_string();
    let heads = match arch {
        Architecture::Llama => format!(
            "heads = {}\nkv-heads = {}\n",
            crate::arch::llama::CONFIG.heads,
            crate::arch::llama::CONFIG.kv_heads
        ),
        _ => String::new(),
    };
    let text = format!(
        "[audit]\nname = \"weightkin-zoo aligned\"\n\n[models.a]\npath = {}\n{heads}\n\
         [models.b]\npath = {}\n{heads}\n[[compare]]\na = \"a\"\nb = \"b\"\n\
         permutation = \"auto\"\n",
        quote(a),
        quote(b)
    );
    compare_recipe(a, b, &text)
}

/// Compares every validation pair of the zoo in `dir` with `permutation = "auto"`.
pub fn run_aligned(dir: &Path, m: &Manifest) -> Result<Vec<PairResult>, Error> {
    pairs(m)
        .par_iter()
        .map(|p| {
            let report =
                compare_aligned(&dir.join(&p.a.path), &dir.join(&p.b.path), p.a.architecture)?;
            read_result(p, &report)
        })
        .collect()
}

/// Compares every validation pair of the zoo in `dir` with `permutation = "auto"` after
/// giving every B a function-preserving scramble ([`crate::scramble`]: KV groups and MLP units
/// permuted in every layer, seeded by B's name), written under `work`. Architectures the
/// scramble does not cover (ResNet, MLP) are compared unchanged, and their
/// [`AlignCheck::scrambled`] is false.
pub fn run_scrambled(dir: &Path, m: &Manifest, work: &Path) -> Result<Vec<PairResult>, Error> {
    let pairs = pairs(m);
    let mut bs: Vec<&Model> = pairs.iter().map(|p| p.b).collect();
    bs.sort_by(|x, y| x.name.cmp(&y.name));
    bs.dedup_by(|x, y| x.name == y.name);
    // B's name → its scrambled copy (models not scrambled are absent).
    let scrambled: BTreeMap<String, std::path::PathBuf> = bs
        .par_iter()
        .map(|b| {
            let w = crate::weights::read(&dir.join(&b.path))?;
            let config = crate::arch::llama::CONFIG;
            let Some(s) = crate::scramble::scramble(&w, b.architecture, &b.name, &config)? else {
                return Ok(None);
            };
            let path = work.join("scrambled").join(&b.path);
            let bytes = crate::weights::serialize(&s, b.dtype, &b.name)?;
            crate::build::write_atomic(&path, &bytes)?;
            Ok(Some((b.name.clone(), path)))
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, Error>>()?;
    pairs
        .par_iter()
        .map(|p| {
            let b = scrambled.get(&p.b.name);
            let b_path = b.cloned().unwrap_or_else(|| dir.join(&p.b.path));
            let report = compare_aligned(&dir.join(&p.a.path), &b_path, p.a.architecture)?;
            let mut r = read_result(p, &report)?;
            if let Some(a) = &mut r.aligned {
                a.scrambled = b.is_some();
                if a.scrambled && p.truth == Truth::Related {
                    check_scramble(a, &p.b.name);
                }
            }
            Ok(r)
        })
        .collect()
}

/// Compares every validation pair of the zoo in `dir`.
pub fn run(dir: &Path, m: &Manifest) -> Result<Vec<PairResult>, Error> {
    pairs(m)
        .par_iter()
        .map(|p| {
            let report = compare(&dir.join(&p.a.path), &dir.join(&p.b.path))?;
            read_result(p, &report)
        })
        .collect()
}

/// B of every pair renamed: where its file is and where each original tensor went.
struct RenamedModel {
    path: std::path::PathBuf,
    truth: BTreeMap<String, String>,
    /// Presented name → the first presented name whose tensor has the same shape and
    /// bit-identical values (itself when none): pairs between such tensors cannot be told
    /// apart by any search, and are counted as equivalent, not wrong.
    same: BTreeMap<String, String>,
}

/// For every tensor of `w`, the first (by name) tensor with the same shape and identical
/// values, both under their presented names (`truth`).
fn identical(
    w: &crate::weights::Weights,
    truth: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut first: BTreeMap<(Vec<usize>, Vec<u32>), &String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, t) in w {
        let Some(v) = t.floats() else { continue };
        let key = (t.shape.clone(), v.iter().map(|x| x.to_bits()).collect());
        let rep = *first.entry(key).or_insert(name);
        if let (Some(x), Some(y)) = (truth.get(name), truth.get(rep)) {
            out.insert(x.clone(), y.clone());
        }
    }
    out
}

/// Compares every validation pair of the zoo in `dir` with B's names hidden under `naming`
/// (renamed copies written under `work`) and `pairing = "auto"`, and checks each discovered
/// pairing against the truth. [`Naming::Original`] is [`run`].
pub fn run_named(
    dir: &Path,
    m: &Manifest,
    naming: Naming,
    work: &Path,
) -> Result<Vec<PairResult>, Error> {
    if naming == Naming::Original {
        return run(dir, m);
    }
    let pairs = pairs(m);
    let mut bs: Vec<&Model> = pairs.iter().map(|p| p.b).collect();
    bs.sort_by(|x, y| x.name.cmp(&y.name));
    bs.dedup_by(|x, y| x.name == y.name);
    let renamed: BTreeMap<String, RenamedModel> = bs
        .par_iter()
        .map(|b| {
            let w = crate::weights::read(&dir.join(&b.path))?;
            let r = rename(&w, b.architecture, &b.name, naming);
            let path = work.join(naming.name()).join(&b.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            let bytes = crate::weights::serialize(&r.weights, b.dtype, &b.name)?;
            crate::build::write_atomic(&path, &bytes)?;
            Ok((
                b.name.clone(),
                RenamedModel {
                    path,
                    same: identical(&w, &r.truth),
                    truth: r.truth,
                },
            ))
        })
        .collect::<Result<_, Error>>()?;
    // A's float tensors, per model.
    let mut as_: Vec<&Model> = pairs.iter().map(|p| p.a).collect();
    as_.sort_by(|x, y| x.name.cmp(&y.name));
    as_.dedup_by(|x, y| x.name == y.name);
    let floats: BTreeMap<String, Vec<String>> = as_
        .par_iter()
        .map(|a| {
            let w = crate::weights::read(&dir.join(&a.path))?;
            let names = w
                .iter()
                .filter(|(_, t)| t.floats().is_some())
                .map(|(n, _)| n.clone())
                .collect();
            Ok((a.name.clone(), names))
        })
        .collect::<Result<_, Error>>()?;
    pairs
        .par_iter()
        .map(|p| {
            // Both maps hold every model of `pairs` (built above from the same list).
            let (Some(b), Some(a_floats)) = (renamed.get(&p.b.name), floats.get(&p.a.name)) else {
                return Err(Error::MissingFile {
                    model: format!("{} (renamed {})", p.b.name, naming.name()),
                    path: work.join(naming.name()).join(&p.b.path),
                });
            };
            let report = compare_auto(&dir.join(&p.a.path), &b.path)?;
            let mut r = read_result(p, &report)?;
            r.naming = naming;
            let (ao, bo) = (layer_origins(m, p.a), layer_origins(m, p.b));
            let truth = |a: &str| -> Option<String> {
                b.truth
                    .get(&counterpart(a, ao.as_deref(), bo.as_deref())?)
                    .cloned()
            };
            let same = |x: &str, y: &str| b.same.get(x).is_some_and(|s| b.same.get(y) == Some(s));
            r.pairing = Some(check_pairing(
                &report,
                a_floats,
                &truth,
                &same,
                p.truth == Truth::Related,
            ));
            Ok(r)
        })
        .collect()
}

/// Compares the pairs a report lists with the truth: `truth(a)` is the name B's true
/// counterpart of A's tensor `a` is presented under, `None` when B has none.
fn check_pairing(
    report: &Value,
    a_floats: &[String],
    truth: &dyn Fn(&str) -> Option<String>,
    same: &dyn Fn(&str, &str) -> bool,
    keep_wrong: bool,
) -> PairingCheck {
    let mut found: BTreeMap<&str, &str> = BTreeMap::new();
    let mut c = PairingCheck::default();
    for t in report
        .pointer("/comparisons/0/tensors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(name), method) = (
            t.get("name").and_then(Value::as_str),
            t.pointer("/paired_by/method")
                .and_then(Value::as_str)
                .unwrap_or("name"),
        ) else {
            continue;
        };
        let a = t.get("a_name").and_then(Value::as_str).unwrap_or(name);
        let b = t.get("b_name").and_then(Value::as_str).unwrap_or(name);
        found.insert(a, b);
        *c.methods.entry(method.to_owned()).or_insert(0) += 1;
    }
    for a in a_floats {
        let Some(want) = truth(a) else { continue };
        c.expected += 1;
        match found.get(a.as_str()) {
            Some(got) if *got == want.as_str() => c.correct += 1,
            Some(got) if same(got, &want) => c.equivalent += 1,
            Some(got) => {
                c.wrong += 1;
                if keep_wrong {
                    c.wrong_pairs.push(format!("{a} → {got} (true: {want})"));
                }
            }
            None => c.missing += 1,
        }
    }
    c
}

#[derive(Default)]
struct Counts {
    pairs: u64,
    derived: u64,
    inconclusive: u64,
    independent: u64,
}

impl Counts {
    fn add(&mut self, verdict: &str) {
        self.pairs += 1;
        match verdict {
            "derived" => self.derived += 1,
            "inconclusive" => self.inconclusive += 1,
            _ => self.independent += 1,
        }
    }

    fn row(&self) -> String {
        format!(
            "{:>6} {:>8} {:>13} {:>12}",
            self.pairs, self.derived, self.inconclusive, self.independent
        )
    }
}

#[derive(Default)]
struct ZStats {
    n: u64,
    sum: f64,
    sum_sq: f64,
    max: f64,
    significant: u64,
    nulls: std::collections::BTreeSet<String>,
    r_sum: f64,
    r_sum_sq: f64,
    null_sds: Vec<f64>,
}

fn mean_sd(n: u64, sum: f64, sum_sq: f64) -> (f64, f64) {
    let n = n.max(1) as f64;
    let mean = sum / n;
    (mean, (sum_sq / n - mean * mean).max(0.0).sqrt())
}

/// The validation table, as printed and as pasted into VALIDATION.md.
pub fn table(m: &Manifest, results: &[PairResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "weightkin-zoo {} ({} models): {} pairs compared with `weightkin compare` defaults{}",
        m.generator.version,
        m.models.len(),
        results.len(),
        match results.first().map(|r| r.naming) {
            Some(n @ (Naming::Opaque | Naming::Convention)) => format!(
                ",\nB's names hidden ({}) and `pairing = \"auto\"`",
                n.name()
            ),
            _ => String::new(),
        }
    );
    if results.iter().any(|r| r.aligned.is_some()) {
        let _ = writeln!(
            o,
            "with `permutation = \"auto\"`{}",
            if results
                .iter()
                .any(|r| r.aligned.as_ref().is_some_and(|a| a.scrambled))
            {
                "; every Llama B scrambled first (function-preserving KV-group and MLP-unit \
                 permutations), ResNet and MLP B unchanged"
            } else {
                ""
            }
        );
    }
    let header = format!(
        "{:<44} {:<7} {:>6} {:>8} {:>13} {:>12}",
        "", "arch", "pairs", "derived", "inconclusive", "independent"
    );
    for truth in [Truth::Unrelated, Truth::Related] {
        let _ = writeln!(
            o,
            "\n{}",
            match truth {
                Truth::Unrelated =>
                    "UNRELATED pairs (truth: no shared ancestry; `derived` is a false positive)",
                Truth::Related => "DERIVED pairs (truth: B descends from A; `derived` is a hit)",
            }
        );
        let _ = writeln!(o, "{header}");
        let mut rows: BTreeMap<(String, Architecture), Counts> = BTreeMap::new();
        let mut total = Counts::default();
        for r in results.iter().filter(|r| r.truth == truth) {
            rows.entry((r.category.clone(), r.architecture))
                .or_default()
                .add(&r.verdict);
            total.add(&r.verdict);
        }
        for ((cat, arch), c) in &rows {
            let _ = writeln!(o, "{cat:<44} {:<7} {}", arch.name(), c.row());
        }
        let _ = writeln!(o, "{:<44} {:<7} {}", "all", "", total.row());
        if truth == Truth::Unrelated {
            let n = total.pairs.max(1) as f64;
            let rate = total.derived as f64 / n;
            let _ = writeln!(
                o,
                "false-positive rate (derived): {} of {} = {:.2} %{}",
                total.derived,
                total.pairs,
                100.0 * rate,
                if total.derived == 0 {
                    format!(" (95 % upper bound {:.2} %, rule of three)", 300.0 / n)
                } else {
                    String::new()
                }
            );
        }
    }
    if results.iter().any(|r| r.pairing.is_some()) {
        pairing_table(&mut o, results);
    }
    if results.iter().any(|r| r.aligned.is_some()) {
        align_table(&mut o, results);
    }
    search_null(&mut o, results);
    // Calibration per tensor class on unrelated pairs.
    let mut z: BTreeMap<(Architecture, String, String), ZStats> = BTreeMap::new();
    for r in results.iter().filter(|r| r.truth == Truth::Unrelated) {
        for t in &r.tensors {
            let s = z
                .entry((r.architecture, t.class.clone(), t.role.clone()))
                .or_default();
            s.n += 1;
            s.sum += t.z;
            s.sum_sq += t.z * t.z;
            s.max = if s.n == 1 { t.z } else { s.max.max(t.z) };
            s.significant += u64::from(t.significant);
            s.nulls.insert(t.null.clone());
            s.r_sum += t.pearson;
            s.r_sum_sq += t.pearson * t.pearson;
            s.null_sds.push(t.null_sd);
        }
    }
    let _ = writeln!(
        o,
        "\nNULL CALIBRATION on unrelated pairs, per tensor class (correct null: mean z ≈ 0, \
         sd z ≈ 1, no tensor significant;\n  sd r = spread of Pearson across the pairs, null sd = \
         median s.d. the null assumed)"
    );
    let _ = writeln!(
        o,
        "{:<7} {:<62} {:<10} {:<20} {:>5} {:>7} {:>6} {:>6} {:>7} {:>7} {:>4}",
        "arch", "class", "role", "null", "n", "mean z", "sd z", "max z", "sd r", "null sd", "sig"
    );
    for ((arch, class, role), s) in &mut z {
        let (mean, sd) = mean_sd(s.n, s.sum, s.sum_sq);
        let (_, r_sd) = mean_sd(s.n, s.r_sum, s.r_sum_sq);
        s.null_sds.sort_by(f64::total_cmp);
        let null_sd = s.null_sds.get(s.null_sds.len() / 2).copied().unwrap_or(0.0);
        let _ = writeln!(
            o,
            "{:<7} {:<62} {:<10} {:<20} {:>5} {:>7.2} {:>6.2} {:>6.2} {:>7.4} {:>7.4} {:>4}",
            arch.name(),
            class,
            role,
            s.nulls.iter().cloned().collect::<Vec<_>>().join("+"),
            s.n,
            mean,
            sd,
            s.max,
            r_sd,
            null_sd,
            s.significant
        );
    }
    o
}

/// What the alignment stage found, by truth and architecture: layers aligned, layers whose
/// alignment counted as recovered, and the residual bases chosen.
fn align_table(o: &mut String, results: &[PairResult]) {
    let _ = writeln!(
        o,
        "\nALIGNMENT (permutation = \"auto\"): layer alignments (MLP units, attention head \
         groups) recovered, and residual bases chosen"
    );
    type Row = (u64, u64, u64, u64, BTreeMap<String, u64>);
    let mut rows: BTreeMap<(Truth, Architecture), Row> = BTreeMap::new();
    for r in results {
        let Some(a) = &r.aligned else { continue };
        let e = rows.entry((r.truth, r.architecture)).or_default();
        e.0 += 1;
        e.3 += u64::from(a.scrambled);
        e.1 += a.layers;
        e.2 += a.recovered;
        *e.4.entry(
            a.residual
                .clone()
                .unwrap_or_else(|| "no token embedding".into()),
        )
        .or_default() += 1;
    }
    if results
        .iter()
        .any(|r| r.aligned.as_ref().is_some_and(|a| a.scrambled))
    {
        let _ = writeln!(
            o,
            "B scrambled first (function-preserving: residual stream signed-permuted, KV groups \
             and MLP units permuted in every layer, seeded by B's name) for Llama only; ResNet \
             and MLP B compared unchanged"
        );
    }
    let _ = writeln!(
        o,
        "{:<10} {:<7} {:>6} {:>9} {:>8} {:>10}  residual basis (pairs)",
        "truth", "arch", "pairs", "scrambled", "layers", "recovered"
    );
    for ((truth, arch), (pairs, layers, recovered, scrambled, bases)) in &rows {
        let bases: Vec<String> = bases.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            o,
            "{:<10} {:<7} {:>6} {:>9} {:>8} {:>10}  {}",
            truth_name(*truth),
            arch.name(),
            pairs,
            scrambled,
            layers,
            recovered,
            bases.join(", ")
        );
    }
    let mut kinds: BTreeMap<(Truth, Architecture, String), (u64, AlignKind)> = BTreeMap::new();
    for r in results {
        let Some(a) = &r.aligned else { continue };
        for (what, k) in &a.kinds {
            let e = kinds
                .entry((r.truth, r.architecture, what.clone()))
                .or_default();
            e.0 += 1;
            e.1.layers += k.layers;
            e.1.recovered += k.recovered;
            e.1.moved += k.moved;
            e.1.pearson_before_sum += k.pearson_before_sum;
            e.1.pearson_after_sum += k.pearson_after_sum;
            if let Some(m) = k.moved_by_scramble {
                *e.1.moved_by_scramble.get_or_insert(0) += m;
            }
            if let Some(m) = k.layers_moved_as_scrambled {
                *e.1.layers_moved_as_scrambled.get_or_insert(0) += m;
            }
        }
    }
    if kinds.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nby kind: units (KV groups for heads) moved by the alignment and by the scramble, layers \
         moving as many as the scramble, mean Pearson of the layers' tensors before → after"
    );
    let _ = writeln!(
        o,
        "{:<10} {:<7} {:<16} {:>6} {:>7} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}",
        "truth",
        "arch",
        "kind",
        "pairs",
        "layers",
        "recovered",
        "moved",
        "scramble",
        "as many",
        "r before",
        "r after"
    );
    let opt = |x: Option<u64>| x.map_or("-".to_owned(), |x| x.to_string());
    for ((truth, arch, what), (pairs, k)) in &kinds {
        let n = k.layers.max(1) as f64;
        let _ = writeln!(
            o,
            "{:<10} {:<7} {:<16} {:>6} {:>7} {:>9} {:>7} {:>9} {:>8} {:>8.4} {:>8.4}",
            truth_name(*truth),
            arch.name(),
            what,
            pairs,
            k.layers,
            k.recovered,
            k.moved,
            opt(k.moved_by_scramble),
            opt(k.layers_moved_as_scrambled),
            k.pearson_before_sum / n,
            k.pearson_after_sum / n
        );
    }
    // Evidence measured after alignment (null `aligned-cross-layer`), per truth and arch.
    let mut evidence: BTreeMap<(Truth, Architecture), (u64, u64, u64)> = BTreeMap::new();
    for r in results {
        let aligned: Vec<&TensorResult> = r
            .tensors
            .iter()
            .filter(|t| t.role == "evidence" && t.null == "aligned-cross-layer")
            .collect();
        if aligned.is_empty() {
            continue;
        }
        let e = evidence.entry((r.truth, r.architecture)).or_default();
        e.0 += 1;
        e.1 += u64::from(aligned.iter().all(|t| t.significant));
        e.2 += u64::from(aligned.iter().any(|t| t.significant));
    }
    for ((truth, arch), (n, all, any)) in &evidence {
        let _ = writeln!(
            o,
            "{} {} pairs with aligned evidence: {n}; every aligned tensor significant: {all}; \
             at least one: {any}",
            truth_name(*truth),
            arch.name()
        );
    }
}

/// Pairing accuracy per category, how pairs were found, and every tensor that made an
/// unrelated pair other than `independent`.
fn pairing_table(o: &mut String, results: &[PairResult]) {
    let _ = writeln!(
        o,
        "\nPAIRING against the truth (A's float tensors with a counterpart in B; correct = paired \
         with it; equal = paired with a tensor of B bit-identical to it)"
    );
    let _ = writeln!(
        o,
        "{:<9} {:<44} {:<7} {:>6} {:>8} {:>8} {:>6} {:>6} {:>8}  by method (compared pairs)",
        "truth", "", "arch", "pairs", "tensors", "correct", "equal", "wrong", "missing"
    );
    #[derive(Default)]
    struct Acc {
        pairs: u64,
        c: PairingCheck,
        all_correct: u64,
    }
    let mut rows: BTreeMap<(Truth, String, Architecture), Acc> = BTreeMap::new();
    let mut totals: BTreeMap<Truth, Acc> = BTreeMap::new();
    for r in results {
        let Some(c) = &r.pairing else { continue };
        for acc in [rows
            .entry((r.truth, r.category.clone(), r.architecture))
            .or_default()]
        .into_iter()
        .chain([totals.entry(r.truth).or_default()])
        {
            acc.pairs += 1;
            acc.c.expected += c.expected;
            acc.c.correct += c.correct;
            acc.c.equivalent += c.equivalent;
            acc.c.wrong += c.wrong;
            acc.c.missing += c.missing;
            acc.all_correct += u64::from(c.correct + c.equivalent == c.expected);
            for (k, v) in &c.methods {
                *acc.c.methods.entry(k.clone()).or_insert(0) += v;
            }
        }
    }
    let line = |o: &mut String, truth: &str, cat: &str, arch: &str, a: &Acc| {
        let methods =
            a.c.methods
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
        let _ = writeln!(
            o,
            "{truth:<9} {cat:<44} {arch:<7} {:>6} {:>8} {:>8} {:>6} {:>6} {:>8}  {methods}",
            a.pairs, a.c.expected, a.c.correct, a.c.equivalent, a.c.wrong, a.c.missing
        );
    };
    for ((truth, cat, arch), a) in &rows {
        line(o, truth_name(*truth), cat, arch.name(), a);
    }
    for (truth, a) in &totals {
        line(o, truth_name(*truth), "all", "", a);
        let _ = writeln!(
            o,
            "{:<9} pairs with every tensor paired correctly (or to an identical tensor): {} of \
             {}; tensors: {} + {} of {} = {:.2} %",
            truth_name(*truth),
            a.all_correct,
            a.pairs,
            a.c.correct,
            a.c.equivalent,
            a.c.expected,
            100.0 * (a.c.correct + a.c.equivalent) as f64 / a.c.expected.max(1) as f64
        );
    }
    let wrong: Vec<&PairResult> = results
        .iter()
        .filter(|r| {
            r.pairing
                .as_ref()
                .is_some_and(|c| !c.wrong_pairs.is_empty())
        })
        .collect();
    if !wrong.is_empty() {
        let _ = writeln!(o, "\nwrong pairs in derived pairs (first 40)");
        for r in &wrong {
            for w in r.pairing.iter().flat_map(|c| &c.wrong_pairs) {
                let _ = writeln!(o, "  {} vs {}: {w}", r.a, r.b);
            }
        }
        truncate_lines(o, "wrong pairs in derived pairs", 40);
    }
    let _ = writeln!(
        o,
        "\nunrelated pairs not `independent`: their significant tensors (name in A ← B, how \
         paired, candidates k, Pearson, null, z, Holm p)"
    );
    let mut any = false;
    for r in results
        .iter()
        .filter(|r| r.truth == Truth::Unrelated && r.verdict != "independent")
    {
        any = true;
        let _ = writeln!(o, "  {} vs {}: {}", r.a, r.b, r.verdict);
        for t in r.tensors.iter().filter(|t| t.significant) {
            let _ = writeln!(
                o,
                "    {} ← {} {} k={} r={:.4} {} z={:.2} p={:.2e}",
                t.name,
                t.b_name.as_deref().unwrap_or("(same name)"),
                t.paired_by.as_deref().unwrap_or("name"),
                t.candidates,
                t.pearson,
                t.null,
                t.z,
                t.p_adjusted
            );
        }
    }
    if !any {
        let _ = writeln!(o, "  none");
    }
}

fn truth_name(t: Truth) -> &'static str {
    match t {
        Truth::Related => "derived",
        Truth::Unrelated => "unrelated",
    }
}

/// Keeps at most `max` lines after the line `title` (the last section of `o`).
fn truncate_lines(o: &mut String, title: &str, max: usize) {
    let Some(start) = o.rfind(title) else { return };
    let body_start = o[start..].find('\n').map_or(o.len(), |i| start + i + 1);
    let lines: Vec<&str> = o[body_start..].lines().collect();
    if lines.len() <= max {
        return;
    }
    let kept = lines[..max].join("\n");
    let more = lines.len() - max;
    o.truncate(body_start);
    let _ = writeln!(o, "{kept}\n  … {more} more (see --json)");
}

/// The null under the search, on unrelated pairs: per evidence tensor, how often its
/// one-sided p falls below 0.05 and 0.001 before and after the ×k adjustment for the `k`
/// candidates the search chose among (a valid bound keeps each fraction at or below its
/// level), by how the pair was found, and the smallest Holm-adjusted p of any unrelated pair.
fn search_null(o: &mut String, results: &[PairResult]) {
    #[derive(Default)]
    struct S {
        n: u64,
        raw05: u64,
        adj05: u64,
        raw001: u64,
        adj001: u64,
        k_max: u64,
        k_sum: u64,
    }
    let mut by: BTreeMap<(Architecture, String), S> = BTreeMap::new();
    let mut min_holm: Option<(f64, &PairResult, &TensorResult)> = None;
    for r in results.iter().filter(|r| r.truth == Truth::Unrelated) {
        for t in r.tensors.iter().filter(|t| t.role == "evidence") {
            let k = t.candidates.max(1);
            let raw = if t.p < 1.0 { t.p / k as f64 } else { t.p };
            let s = by
                .entry((r.architecture, t.paired_by.clone().unwrap_or("name".into())))
                .or_default();
            s.n += 1;
            s.raw05 += u64::from(raw < 0.05);
            s.adj05 += u64::from(t.p < 0.05);
            s.raw001 += u64::from(raw < 0.001);
            s.adj001 += u64::from(t.p < 0.001);
            s.k_max = s.k_max.max(k);
            s.k_sum += k;
            if min_holm.is_none_or(|(p, _, _)| t.p_adjusted < p) {
                min_holm = Some((t.p_adjusted, r, t));
            }
        }
    }
    let _ = writeln!(
        o,
        "\nSEARCH NULL on unrelated pairs: evidence tensors whose one-sided p is below a level, \
         before (raw) and after (×k) the adjustment for the k candidates searched"
    );
    let _ = writeln!(
        o,
        "{:<7} {:<10} {:>6} {:>6} {:>6} {:>11} {:>11} {:>12} {:>12}",
        "arch",
        "paired by",
        "n",
        "mean k",
        "max k",
        "raw < 0.05",
        "×k < 0.05",
        "raw < 0.001",
        "×k < 0.001"
    );
    let pct = |x: u64, n: u64| format!("{:.2} %", 100.0 * x as f64 / n.max(1) as f64);
    for ((arch, method), s) in &by {
        let _ = writeln!(
            o,
            "{:<7} {:<10} {:>6} {:>6.1} {:>6} {:>11} {:>11} {:>12} {:>12}",
            arch.name(),
            method,
            s.n,
            s.k_sum as f64 / s.n.max(1) as f64,
            s.k_max,
            pct(s.raw05, s.n),
            pct(s.adj05, s.n),
            pct(s.raw001, s.n),
            pct(s.adj001, s.n)
        );
    }
    if let Some((p, r, t)) = min_holm {
        let _ = writeln!(
            o,
            "smallest Holm-adjusted p of an unrelated pair: {p:.3e} ({} vs {}: {} ← {}, {} k={}, \
             r={:.4}, z={:.2}; the verdict needs < 1e-3)",
            r.a,
            r.b,
            t.name,
            t.b_name.as_deref().unwrap_or("(same name)"),
            t.paired_by.as_deref().unwrap_or("name"),
            t.candidates,
            t.pearson,
            t.z
        );
    }
}
