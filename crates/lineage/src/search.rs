//! Candidate search: which pairs of sketched models are worth an exact audit.
//!
//! # The statistic
//!
//! Two models are compared only inside one **block** (equal [`Sketch::arch_key`]: the same
//! evidence classes with the same shapes, whatever their layer counts). For every evidence
//! tensor key (class and shape) both hold, the Pearson r of the two sketches' values at the
//! shared coordinates gives Fisher's z = atanh(r)·√(m − 3) (m values); under "unrelated"
//! (independent bivariate normal values) z ~ N(0, 1). A class with as many layers on both
//! sides pairs layers in order; with different layer counts (a layer subset), each layer of
//! the smaller side takes its best match among the larger side's `L` layers, and that
//! maximum's p-value is corrected for the `L` layers searched (Šidák, p = 1 − (1 − p₁)^L:
//! the search's own null, as automatic pairing corrects its content search) before it is
//! turned back into a z. Per component (A's), Stouffer's
//! Z_c = Σz/√T combines its T tensors; the pair's score is the largest Z_c.
//!
//! # The null, and the threshold
//!
//! Tensors of trained models are not independent normal draws, and a component's tensors are
//! not independent of each other, so Z_c's null is *measured*, not assumed: on unrelated
//! trained pairs of the model zoo (`weightkin-simhub null`, VALIDATION.md) it has mean μ₀ and
//! s.d. σ₀ ([`SearchOptions::null_mean`], [`SearchOptions::null_sd`], floored at the analytic
//! N(0, 1)). With `hub_null`, the hub calibrates itself as well: the median and MAD-based
//! s.d. of Z_c over a seeded sample of up to [`HUB_NULL_PAIRS`] of its own pairs (nearly all
//! of which are unrelated in any large hub) replace μ₀ and σ₀ when they are larger — they
//! can only make the search more conservative.
//!
//! The search then takes the maximum over every pair it scores, so a pair becomes a
//! candidate only when its best component clears the Bonferroni bound of that maximum:
//! Z_c > μ + σ·Φ̄⁻¹(α / (M·C)), with M the pairs searched in the whole hub and C the
//! components compared in the pair. Under the measured null the probability that *any*
//! unrelated pair of the hub becomes a candidate is then at most α. Candidates are not
//! verdicts: each one gets the exact audit ([`crate::graph`]), and only its verdict makes an
//! edge; a candidate that is not derived costs one audit and nothing else.
//!
//! # Screening
//!
//! Scoring every pair on all `k` values of every tensor would read each pair's sketches
//! whole. The first [`SCREEN`] values of each tensor are themselves a uniform sample (the
//! coordinates' order is random, [`weightkin_runner::sketch::coordinates`]), so a first pass
//! scores every pair on those alone (linear z = r·√(m − 3)) and keeps those above
//! [`SCREEN_Z`]; only they are scored on all values. The screen loses only pairs whose
//! full score would be near the noise: at the audit's power limit (expected Pearson 0.12 per
//! tensor) 128 values of 30 tensors already give a screening Z ≈ 7.6.
//!
//! Exact top-k over blocks was chosen over a vector index (LanceDB, DuckDB arrays): the
//! statistic is a sum over tensors of per-tensor Fisher z's with a layer search for subsets,
//! which no inner-product index computes, and the blocked exact pass measured fast enough
//! (BENCHMARKS.md, "Lineage").

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use weightkin_core::rng::Rng;
use weightkin_runner::sketch::Sketch;

use crate::error::Error;
use crate::stats::{upper_tail, upper_tail_inv};

/// Values per tensor the screening pass uses.
pub const SCREEN: usize = 128;

/// Screening Z a pair must exceed to be scored on all values (one-sided 0.13 % of unrelated
/// pairs pass under N(0, 1)).
pub const SCREEN_Z: f64 = 3.0;

/// Most pairs sampled for the hub's own null.
pub const HUB_NULL_PAIRS: usize = 20_000;

/// Fewest sampled pairs for which the hub's own null is used.
pub const HUB_NULL_MIN: usize = 500;

/// Default family-wise rate of the search: the probability that any unrelated pair becomes a
/// candidate.
pub const DEFAULT_ALPHA: f64 = 0.01;

/// Default null mean of a component's Stouffer Z between unrelated models (VALIDATION.md,
/// "Lineage search"): the analytic 0 (measured on the trained zoo's small subset: −0.04).
pub const DEFAULT_NULL_MEAN: f64 = 0.0;

/// Default null s.d. (VALIDATION.md, "Lineage search"): measured on unrelated *trained* pairs of
/// the zoo's small subset (`weightkin-simhub null`: 1.19 over 776 component scores of 360
/// pairs), rounded up. Under the analytic 1, one of those 360 unrelated pairs crossed the
/// search's threshold: trained weights of one architecture share structure that Gaussian draws
/// do not, and a component's tensors are not independent.
pub const DEFAULT_NULL_SD: f64 = 1.2;

/// How the search decides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SearchOptions {
    /// Family-wise rate of unrelated pairs becoming candidates.
    pub alpha: f64,
    /// μ₀: null mean of a component's Z.
    pub null_mean: f64,
    /// σ₀: null s.d. of a component's Z (floored at 1).
    pub null_sd: f64,
    /// Estimate the null from the hub's own pairs too (only ever widens it).
    pub hub_null: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            alpha: DEFAULT_ALPHA,
            null_mean: DEFAULT_NULL_MEAN,
            null_sd: DEFAULT_NULL_SD,
            hub_null: true,
        }
    }
}

/// A pair worth an exact audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Index of model A in the sketches searched.
    pub a: usize,
    /// Index of model B.
    pub b: usize,
    /// The best component's Z, standardised by the null: (Z_c − μ)/σ.
    pub z: f64,
    /// That component.
    pub component: String,
    /// Tensors compared in the pair.
    pub tensors: usize,
    /// Mean sketch Pearson over those tensors.
    pub mean_pearson: f64,
}

/// What the search did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchStats {
    /// Models searched.
    pub models: usize,
    /// Blocks (architecture keys).
    pub blocks: usize,
    /// Pairs scored by the screen (M).
    pub pairs_searched: u64,
    /// Pairs scored on all values.
    pub pairs_scored: u64,
    /// Null mean used.
    pub null_mean: f64,
    /// Null s.d. used.
    pub null_sd: f64,
    /// The hub's own null estimate (median, s.d. from the MAD, component scores sampled), if
    /// taken.
    pub hub_null: Option<(f64, f64, usize)>,
    /// The threshold on Z_c for a pair with one component.
    pub threshold: f64,
    /// The options.
    pub options: SearchOptions,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// Candidates, ordered by (a, b).
    pub candidates: Vec<Candidate>,
    /// What it did.
    pub stats: SearchStats,
}

/// One tensor key of one model: its layers' centred unit vectors (full and screening).
struct Key {
    key: usize,
    component: usize,
    /// Per layer (sorted by layer): full unit vector.
    full: Vec<Vec<f32>>,
    /// Per layer: unit vector of the first [`SCREEN`] values.
    screen: Vec<Vec<f32>>,
}

/// A model ready for scoring: its evidence keys in key order.
struct Prepared {
    keys: Vec<Key>,
}

/// Centred, unit-norm copy of `x` (`None` when it has no spread or fewer than 4 values).
fn unit(x: &[f32]) -> Option<Vec<f32>> {
    if x.len() < 4 {
        return None;
    }
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
    let ss: f64 = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
    if !(ss > 0.0 && ss.is_finite()) {
        return None;
    }
    let inv = 1.0 / ss.sqrt();
    Some(
        x.iter()
            .map(|&v| ((f64::from(v) - mean) * inv) as f32)
            .collect(),
    )
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f64 = acc.iter().map(|&v| f64::from(v)).sum();
    for (x, y) in ra.iter().zip(rb) {
        s += f64::from(*x) * f64::from(*y);
    }
    s
}

/// Fisher z of a Pearson r over `m` values.
fn fisher(r: f64, m: usize) -> f64 {
    let r = r.clamp(-0.999_999, 0.999_999);
    r.atanh() * ((m as f64) - 3.0).max(1.0).sqrt()
}

/// Interns strings to dense ids in first-seen order.
#[derive(Default)]
struct Interner(BTreeMap<String, usize>);

impl Interner {
    fn id(&mut self, s: String) -> usize {
        let n = self.0.len();
        *self.0.entry(s).or_insert(n)
    }
}

/// One layer of a key while a model is prepared: (layer, full unit vector, screening one).
type LayerVectors = (u32, Vec<f32>, Vec<f32>);

fn prepare(s: &Sketch, keys: &mut Interner, components: &mut Interner) -> Prepared {
    let mut by_key: BTreeMap<usize, (usize, Vec<LayerVectors>)> = BTreeMap::new();
    for t in s.tensors.iter().filter(|t| t.role.is_evidence()) {
        let values = t.values_f32();
        let (Some(full), Some(screen)) = (unit(&values), unit(&values[..values.len().min(SCREEN)]))
        else {
            continue;
        };
        let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
        let key = keys.id(format!("{}[{}]", t.class, shape.join(",")));
        let component = components.id(t.component.clone());
        by_key
            .entry(key)
            .or_insert((component, Vec::new()))
            .1
            .push((t.layer.unwrap_or(0), full, screen));
    }
    Prepared {
        keys: by_key
            .into_iter()
            .map(|(key, (component, mut layers))| {
                layers.sort_by_key(|(l, _, _)| *l);
                let (full, screen) = layers.into_iter().map(|(_, f, s)| (f, s)).unzip();
                Key {
                    key,
                    component,
                    full,
                    screen,
                }
            })
            .collect(),
    }
}

/// A pair's score: the best component's Stouffer Z, that component, the number of components
/// and tensors compared, and the mean Pearson.
struct Score {
    /// Every component's Z_c.
    all: Vec<f64>,
    best: f64,
    component: usize,
    components: usize,
    tensors: usize,
    mean_pearson: f64,
}

fn score(a: &Prepared, b: &Prepared, screen: bool) -> Option<Score> {
    let mut sums: Vec<(usize, f64, usize)> = Vec::new();
    let (mut tensors, mut r_sum) = (0usize, 0f64);
    let (mut i, mut j) = (0, 0);
    while i < a.keys.len() && j < b.keys.len() {
        let (ka, kb) = (&a.keys[i], &b.keys[j]);
        if ka.key < kb.key {
            i += 1;
            continue;
        }
        if kb.key < ka.key {
            j += 1;
            continue;
        }
        i += 1;
        j += 1;
        let (va, vb) = if screen {
            (&ka.screen, &kb.screen)
        } else {
            (&ka.full, &kb.full)
        };
        let z_of = |x: &[f32], y: &[f32]| -> (f64, f64) {
            let r = dot(x, y);
            let m = x.len().min(y.len());
            let z = if screen {
                r * ((m as f64) - 3.0).max(1.0).sqrt()
            } else {
                fisher(r, m)
            };
            (z, r)
        };
        let mut zs: Vec<(f64, f64)> = Vec::new();
        if va.len() == vb.len() {
            for (x, y) in va.iter().zip(vb) {
                if x.len() == y.len() {
                    zs.push(z_of(x, y));
                }
            }
        } else {
            let (small, large) = if va.len() < vb.len() {
                (va, vb)
            } else {
                (vb, va)
            };
            for x in small {
                let best = large
                    .iter()
                    .filter(|y| y.len() == x.len())
                    .map(|y| z_of(x, y))
                    .fold(None, |m: Option<(f64, f64)>, v| match m {
                        Some(m) if m.0 >= v.0 => Some(m),
                        _ => Some(v),
                    });
                if let Some((z, r)) = best {
                    // The maximum's null over the L layers searched (Šidák: p = 1 − (1 − p₁)^L,
                    // exact for independent layers), back to a z. Not Bonferroni's min(1, L·p₁):
                    // its mass at p = 1 has no finite z.
                    let p1 = upper_tail(z);
                    let p = -(large.len() as f64 * (-p1).ln_1p()).exp_m1();
                    let z = if p > 0.0 { upper_tail_inv(p) } else { z };
                    zs.push((z.max(-8.0), r));
                }
            }
        }
        let at = match sums.iter().position(|(c, _, _)| *c == ka.component) {
            Some(p) => p,
            None => {
                sums.push((ka.component, 0.0, 0));
                sums.len() - 1
            }
        };
        let entry = &mut sums[at];
        for (z, r) in zs {
            entry.1 += z;
            entry.2 += 1;
            tensors += 1;
            r_sum += r;
        }
    }
    let components = sums.iter().filter(|s| s.2 > 0).count();
    let (component, best) = sums
        .iter()
        .filter(|s| s.2 > 0)
        .map(|&(c, sum, n)| (c, sum / (n as f64).sqrt()))
        .fold(None, |m: Option<(usize, f64)>, v| match m {
            Some(m) if m.1 >= v.1 => Some(m),
            _ => Some(v),
        })?;
    let all = sums
        .iter()
        .filter(|s| s.2 > 0)
        .map(|&(_, sum, n)| sum / (n as f64).sqrt())
        .collect();
    Some(Score {
        all,
        best,
        component,
        components,
        tensors,
        mean_pearson: r_sum / tensors.max(1) as f64,
    })
}

/// Finds the candidate pairs among `sketches` (module doc).
pub fn search(sketches: &[Sketch], opts: &SearchOptions) -> Result<Search, Error> {
    if let Some(first) = sketches.first() {
        if let Some(other) = sketches
            .iter()
            .find(|s| s.seed != first.seed || s.samples != first.samples)
        {
            return Err(Error::Incompatible {
                first: first.model.clone(),
                second: other.model.clone(),
            });
        }
    }
    let (prepared, components) = prepare_all(sketches);
    let component_names: BTreeMap<usize, String> =
        components.0.into_iter().map(|(n, i)| (i, n)).collect();
    let mut blocks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in sketches.iter().enumerate() {
        blocks.entry(s.arch_key.as_str()).or_default().push(i);
    }
    let pairs_searched: u64 = blocks
        .values()
        .map(|m| (m.len() as u64) * (m.len() as u64).saturating_sub(1) / 2)
        .sum();

    // The hub's own null: a seeded sample of pairs, scored on all values.
    let (mut mu, mut sigma) = (opts.null_mean, opts.null_sd.max(1.0));
    let mut hub_null = None;
    if opts.hub_null && pairs_searched > 0 {
        let mut rng = Rng::new(0x6875_625f_6e75_6c6c);
        let eligible: Vec<&Vec<usize>> = blocks.values().filter(|m| m.len() >= 2).collect();
        let weights: Vec<u64> = eligible
            .iter()
            .map(|m| (m.len() as u64) * (m.len() as u64 - 1) / 2)
            .collect();
        let n = (pairs_searched as usize).min(HUB_NULL_PAIRS);
        let pairs: Vec<(usize, usize)> = (0..n)
            .map(|_| {
                let mut t = rng.below(pairs_searched);
                let mut b = 0;
                while b + 1 < weights.len() && t >= weights[b] {
                    t -= weights[b];
                    b += 1;
                }
                let m = eligible[b];
                let i = rng.below(m.len() as u64) as usize;
                let mut j = rng.below(m.len() as u64 - 1) as usize;
                if j >= i {
                    j += 1;
                }
                (m[i], m[j])
            })
            .collect();
        // Every component's Z_c, not the best one: the threshold already accounts for the
        // maximum over components (C), and the median of maxima would count it twice.
        let mut z: Vec<f64> = pairs
            .par_iter()
            .filter_map(|&(i, j)| score(&prepared[i], &prepared[j], false).map(|s| s.all))
            .flatten()
            .collect();
        if z.len() >= HUB_NULL_MIN {
            z.sort_by(f64::total_cmp);
            let med = z[z.len() / 2];
            let mut dev: Vec<f64> = z.iter().map(|v| (v - med).abs()).collect();
            dev.sort_by(f64::total_cmp);
            let sd = 1.4826 * dev[dev.len() / 2];
            hub_null = Some((med, sd, z.len()));
            mu = mu.max(med);
            sigma = sigma.max(sd);
        }
    }
    let threshold = |c: usize| -> f64 {
        let m = (pairs_searched.max(1) as f64) * (c.max(1) as f64);
        mu + sigma * upper_tail_inv(opts.alpha / m)
    };
    let thresholds: Vec<f64> = (0..=16).map(threshold).collect();

    // Screen every pair of every block (tiles of rows, for the cache), then score survivors.
    const TILE: usize = 32;
    let mut survivors: Vec<(usize, usize)> = Vec::new();
    for members in blocks.values() {
        let tiles: Vec<usize> = (0..members.len()).step_by(TILE).collect();
        let found: Vec<Vec<(usize, usize)>> = tiles
            .par_iter()
            .map(|&t0| {
                let mut out = Vec::new();
                let t1 = (t0 + TILE).min(members.len());
                for j in t0 + 1..members.len() {
                    for i in t0..t1.min(j) {
                        let (a, b) = (members[i], members[j]);
                        if let Some(s) = score(&prepared[a], &prepared[b], true) {
                            if s.best > SCREEN_Z {
                                out.push((a.min(b), a.max(b)));
                            }
                        }
                    }
                }
                out
            })
            .collect();
        survivors.extend(found.into_iter().flatten());
    }
    survivors.sort_unstable();
    let pairs_scored = survivors.len() as u64;
    let candidates: Vec<Candidate> = survivors
        .par_iter()
        .filter_map(|&(a, b)| {
            let s = score(&prepared[a], &prepared[b], false)?;
            let t = thresholds
                .get(s.components)
                .copied()
                .unwrap_or_else(|| threshold(s.components));
            (s.best > t).then(|| Candidate {
                a,
                b,
                z: (s.best - mu) / sigma,
                component: component_names
                    .get(&s.component)
                    .cloned()
                    .unwrap_or_default(),
                tensors: s.tensors,
                mean_pearson: s.mean_pearson,
            })
        })
        .collect();
    Ok(Search {
        candidates,
        stats: SearchStats {
            models: sketches.len(),
            blocks: blocks.len(),
            pairs_searched,
            pairs_scored,
            null_mean: mu,
            null_sd: sigma,
            hub_null,
            threshold: thresholds[1],
            options: *opts,
        },
    })
}

/// Every sketch prepared for scoring, with tensor keys and component names interned over
/// all of them (the component interner is returned for naming components in results).
fn prepare_all(sketches: &[Sketch]) -> (Vec<Prepared>, Interner) {
    let mut keys = Interner::default();
    let mut components = Interner::default();
    let prepared = sketches
        .iter()
        .map(|s| prepare(s, &mut keys, &mut components))
        .collect();
    (prepared, components)
}

/// Every pair's component scores Z_c (unstandardised) between models of one block, for
/// measuring the null on models known to be unrelated (`weightkin-simhub null`).
pub fn pair_scores(sketches: &[Sketch], pairs: &[(usize, usize)]) -> Vec<Vec<f64>> {
    let (prepared, _) = prepare_all(sketches);
    pairs
        .par_iter()
        .map(|&(a, b)| {
            // Pairs of other blocks, or out of range, have no scores.
            match (
                sketches.get(a),
                sketches.get(b),
                prepared.get(a),
                prepared.get(b),
            ) {
                (Some(sa), Some(sb), Some(pa), Some(pb)) if sa.arch_key == sb.arch_key => {
                    score(pa, pb, false).map_or_else(Vec::new, |s| s.all)
                }
                _ => Vec::new(),
            }
        })
        .collect()
}

/// The standard normal's upper quantile: the z with P(Z > z) = p (what a threshold at
/// family-wise rate p is on the N(0, 1) scale).
pub fn threshold_z(p: f64) -> f64 {
    upper_tail_inv(p)
}
