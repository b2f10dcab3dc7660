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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::arch::Architecture;
use crate::manifest::{Manifest, Model, Transform};
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
    /// Holm-adjusted p.
    pub p_adjusted: f64,
    /// p_adjusted < α.
    pub significant: bool,
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
    let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Compare {
        a: a.display().to_string(),
        b: b.display().to_string(),
        source,
    };
    let registry = weightkin_runner::registry::builtin().map_err(|e| err(Box::new(e)))?;
    let text = weightkin_runner::adhoc_recipe(
        &a.display().to_string(),
        &b.display().to_string(),
        &[],
        &[],
        &[],
    );
    let recipe = weightkin_runner::recipe::parse(Path::new("<weightkin-zoo>"), &text, &registry)
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
        if let (Some(pearson), Some(null_mean), Some(null_sd), Some(z), Some(p_adjusted)) = (
            num("pearson"),
            num("null_mean"),
            num("null_sd"),
            num("z"),
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
                p_adjusted,
                significant: p_adjusted < alpha,
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
    })
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
        "weightkin-zoo {} ({} models): {} pairs compared with `weightkin compare` defaults",
        m.generator.version,
        m.models.len(),
        results.len()
    );
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
