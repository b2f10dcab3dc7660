//! Unit alignment (issue 15): recover, per layer, the permutation of B's MLP hidden units
//! and attention heads against A's, present B's tensors in A's unit order, and give the
//! aligned evidence a null computed **under the same search**.
//!
//! # What is aligned
//!
//! An MLP's hidden units can be listed in any order without changing what the layer
//! computes: permuting the rows of its input projections (`mlp.up`, `mlp.gate`, and their
//! biases) and the columns of its output projection (`mlp.down`) by one permutation is a
//! function-preserving change, and it sends every element-wise statistic to zero. Members
//! are found by their canonical role ([`crate::correspond::names::normalise_all`]), so
//! BERT's `intermediate.dense`/`output.dense`, Llama's `gate_proj`/`up_proj`/`down_proj`,
//! GPT-2's `c_fc`/`c_proj` and llama.cpp's `ffn_*` are all covered; A's and B's tensor of
//! a member are the ones the plan pairs by name (after automatic pairing).
//!
//! # How
//!
//! Zhu et al. ("Independence tests for language models", ICML'25, `salzhu/model-tracing`)
//! match units by the linear assignment of their `up`/`gate` rows. Here every member
//! contributes: a unit's feature vector is its row of each input projection, its column of
//! the output projection and its bias values, each tensor standardised by its own mean and
//! s.d. (so no tensor dominates by scale), at most [`FEATURES_MAX`] evenly spaced
//! coordinates in all; the similarity of unit `v` of B and unit `u` of A is the cosine of
//! their feature vectors, and [`weightkin_core::lap::assign_max`] finds the matching that
//! maximises its sum. The problem is rectangular where B has fewer units than A (a
//! width-pruned FFN, Minitron-style): every unit of B is matched to a distinct unit of A,
//! and A's tensors are cut to the matched units (in A's order), B's presented in that order.
//! B wider than A is not aligned (listed with the reason). Units whose feature vector
//! repeats another's bit for bit (dead or duplicated units, a constant tensor) are left out
//! of the assignment — any order of them is optimal, and many equal rows are the solver's
//! cubic worst case — and take the leftover units in index order.
//!
//! # The null under the same search
//!
//! An assignment maximises similarity, so an aligned pair of unrelated tensors correlates
//! more than an unaligned one: the null must be computed under the same search. This
//! module's null is the **aligned cross-layer null**: A's layer `i` is aligned with B's
//! layer `j ≠ i` (offsets 1 and ⌊L/2⌋, as the ordinary cross-layer null) by exactly the
//! same procedure, and every member's Pearson is measured after that alignment. Layers of
//! one architecture share everything but the ancestry of the particular layer, so this is
//! what "aligned but unrelated" looks like for this pair of models; it replaces the class's
//! cross-layer or reference null ([`crate::report::NullKind::AlignedCrossLayer`]). Why not hold the
//! evidence out of the matching (learn on `up`, measure on `down`)? Within a trained model
//! a unit's input and output weights are not independent (their norms and signs go
//! together), so a permutation learned on one carries similarity into the other for
//! unrelated models too; and a BERT-style MLP has only one tensor on each side. The
//! cross-layer null makes no such assumption: whatever the search adds, it adds there too.
//! A stack with fewer than [`crate::calibrate::CROSS_LAYER_MIN`] layers has no such null
//! and is not aligned (listed).
//!
//! The same statistic decides whether an alignment was *found*: the mean cosine of the
//! matched units against the same mean in the cross-layer alignments; a layer whose matched
//! similarity stands [`FOUND_Z`] s.d. above them is reported as recovered, and a recovered
//! permutation that moves units is stated as a finding.
//!
//! # Attention heads
//!
//! Heads are units too, aligned the same way with their own null: a unit is a **KV group** —
//! a key/value head's rows of `attn.k` and `attn.v` with the rows of `attn.q` and the columns
//! of `attn.o` of the query heads that share it (blocks of `ratio · head_dim`), so
//! grouped-query attention keeps every query head with its KV head. Within each matched
//! group, B's query heads are then matched to A's by their own assignment (on their rows of `attn.q` and columns of `attn.o`).
//! Head counts come from [`Heads`] (GGUF metadata, `config.json`, or the recipe); heads are
//! aligned between equal counts only.
//!
//! # Limits
//!
//! The residual stream is aligned before this stage ([`super::residual`]). Alignments are
//! solved one at a time,
//! holding the similarity matrix (`f_b × f_a` f32, at most [`SCORE_CELLS_MAX`] cells: 4096²
//! fits), the two sides' feature vectors, and one member tensor of each model at a time (at
//! most [`MATERIALISE_MAX`] elements each; a layer past that is listed, not aligned). A layer
//! with more units than the similarity matrix holds (a 14 336-wide FFN) is matched greedily
//! on each unit's [`WIDE_CANDIDATES`] best candidates, computed block by block
//! (`greedy`), for the evidence and its null alike.
//! Layers pair by name (layer `i` of A with layer `i` of B), not along a layer alignment.
//!
//! # Determinism
//!
//! Similarities are one matrix product on one thread (a fixed order of operations), the
//! solver breaks ties by index,
//! and layers run in parallel but are collected in layer order: the same inputs give the
//! same alignment and the same report for any thread count.

use std::collections::BTreeMap;
use std::sync::Arc;

use weightkin_core::{lap, WeightSource};

use crate::correspond::names;
use crate::correspond::views::{product, GatherAxis, Loc, Matrix, View, Views, MATERIALISE_MAX};
use crate::plan::{layer_and_class, stack_of, Model};
use crate::recipe::CompareSpec;
use crate::report::{round, UnitLayer, UnitStack, UnitsReport};
use crate::Error;

/// Most feature coordinates per unit (summed over the members): 2048. The similarity costs
/// `f_a · f_b · FEATURES_MAX` multiply-adds per alignment; the coordinates are evenly
/// spaced over each member's other axis, so a wide model is matched on a sample of its
/// input dimensions, which keeps a permuted copy's cosine near 1 and unrelated units near 0.
pub const FEATURES_MAX: usize = 2048;

/// Most cells of one similarity matrix: 2²⁴ (64 MiB of f32, a 4096 × 4096 layer), within
/// the tool's 300 MB RSS budget with the feature vectors beside it.
pub const SCORE_CELLS_MAX: usize = 1 << 24;

/// Matched-similarity z above which an alignment counts as recovered.
pub const FOUND_Z: f64 = 5.0;

/// Floor of the matched-similarity null's s.d.: cosines are reported to 4 digits.
const SIMILARITY_SD_FLOOR: f64 = 1e-3;

/// Along which axis of a tensor the hidden units lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// Rows: an input projection `[f, d]` or a bias `[f]`.
    Rows,
    /// Columns: an output projection `[d, f]`.
    Cols,
}

/// One tensor on a layer's unit axis, in both models.
#[derive(Debug, Clone)]
struct Member {
    /// Its (A's) name.
    name: String,
    /// Its class.
    class: String,
    a: usize,
    b: usize,
    axis: Axis,
    /// Elements per unit row (or column): the other axis; 1 for a bias.
    other: usize,
    /// Consecutive rows (or columns) per unit: 1 for an MLP unit, the rows of a KV group's
    /// heads for attention (`ratio · head_dim` for queries and the output projection,
    /// `head_dim` for keys and values).
    block: usize,
    /// Rows (or columns) per sub-unit that may be reordered within a unit: a query head
    /// (`head_dim`) of `attn.q` and `attn.o` when several query heads share a KV head; else
    /// `block` (no sub-units).
    head: usize,
}

impl Member {
    /// Sub-units per unit (query heads per KV group for `attn.q`/`attn.o`, else 1).
    fn subs(&self) -> usize {
        self.block / self.head.max(1)
    }

    /// The rows (or columns) of A's side in the aligned order: each matched unit's block.
    fn index_a(&self, m: &Matched) -> Vec<usize> {
        expand(&m.kept_a, self.block)
    }

    /// The rows (or columns) of B's side in the aligned order: each matched unit's block,
    /// its sub-units in the order matched to A's.
    fn index_b(&self, m: &Matched) -> Vec<usize> {
        let s = self.subs();
        if s <= 1 || m.sub.is_empty() {
            return expand(&m.b_order, self.block);
        }
        let mut out = Vec::with_capacity(m.b_order.len() * self.block);
        for (k, &v) in m.b_order.iter().enumerate() {
            for t in 0..s {
                let h = m.sub.get(k).and_then(|o| o.get(t)).copied().unwrap_or(t);
                let start = v * self.block + h * self.head;
                out.extend(start..start + self.head);
            }
        }
        out
    }

    /// Elements of one unit.
    fn per_unit(&self) -> usize {
        self.block * self.other
    }

    /// Index in the tensor (of `f` units) of element `e` of unit `u`.
    fn at(&self, f: usize, u: usize, e: usize) -> usize {
        match self.axis {
            Axis::Rows => u * self.block * self.other + e,
            Axis::Cols => {
                let (r, bi) = (e / self.block, e % self.block);
                r * f * self.block + u * self.block + bi
            }
        }
    }
}

/// One layer's MLP.
#[derive(Debug, Clone)]
struct Group {
    layer: u32,
    members: Vec<Member>,
    /// A's units.
    fa: usize,
    /// B's units.
    fb: usize,
}

/// How B's units of one layer map onto A's.
#[derive(Debug, Clone)]
struct Matched {
    /// A's matched units, ascending.
    kept_a: Vec<usize>,
    /// `b_order[k]`: B's unit matched to `kept_a[k]`.
    b_order: Vec<usize>,
    /// Mean cosine of the matched units.
    similarity: f64,
    /// `sub[k]`: B's sub-units (query heads) of `b_order[k]` in the order matched to
    /// `kept_a[k]`'s; empty when the units have no sub-units.
    sub: Vec<Vec<usize>>,
    /// Matched greedily (a layer too wide for the assignment).
    greedy: bool,
}

/// What unit alignment found for a comparison: the permuted (and cut) presentations and
/// the null of each aligned class.
pub struct Units {
    /// The report section.
    pub report: UnitsReport,
    /// Aligned class → Pearson values of the aligned cross-layer null.
    pub nulls: BTreeMap<String, Vec<f64>>,
    gather_a: BTreeMap<usize, Gather>,
    gather_b: BTreeMap<usize, Gather>,
}

impl Units {
    /// A presented with its cut tensors (width-pruned B), B in A's unit order.
    pub fn present<'a>(
        &self,
        model_a: &str,
        a: &'a dyn WeightSource,
        model_b: &str,
        b: &'a dyn WeightSource,
    ) -> Result<(Views<'a>, Views<'a>), Error> {
        Ok((
            gathered(model_a, a, &self.gather_a)?,
            gathered(model_b, b, &self.gather_b)?,
        ))
    }
}

/// Finds every layered MLP of `a` with its counterpart in `b`, aligns B's units to A's and
/// computes the aligned cross-layer null.
pub fn align(cmp: &CompareSpec, a: Model<'_>, b: Model<'_>, heads: Heads) -> Result<Units, Error> {
    let (stacks, mut skipped) = groups(cmp, a, b, heads);
    let mut report = UnitsReport::default();
    let mut nulls: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut gather_a, mut gather_b) = (BTreeMap::new(), BTreeMap::new());
    for ((stack, kind), layers) in stacks {
        if layers.len() < crate::calibrate::CROSS_LAYER_MIN {
            skipped.push(format!(
                "`{stack}`: {} layers with an MLP on both sides; the null under the same \
                 search needs {} (A's layer i aligned with B's layer j ≠ i)",
                layers.len(),
                crate::calibrate::CROSS_LAYER_MIN
            ));
            continue;
        }
        let too_big = layers.iter().find(|g| {
            g.members.iter().any(|m| {
                a.source.tensors()[m.a].numel > MATERIALISE_MAX
                    || b.source.tensors()[m.b].numel > MATERIALISE_MAX
            })
        });
        if let Some(g) = too_big {
            skipped.push(format!(
                "`{stack}`: layer {} has a tensor of more than {} elements; unit alignment \
                 reads each member tensor whole",
                g.layer, MATERIALISE_MAX
            ));
            continue;
        }
        let l = layers.len();
        // The evidence alignment (i, i) and the null's (i, i + s), solved one at a time
        // (each parallel inside), in this order.
        let mut offsets = vec![1, l / 2];
        offsets.dedup();
        let mut jobs: Vec<(usize, usize)> = (0..l).map(|i| (i, i)).collect();
        for i in 0..l {
            for &s in &offsets {
                jobs.push((i, (i + s) % l));
            }
        }
        // Solved B layer by B layer (each B layer's tensors are read, and where the residual
        // alignment rotates them computed, close together), then put back in job order.
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&k| (jobs[k].1, jobs[k].0 != jobs[k].1, jobs[k].0));
        let mut solved_in_order = order
            .iter()
            .map(|&k| {
                let (i, j) = jobs[k];
                let (x, y) = (&layers[i], &layers[j]);
                let usable = x.fa == y.fa
                    && x.fb == y.fb
                    && x.members.len() == y.members.len()
                    && x.members
                        .iter()
                        .zip(&y.members)
                        .all(|(p, q)| p.class == q.class);
                if i != j && !usable {
                    return Ok((k, None));
                }
                let (ga, gb) = (&layers[i], &layers[j]);
                let m = match_units(
                    cmp,
                    ga,
                    |k| read(cmp, a, ga.members[k].a),
                    |k| read(cmp, b, gb.members[k].b),
                )?;
                let mut after = Vec::new();
                let mut before = Vec::new();
                for (mem, mem_b) in ga.members.iter().zip(&gb.members) {
                    let (va, vb) = (read(cmp, a, mem.a)?, read(cmp, b, mem_b.b)?);
                    after.push(aligned_pearson(mem, &m, &va, &vb));
                    if i == j && ga.fa == ga.fb {
                        before.extend(pearson(&va, &vb));
                    }
                }
                Ok((k, Some((m, after, before))))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        solved_in_order.sort_by_key(|(k, _)| *k);
        let solved: Vec<_> = solved_in_order.into_iter().map(|(_, s)| s).collect();
        let mut null_similarity = Vec::new();
        for (&(i, _), got) in jobs.iter().zip(&solved).skip(l) {
            let Some((m, after, _)) = got else { continue };
            null_similarity.push(m.similarity);
            for (mem, r) in layers[i].members.iter().zip(after) {
                if let Some(r) = r {
                    nulls.entry(mem.class.clone()).or_default().push(*r);
                }
            }
        }
        let (null_mean, null_sd) = mean_sd(&null_similarity);
        let null_sd = null_sd.max(SIMILARITY_SD_FLOOR);
        let mut out_layers = Vec::new();
        for (i, g) in layers.iter().enumerate() {
            let Some((m, after, before)) = &solved[i] else {
                return Err(Error::Internal("a layer's own alignment was not solved"));
            };
            let after: Vec<f64> = after.iter().flatten().copied().collect();
            // A unit moved when B's is at another index or lists its sub-units (query
            // heads) in another order.
            let moved = (0..m.kept_a.len())
                .filter(|&k| {
                    m.kept_a[k] != m.b_order[k]
                        || m.sub
                            .get(k)
                            .is_some_and(|o| o.iter().enumerate().any(|(t, &h)| t != h))
                })
                .count();
            let z = (m.similarity - null_mean) / null_sd;
            out_layers.push(UnitLayer {
                layer: g.layer,
                units_a: g.fa,
                units_b: g.fb,
                matched: m.b_order.len(),
                moved,
                similarity: round(m.similarity),
                similarity_z: round(z),
                recovered: z >= FOUND_Z,
                pearson_before: crate::report::rounded_mean(before),
                pearson_after: crate::report::rounded_mean(&after),
                matching: m.greedy.then(|| {
                    format!(
                        "greedy over each unit's {WIDE_CANDIDATES} most similar (too wide for \
                         the assignment)"
                    )
                }),
                tensors: g.members.iter().map(|m| m.name.clone()).collect(),
            });
            for mem in &g.members {
                let (rows_a, cols_a) = dims(mem, g.fa);
                let (rows_b, cols_b) = dims(mem, g.fb);
                if g.fb < g.fa {
                    gather_a.insert(
                        mem.a,
                        Gather {
                            rows: rows_a,
                            cols: cols_a,
                            axis: mem.axis,
                            index: Arc::new(mem.index_a(m)),
                        },
                    );
                }
                gather_b.insert(
                    mem.b,
                    Gather {
                        rows: rows_b,
                        cols: cols_b,
                        axis: mem.axis,
                        index: Arc::new(mem.index_b(m)),
                    },
                );
            }
        }
        report.stacks.push(UnitStack {
            stack,
            what: kind.what().to_owned(),
            null_similarity_mean: round(null_mean),
            null_similarity_sd: round(null_sd),
            null_alignments: null_similarity.len(),
            layers: out_layers,
        });
    }
    report.skipped = skipped;
    report.finding = finding(&report);
    Ok(Units {
        report,
        nulls,
        gather_a,
        gather_b,
    })
}

/// The sentence a recovered permutation or cut earns in the verdict, if any.
fn finding(report: &UnitsReport) -> Option<String> {
    let mut parts = Vec::new();
    for s in &report.stacks {
        let recovered: Vec<&UnitLayer> = s.layers.iter().filter(|l| l.recovered).collect();
        if recovered.is_empty() {
            continue;
        }
        let permuted = recovered.iter().filter(|l| l.moved > 0).count();
        let pruned: Vec<&&UnitLayer> = recovered.iter().filter(|l| l.units_b < l.units_a).collect();
        let heads = s.what == "attention heads";
        let (what, units) = if heads {
            ("attention", "KV head groups")
        } else {
            ("MLP", "hidden units")
        };
        if let Some(p) = pruned.first() {
            parts.push(format!(
                "B's {what} in `{}` is width-pruned: {} of {} layers keep {} of A's {} \
                 {units}, matched by assignment",
                s.stack,
                pruned.len(),
                s.layers.len(),
                p.units_b,
                p.units_a
            ));
        } else if permuted > 0 {
            parts.push(format!(
                "B's {what} {units} in `{}` are permuted relative to A's in {} of {} layers \
                 (a function-preserving reordering, recovered by assignment)",
                s.stack,
                permuted,
                s.layers.len()
            ));
        }
    }
    (!parts.is_empty()).then(|| format!("{}.", parts.join("; ")))
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Rows (or columns) of `units`, each `block` long.
fn expand(units: &[usize], block: usize) -> Vec<usize> {
    units
        .iter()
        .flat_map(|&u| u * block..(u + 1) * block)
        .collect()
}

/// Rows and columns of a member's tensor with `f` units.
fn dims(m: &Member, f: usize) -> (usize, usize) {
    match m.axis {
        Axis::Rows => (f * m.block, m.other),
        Axis::Cols => (m.other, f * m.block),
    }
}

/// Attention head counts of both models (query heads, KV heads), where known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heads {
    /// A's `(heads, kv_heads)`.
    pub a: Option<(usize, usize)>,
    /// B's.
    pub b: Option<(usize, usize)>,
}

/// What kind of units a group aligns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// MLP hidden units.
    Mlp,
    /// Attention KV groups (each with its query heads).
    Heads,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Mlp => "mlp units",
            Kind::Heads => "attention heads",
        }
    }
}

/// The groups of each (stack, kind), in layer order.
type Stacks = BTreeMap<(String, Kind), Vec<Group>>;

/// The MLP and attention groups by stack, and what could not be aligned.
fn groups(cmp: &CompareSpec, a: Model<'_>, b: Model<'_>, heads: Heads) -> (Stacks, Vec<String>) {
    let names: Vec<&String> = a.names.keys().filter(|n| cmp.selects(n)).collect();
    let read = names::normalise_all(names.iter().map(|n| n.as_str()));
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    let mut by_layer: BTreeMap<(String, Kind, u32), Vec<Member>> = BTreeMap::new();
    let mut skipped = Vec::new();
    // Heads align only where both models' counts are known and equal.
    let head_counts = match (heads.a, heads.b) {
        (Some(x), Some(y)) if x == y && x.1 > 0 && x.0 % x.1 == 0 => Some(x),
        (Some(x), Some(y)) => {
            skipped.push(format!(
                "attention heads: A has {} query and {} KV heads, B {} and {}; heads are \
                 aligned between equal counts only",
                x.0, x.1, y.0, y.1
            ));
            None
        }
        _ => None,
    };
    let mut heads_unknown = false;
    for (name, n) in names.iter().zip(&read) {
        let c = &n.canonical;
        let Some((role, leaf)) = c.rsplit_once('.') else {
            continue;
        };
        let role = role.rsplit('.').take(2).collect::<Vec<_>>();
        let role = match role.as_slice() {
            [r, p] => format!("{p}.{r}"),
            _ => continue,
        };
        let bias = leaf == "bias";
        if leaf != "weight" && !bias {
            continue;
        }
        // (kind, unit axis, block rows per unit as a function of the head counts).
        let (kind, axis_rows) = match role.as_str() {
            "mlp.up" | "mlp.gate" => (Kind::Mlp, true),
            "mlp.down" if !bias => (Kind::Mlp, false),
            "attn.q" | "attn.k" | "attn.v" => (Kind::Heads, true),
            "attn.o" if !bias => (Kind::Heads, false),
            _ => continue,
        };
        let (Some(layer), class) = layer_and_class(name) else {
            continue;
        };
        let (Some(&ia), Some(&ib)) = (a.names.get(*name), b.names.get(*name)) else {
            continue;
        };
        let (sa, sb) = (&ta[ia].shape, &tb[ib].shape);
        let fits = match (bias, axis_rows) {
            (true, _) => sa.len() == 1 && sb.len() == 1,
            (false, true) => sa.len() == 2 && sb.len() == 2 && sa[1] == sb[1],
            (false, false) => sa.len() == 2 && sb.len() == 2 && sa[0] == sb[0],
        };
        if !fits || !ta[ia].dtype.is_float() || !tb[ib].dtype.is_float() {
            skipped.push(format!(
                "`{name}`: shapes {sa:?} and {sb:?} do not share the non-unit axis"
            ));
            continue;
        }
        let (axis, other) = match (bias, axis_rows) {
            (true, _) => (Axis::Rows, 1),
            (false, true) => (Axis::Rows, sa[1]),
            (false, false) => (Axis::Cols, sa[0]),
        };
        let unit_len = if axis_rows { sa[0] } else { sa[1] };
        let (block, head) = match kind {
            Kind::Mlp => (1, 1),
            Kind::Heads => {
                let Some((h, kv)) = head_counts else {
                    heads_unknown |= heads.a.is_none() || heads.b.is_none();
                    continue;
                };
                let q_rows = match role.as_str() {
                    "attn.q" | "attn.o" => unit_len,
                    // Keys and values: kv heads of head_dim rows.
                    _ => unit_len * h / kv,
                };
                if q_rows % h != 0 || unit_len % kv != 0 {
                    skipped.push(format!(
                        "`{name}`: {unit_len} rows do not divide into {h} query / {kv} KV heads"
                    ));
                    continue;
                }
                let block = unit_len / kv;
                let head = match role.as_str() {
                    // A query head's rows (or output columns): `ratio` of them per KV group.
                    "attn.q" | "attn.o" => block / (h / kv),
                    _ => block,
                };
                (block, head)
            }
        };
        by_layer
            .entry((stack_of(&class).to_owned(), kind, layer))
            .or_default()
            .push(Member {
                name: (*name).clone(),
                class,
                a: ia,
                b: ib,
                axis,
                other,
                block,
                head,
            });
    }
    if heads_unknown {
        skipped.push(
            "attention heads: the head counts of A or B are unknown (no GGUF metadata or \
             `config.json` beside the weights)"
                .to_owned(),
        );
    }
    let mut stacks: Stacks = BTreeMap::new();
    for ((stack, kind, layer), members) in by_layer {
        let units = |m: &Member, shape: &[usize]| match m.axis {
            Axis::Rows => shape[0] / m.block.max(1),
            Axis::Cols => shape[1] / m.block.max(1),
        };
        let Some(first) = members.first() else {
            continue;
        };
        let (fa, fb) = (
            units(first, &ta[first.a].shape),
            units(first, &tb[first.b].shape),
        );
        let agree = members
            .iter()
            .all(|m| units(m, &ta[m.a].shape) == fa && units(m, &tb[m.b].shape) == fb);
        if !agree {
            skipped.push(format!(
                "`{stack}` layer {layer}: its {} tensors disagree on the number of units",
                kind.what()
            ));
            continue;
        }
        if fa < 2 || !members.iter().any(|m| m.other > 1) {
            continue;
        }
        stacks.entry((stack, kind)).or_default().push(Group {
            layer,
            members,
            fa,
            fb,
        });
    }
    (stacks, skipped)
}

/// Reads one tensor of a model as f32.
fn read(cmp: &CompareSpec, m: Model<'_>, index: usize) -> Result<Vec<f32>, Error> {
    let info = &m.source.tensors()[index];
    let mut v = vec![0f32; info.numel];
    m.source
        .read_f32(index, 0, &mut v)
        .map_err(|source| Error::Measure {
            compare: cmp.name.clone(),
            tensor: info.name.clone(),
            source: Box::new(source),
        })?;
    // Read whole and converted: its mapped pages can go (a memory hint only).
    if let Some(raw) = m.source.raw(index) {
        raw.file.release(raw.bytes);
    }
    Ok(v)
}

/// Unit-major feature vectors (unit length) of one side: `f × k` values.
/// Members are read one at a time (`read(k)` for member `k`).
fn features(
    members: &[Member],
    read: impl Fn(usize) -> Result<Vec<f32>, Error>,
    f: usize,
    per_member: &[usize],
) -> Result<Vec<f32>, Error> {
    let k: usize = per_member.iter().sum();
    let mut out = vec![0f32; f * k];
    let mut offset = 0;
    for (i, (m, &take)) in members.iter().zip(per_member).enumerate() {
        let v = read(i)?;
        let (mean, sd) = {
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, var.sqrt())
        };
        let scale = if sd > 0.0 { 1.0 / sd } else { 0.0 };
        for c in 0..take {
            // Evenly spaced coordinates of the unit's elements.
            let e = c * m.per_unit() / take;
            for u in 0..f {
                let x = v[m.at(f, u, e)];
                out[u * k + offset + c] = ((f64::from(x) - mean) * scale) as f32;
            }
        }
        offset += take;
    }
    for row in out.chunks_exact_mut(k.max(1)) {
        let norm = dot(row, row).sqrt();
        if norm > 0.0 {
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|x| *x *= inv);
        }
    }
    Ok(out)
}

/// Dot product summed in eight fixed lanes, then in lane order: a fixed order, so the same
/// value on every run, and vectorised by the compiler.
fn dot(x: &[f32], y: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let (cx, cy) = (x.chunks_exact(8), y.chunks_exact(8));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for l in 0..8 {
            lanes[l] += a[l] * b[l];
        }
    }
    let tail: f32 = rx.iter().zip(ry).map(|(a, b)| a * b).sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail)
}

/// Matches B's units (of `b`, layer j) to A's (of `a`, layer i) by assignment on the cosine
/// of their feature vectors.
fn match_units(
    cmp: &CompareSpec,
    g: &Group,
    read_a: impl Fn(usize) -> Result<Vec<f32>, Error>,
    read_b: impl Fn(usize) -> Result<Vec<f32>, Error>,
) -> Result<Matched, Error> {
    // Coordinates per member: biases give their one value; matrices share the rest.
    let matrices = g.members.iter().filter(|m| m.per_unit() > 1).count().max(1);
    let biases = g.members.len() - g.members.iter().filter(|m| m.per_unit() > 1).count();
    let budget = FEATURES_MAX.saturating_sub(biases) / matrices;
    let per_member: Vec<usize> = g
        .members
        .iter()
        .map(|m| m.per_unit().min(budget.max(1)))
        .collect();
    let fa_feat = features(&g.members, &read_a, g.fa, &per_member)?;
    let fb_feat = features(&g.members, &read_b, g.fb, &per_member)?;
    let k: usize = per_member.iter().sum();
    // Units whose feature vector repeats an earlier one's (dead units, duplicated units, a
    // constant tensor) are left out of the assignment: any order of them is optimal, and
    // many equal rows are the solver's cubic worst case (`weightkin_core::lap`). They take
    // the units left over, in index order, afterwards.
    let (live_a, live_b) = (distinct(&fa_feat, k, g.fa), distinct(&fb_feat, k, g.fb));
    // The similarities of the live units: one matrix product, on one thread (a fixed order
    // of operations, so the same bits for any thread count).
    let gather = |feat: &[f32], live: &[usize]| -> Vec<f32> {
        live.iter()
            .flat_map(|&u| feat[u * k..(u + 1) * k].iter().copied())
            .collect()
    };
    let fa_live_t = {
        let rows = gather(&fa_feat, &live_a);
        let mut t = vec![0f32; k * live_a.len()];
        for (u, row) in rows.chunks_exact(k.max(1)).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                t[c * live_a.len() + u] = x;
            }
        }
        Matrix {
            rows: k,
            cols: live_a.len(),
            data: t,
        }
    };
    let wide = live_a.len().saturating_mul(live_b.len()) > SCORE_CELLS_MAX;
    let assigned: Vec<(usize, usize)> = if live_a.is_empty() || live_b.is_empty() || k == 0 {
        Vec::new()
    } else if wide {
        greedy(&fb_feat, k, &live_b, &fa_live_t)
    } else {
        let fb_live = Matrix {
            rows: live_b.len(),
            cols: k,
            data: gather(&fb_feat, &live_b),
        };
        let score = product(&fb_live, &fa_live_t).data;
        let assignment =
            lap::assign_max(&score, live_b.len(), live_a.len()).map_err(|source| Error::Align {
                compare: cmp.name.clone(),
                tensor: g
                    .members
                    .first()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                source,
            })?;
        assignment.pairs().collect()
    };
    let mut taken_a = vec![false; g.fa];
    let mut taken_b = vec![false; g.fb];
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(g.fb);
    for &(r, c) in &assigned {
        let (v, u) = (live_b[r], live_a[c]);
        taken_a[u] = true;
        taken_b[v] = true;
        pairs.push((u, v));
    }
    let mut free_a = (0..g.fa).filter(|&u| !taken_a[u]);
    for v in (0..g.fb).filter(|&v| !taken_b[v]) {
        if let Some(u) = free_a.next() {
            pairs.push((u, v));
        }
    }
    pairs.sort_unstable();
    let similarity = if pairs.is_empty() {
        0.0
    } else {
        pairs
            .iter()
            .map(|&(u, v)| dot(&fb_feat[v * k..(v + 1) * k], &fa_feat[u * k..(u + 1) * k]))
            .sum::<f64>()
            / pairs.len() as f64
    };
    let sub = match_subs(cmp, g, &pairs, &read_a, &read_b)?;
    Ok(Matched {
        kept_a: pairs.iter().map(|p| p.0).collect(),
        b_order: pairs.iter().map(|p| p.1).collect(),
        similarity,
        sub,
        greedy: wide,
    })
}

/// Within each matched unit, B's sub-units (the query heads sharing a KV head) matched to
/// A's by assignment on the cosine of their rows of `attn.q` and columns of `attn.o`: a copy
/// may list a KV group's query heads in any order. Empty when no member has sub-units.
fn match_subs(
    cmp: &CompareSpec,
    g: &Group,
    pairs: &[(usize, usize)],
    read_a: &impl Fn(usize) -> Result<Vec<f32>, Error>,
    read_b: &impl Fn(usize) -> Result<Vec<f32>, Error>,
) -> Result<Vec<Vec<usize>>, Error> {
    let with_subs: Vec<usize> = (0..g.members.len())
        .filter(|&k| g.members[k].subs() > 1)
        .collect();
    let Some(&first) = with_subs.first() else {
        return Ok(Vec::new());
    };
    let s = g.members[first].subs();
    let mut score = vec![0f64; pairs.len() * s * s];
    for &k in &with_subs {
        let m = &g.members[k];
        if m.subs() != s {
            return Ok(Vec::new());
        }
        let (va, vb) = (read_a(k)?, read_b(k)?);
        let other = m.other.max(1);
        let (lines_a, lines_b) = (va.len() / other, vb.len() / other);
        // The values of sub-unit `h` of unit `u`: its `head` lines, each `other` long.
        let values = |v: &[f32], lines: usize, u: usize, h: usize| -> Vec<f32> {
            let start = u * m.block + h * m.head;
            let mut out = Vec::with_capacity(m.head * other);
            for line in start..start + m.head {
                for c in 0..other {
                    out.push(match m.axis {
                        Axis::Rows => v[line * other + c],
                        Axis::Cols => v[c * lines + line],
                    });
                }
            }
            out
        };
        for (p, &(u, v)) in pairs.iter().enumerate() {
            let xa: Vec<Vec<f32>> = (0..s).map(|h| values(&va, lines_a, u, h)).collect();
            let xb: Vec<Vec<f32>> = (0..s).map(|h| values(&vb, lines_b, v, h)).collect();
            for (hb, yb) in xb.iter().enumerate() {
                for (ha, ya) in xa.iter().enumerate() {
                    let den = (dot(yb, yb) * dot(ya, ya)).sqrt();
                    if den > 0.0 {
                        score[p * s * s + hb * s + ha] += dot(yb, ya) / den;
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for p in 0..pairs.len() {
        let cells = &score[p * s * s..(p + 1) * s * s];
        let a = lap::assign_max(cells, s, s).map_err(|source| Error::Align {
            compare: cmp.name.clone(),
            tensor: g.members[first].name.clone(),
            source,
        })?;
        // order[ha] = B's sub-unit matched to A's sub-unit ha.
        let mut order: Vec<usize> = (0..s).collect();
        for (hb, ha) in a.pairs() {
            order[ha] = hb;
        }
        out.push(order);
    }
    Ok(out)
}

/// Candidates kept per unit of B when a layer is too wide for the assignment.
pub const WIDE_CANDIDATES: usize = 8;

/// The matching of a layer too wide for the similarity matrix ([`SCORE_CELLS_MAX`]): the
/// similarities are computed in blocks of B's units, each keeping its [`WIDE_CANDIDATES`]
/// most similar units of A; the candidate pairs are then taken greedily, most similar first
/// (ties by index), each unit once. Memory: one block and the candidates. A permuted copy's
/// units are each other's best match by far, so greedy finds the same pairs as the
/// assignment; for unrelated units it is a different maximisation than the assignment, which
/// is why the null's cross-layer alignments use exactly this procedure too. Returns
/// (row of B's live units, column of A's), B's rows without a free candidate left out.
fn greedy(fb_feat: &[f32], k: usize, live_b: &[usize], fa_t: &Matrix) -> Vec<(usize, usize)> {
    let na = fa_t.cols;
    let block = (SCORE_CELLS_MAX / na.max(1)).clamp(1, live_b.len().max(1));
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (b0, rows) in live_b.chunks(block).enumerate() {
        let data: Vec<f32> = rows
            .iter()
            .flat_map(|&v| fb_feat[v * k..(v + 1) * k].iter().copied())
            .collect();
        let scores = product(
            &Matrix {
                rows: rows.len(),
                cols: k,
                data,
            },
            fa_t,
        );
        for (i, row) in scores.data.chunks_exact(na).enumerate() {
            let mut best: Vec<(f32, usize)> = Vec::with_capacity(WIDE_CANDIDATES + 1);
            for (u, &x) in row.iter().enumerate() {
                if best.len() < WIDE_CANDIDATES || x > best[best.len() - 1].0 {
                    let at = best.partition_point(|&(y, _)| y >= x);
                    best.insert(at, (x, u));
                    best.truncate(WIDE_CANDIDATES);
                }
            }
            let r = b0 * block + i;
            candidates.extend(best.into_iter().map(|(x, u)| (x, r, u)));
        }
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let (mut used_b, mut used_a) = (vec![false; live_b.len()], vec![false; na]);
    let mut out = Vec::new();
    for (_, r, c) in candidates {
        if !used_b[r] && !used_a[c] {
            used_b[r] = true;
            used_a[c] = true;
            out.push((r, c));
        }
    }
    out
}

/// The units (rows of `feat`, `k` values each) whose feature vector is not bit-for-bit
/// an earlier unit's, ascending.
fn distinct(feat: &[f32], k: usize, f: usize) -> Vec<usize> {
    let mut seen: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(f);
    for u in 0..f {
        let r = &feat[u * k..(u + 1) * k];
        // FNV-1a over the bits: a bucket key only, equality is checked in full.
        let h = r.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
            (h ^ u64::from(x.to_bits())).wrapping_mul(0x0100_0000_01b3)
        });
        let bucket = seen.entry(h).or_default();
        if bucket.iter().any(|&w| {
            feat[w * k..(w + 1) * k]
                .iter()
                .zip(r)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        }) {
            continue;
        }
        bucket.push(u);
        out.push(u);
    }
    out
}

/// Pearson of two equally long slices (None if either is constant).
fn pearson(x: &[f32], y: &[f32]) -> Option<f64> {
    if x.len() != y.len() || x.is_empty() {
        return None;
    }
    pearson_iter(x.iter().copied().zip(y.iter().copied()))
}

fn pearson_iter(it: impl Iterator<Item = (f32, f32)>) -> Option<f64> {
    let (mut n, mut sx, mut sy) = (0f64, 0f64, 0f64);
    let pairs: Vec<(f64, f64)> = it.map(|(a, b)| (f64::from(a), f64::from(b))).collect();
    for &(a, b) in &pairs {
        n += 1.0;
        sx += a;
        sy += b;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut xx, mut yy, mut xy) = (0f64, 0f64, 0f64);
    for &(a, b) in &pairs {
        let (da, db) = (a - mx, b - my);
        xx += da * da;
        yy += db * db;
        xy += da * db;
    }
    (xx > 0.0 && yy > 0.0).then(|| xy / (xx * yy).sqrt())
}

/// Pearson of a member after alignment: A cut to its matched units, B in their order.
fn aligned_pearson(m: &Member, matched: &Matched, a: &[f32], b: &[f32]) -> Option<f64> {
    let (ia, ib) = (m.index_a(matched), m.index_b(matched));
    let other = m.other.max(1);
    let (lines_a, lines_b) = (a.len() / other, b.len() / other);
    let it = ia.iter().zip(&ib).flat_map(|(&x, &y)| {
        (0..other).map(move |c| match m.axis {
            Axis::Rows => (a[x * other + c], b[y * other + c]),
            Axis::Cols => (a[c * lines_a + x], b[c * lines_b + y]),
        })
    });
    pearson_iter(it)
}

/// A tensor presented with its unit axis gathered: rows (or columns) `index` of the parent.
#[derive(Debug, Clone)]
struct Gather {
    /// Parent's rows.
    rows: usize,
    /// Parent's columns.
    cols: usize,
    axis: Axis,
    index: Arc<Vec<usize>>,
}

/// `base` with the tensors of `gathers` presented along another unit order (and, for A
/// against a width-pruned B, cut to the matched units), in place: names and indices are the
/// parent's ([`Views::replacing`], [`Loc::Gather`]).
fn gathered<'a>(
    model: &str,
    base: &'a dyn WeightSource,
    gathers: &BTreeMap<usize, Gather>,
) -> Result<Views<'a>, Error> {
    let mut views = BTreeMap::new();
    for (&i, g) in gathers {
        let Some(t) = base.tensors().get(i) else {
            return Err(Error::Internal("a gathered tensor is not in its model"));
        };
        let shape = match (g.axis, t.shape.len()) {
            (Axis::Rows, 1) => vec![g.index.len()],
            (Axis::Rows, _) => vec![g.index.len(), g.cols],
            (Axis::Cols, _) => vec![g.rows, g.index.len()],
        };
        let axis = match g.axis {
            Axis::Rows => GatherAxis::Rows,
            Axis::Cols => GatherAxis::Cols,
        };
        let loc = Loc::Gather {
            parent: i,
            rows: g.rows,
            cols: g.cols,
            axis,
            index: Arc::clone(&g.index),
            sign: None,
        };
        views.insert(
            i,
            View {
                name: t.name.clone(),
                shape,
                loc,
            },
        );
    }
    super::replaced(model, base, views)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gathered_tensors_read_their_parent_rows_and_columns_in_any_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let m: Vec<f32> = (0..12).map(|i| i as f32).collect(); // [3, 4]
        weightkin_core::testing::SafetensorsBuilder::new()
            .tensor_f32("cols", &[3, 4], &m)
            .tensor_f32("rows", &[4, 3], &m)
            .tensor_f32("same", &[2], &[1.0, 2.0])
            .write(&path)
            .unwrap();
        let registry = crate::registry::builtin().unwrap();
        let base = registry
            .open(&path, None, &weightkin_core::Limits::default())
            .unwrap();
        let (ic, ir) = (base.find("cols").unwrap(), base.find("rows").unwrap());
        let index = Arc::new(vec![3, 0, 2]);
        let gathers = BTreeMap::from([
            (
                ic,
                Gather {
                    rows: 3,
                    cols: 4,
                    axis: Axis::Cols,
                    index: index.clone(),
                },
            ),
            (
                ir,
                Gather {
                    rows: 4,
                    cols: 3,
                    axis: Axis::Rows,
                    index,
                },
            ),
        ]);
        let g = gathered("m", base.as_ref(), &gathers).unwrap();
        assert_eq!(g.tensors()[ic].shape, vec![3, 3]);
        assert_eq!(g.tensors()[ir].shape, vec![3, 3]);
        let whole = |i: usize| {
            let mut out = vec![0f32; g.tensors()[i].numel];
            g.read_f32(i, 0, &mut out).unwrap();
            out
        };
        // Columns 3, 0, 2 of [[0 1 2 3] [4 5 6 7] [8 9 10 11]].
        let cols = whole(ic);
        assert_eq!(cols, vec![3.0, 0.0, 2.0, 7.0, 4.0, 6.0, 11.0, 8.0, 10.0]);
        // Rows 3, 0, 2 of [[0 1 2] [3 4 5] [6 7 8] [9 10 11]].
        let rows = whole(ir);
        assert_eq!(rows, vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0]);
        // Any sub-range reads the same elements as the whole.
        for (i, all) in [(ic, &cols), (ir, &rows)] {
            for start in 0..9 {
                for len in 1..=9 - start {
                    let mut out = vec![0f32; len];
                    g.read_f32(i, start, &mut out).unwrap();
                    assert_eq!(&out[..], &all[start..start + len]);
                }
            }
        }
        assert_eq!(whole(g.find("same").unwrap()), vec![1.0, 2.0]);
        let mut past = vec![0f32; 2];
        assert!(g.read_f32(ic, 8, &mut past).is_err());
    }

    #[test]
    fn distinct_keeps_the_first_of_equal_units() {
        // Four units of two values each: 1 repeats 0, 3 repeats 2 (−0.0 differs from 0.0 in
        // its bits, so it counts as distinct: any tie rule works as long as it is fixed).
        let feat = [1.0, 2.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, -0.0, 0.0];
        assert_eq!(distinct(&feat, 2, 5), vec![0, 2, 4]);
        assert_eq!(distinct(&[], 0, 0), Vec::<usize>::new());
    }

    #[test]
    fn dot_is_exact_on_small_integers() {
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&x, &x), (0..19).map(|i| (i * i) as f64).sum::<f64>());
    }

    #[test]
    fn aligned_pearson_undoes_a_permutation_on_both_axes() {
        let f = 5;
        let rows: Vec<f32> = (0..f * 3).map(|i| ((i * 7) % 11) as f32).collect();
        let perm = [3usize, 0, 4, 1, 2];
        // B's unit v is A's unit perm[v].
        let mut b_rows = vec![0f32; f * 3];
        for v in 0..f {
            for c in 0..3 {
                b_rows[v * 3 + c] = rows[perm[v] * 3 + c];
            }
        }
        let mut pairs: Vec<(usize, usize)> = (0..f).map(|v| (perm[v], v)).collect();
        pairs.sort_unstable();
        let m = Matched {
            kept_a: pairs.iter().map(|p| p.0).collect(),
            b_order: pairs.iter().map(|p| p.1).collect(),
            similarity: 1.0,
            sub: Vec::new(),
            greedy: false,
        };
        let mem = Member {
            name: "x".into(),
            class: "x".into(),
            a: 0,
            b: 0,
            axis: Axis::Rows,
            other: 3,
            block: 1,
            head: 1,
        };
        let r = aligned_pearson(&mem, &m, &rows, &b_rows).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // Columns: A is [3, f], B's column v is A's column perm[v].
        let cols = rows.clone();
        let mut b_cols = vec![0f32; 3 * f];
        for r in 0..3 {
            for v in 0..f {
                b_cols[r * f + v] = cols[r * f + perm[v]];
            }
        }
        let mem = Member {
            axis: Axis::Cols,
            ..mem
        };
        let r = aligned_pearson(&mem, &m, &cols, &b_cols).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }
}
