//! Correspondence: which tensor of B corresponds to which of A when their names do not say
//! so — another export, another naming convention, fused projections, a component placed
//! inside a larger model (`pairing = "auto"`).
//!
//! Pairs are found in order of how little they rely on the tensors' values:
//!
//! 1. **equal names**;
//! 2. **normalised names** ([`names::normalise`]: one canonical vocabulary for the HF, GGUF,
//!    TorchScript and Megatron conventions), after fused tensors (`qkv`, `gate_up`) are split
//!    into their parts along their documented layout ([`names::fused`], [`Views`]);
//! 3. **structure**: layer stacks (a name segment followed by a layer number) are matched by
//!    how many of their per-layer shapes agree; within a matched pair of stacks, roles pair by
//!    equal role name, then by a shape no other role of the layer has; outside stacks, a
//!    tensor pairs with the only tensor of its (squeezed, or transposed) shape on the other
//!    side, or with the only one of its shape and leaf name (`weight_ih`);
//! 4. **content**, only where several candidates of one shape remain: Pearson on a fixed,
//!    deterministic subsample of each tensor ([`SUBSAMPLE`] elements in 16 evenly spaced runs),
//!    and the assignment that maximises its sum ([`weightkin_core::lap`]).
//!
//! **No evidence from the search.** A pair chosen by content is the best of `k` candidates;
//! unrelated models would give it a high value by chance. Its p-value is therefore the
//! Bonferroni bound of the maximum over the `k` candidates searched (`k·p`, valid under any
//! dependence between them), recorded as [`PairedBy::candidates`] and applied by the judge.
//! Pairs decided by names or structure search nothing (`k = 1`).

pub mod names;
pub mod views;

use std::collections::{BTreeMap, BTreeSet};

use weightkin_core::WeightSource;

use crate::judge;
use crate::plan::squeezed;
use crate::recipe::CompareSpec;
use crate::report::{
    CorrespondenceReport, Coverage, Mapping, PairMethod, PairedBy, Reason, Unpaired,
};
use crate::Error;
pub use views::{Loc, View, Views};

/// Elements of each tensor the content score reads at most.
pub const SUBSAMPLE: usize = 4096;

/// Runs the content subsample is read in.
const RUNS: usize = 16;

/// Layers of a matched stack the role score averages over at most (evenly spread).
const SCORE_LAYERS: usize = 8;

/// Suffix of a transposed view's name.
pub const TRANSPOSED: &str = "#T";

/// A model presented for pairing: its views (fused tensors split, some transposed) and the
/// names the plan pairs (view name → view index; replaced parents left out and listed).
pub struct Presented<'a> {
    /// The views.
    pub views: Views<'a>,
    /// Name → view index, without the tensors replaced by parts or transposes.
    pub names: BTreeMap<String, usize>,
    /// The replaced tensors and fused tensors that could not be split, with their reasons.
    pub notes: Vec<Unpaired>,
}

/// Presents `base` with the tensors `split` selects split into their parts and those
/// `transpose` selects transposed. A tensor `split` selects that is not fused, or whose layout
/// does not fit its shape, is kept whole and listed ([`Reason::FusedNotSplit`]).
pub fn present<'a>(
    model: &str,
    base: &'a dyn WeightSource,
    split: &dyn Fn(&str) -> bool,
    transpose: &dyn Fn(&str) -> bool,
) -> Result<Presented<'a>, Error> {
    let tensors = base.tensors();
    let mut views = Vec::new();
    let mut notes = Vec::new();
    let mut replaced = BTreeSet::new();
    for (i, t) in tensors.iter().enumerate() {
        if transpose(&t.name) {
            if let [r, c] = t.shape[..] {
                views.push(View {
                    name: format!("{}{TRANSPOSED}", t.name),
                    shape: vec![c, r],
                    loc: Loc::Transpose {
                        parent: i,
                        rows: r,
                        cols: c,
                    },
                });
                replaced.insert(t.name.clone());
                notes.push(Unpaired {
                    name: t.name.clone(),
                    reason: Reason::Transposed,
                    detail: format!(
                        "{:?} presented as {}{TRANSPOSED} {:?}",
                        t.shape,
                        t.name,
                        [c, r]
                    ),
                });
            }
            continue;
        }
        if !split(&t.name) {
            continue;
        }
        let weight_shape = t
            .name
            .strip_suffix(".bias")
            .and_then(|stem| base.find(&format!("{stem}.weight")))
            .map(|w| tensors[w].shape.as_slice());
        match names::fused(&t.name, &t.shape, weight_shape, names::Hints::default()) {
            Ok(Some(s)) => {
                let mut parts = Vec::new();
                for p in &s.parts {
                    // Interleaved layouts (several spans per part) are not presented as views.
                    let [span] = p.spans[..] else {
                        parts.clear();
                        break;
                    };
                    let (start, len) = (span.start, span.len);
                    let (shape, loc) = match (s.axis, &t.shape[..]) {
                        (0, [rows, rest @ ..]) if *rows > 0 => {
                            let mut shape = vec![len];
                            shape.extend_from_slice(rest);
                            (
                                shape,
                                Loc::Rows {
                                    parent: i,
                                    start,
                                    row_len: t.numel / rows,
                                },
                            )
                        }
                        (1, [rows, cols]) => (
                            vec![*rows, len],
                            Loc::Cols {
                                parent: i,
                                start,
                                len,
                                cols: *cols,
                            },
                        ),
                        _ => {
                            parts.clear();
                            break;
                        }
                    };
                    parts.push(View {
                        name: p.name.clone(),
                        shape,
                        loc,
                    });
                }
                if parts.is_empty() {
                    notes.push(Unpaired {
                        name: t.name.clone(),
                        reason: Reason::FusedNotSplit,
                        detail: format!(
                            "{:?}: its parts interleave (per head group) or the split axis does \
                             not fit the shape; not presented as parts",
                            t.shape
                        ),
                    });
                    continue;
                }
                let detail = parts
                    .iter()
                    .map(|p| format!("{} {:?}", p.name, p.shape))
                    .collect::<Vec<_>>()
                    .join(", ");
                notes.push(Unpaired {
                    name: t.name.clone(),
                    reason: Reason::SplitIntoParts,
                    detail,
                });
                replaced.insert(t.name.clone());
                views.extend(parts);
            }
            Ok(None) => notes.push(Unpaired {
                name: t.name.clone(),
                reason: Reason::FusedNotSplit,
                detail: format!("{:?}: not a fused tensor of a known layout", t.shape),
            }),
            Err(problem) => notes.push(Unpaired {
                name: t.name.clone(),
                reason: Reason::FusedNotSplit,
                detail: problem.to_string(),
            }),
        }
    }
    let views = Views::new(base, views).map_err(|source| Error::Views {
        model: model.to_owned(),
        source: Box::new(source),
    })?;
    let names = views
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| !replaced.contains(&t.name))
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    Ok(Presented {
        views,
        names,
        notes,
    })
}

/// A pair the correspondence found, by view names.
#[derive(Debug, Clone)]
pub struct Found {
    /// A's view name.
    pub a: String,
    /// B's view name.
    pub b: String,
    /// How.
    pub by: PairedBy,
}

/// What automatic pairing gives a comparison.
pub struct Auto<'a> {
    /// A, presented.
    pub a: Presented<'a>,
    /// B, presented.
    pub b: Presented<'a>,
    /// The pairs, sorted by A name.
    pub found: Vec<Found>,
    /// The correspondence for the report.
    pub report: CorrespondenceReport,
    /// A's tensors split into parts.
    pub split_a: BTreeSet<String>,
    /// B's tensors split into parts.
    pub split_b: BTreeSet<String>,
    /// B's tensors presented transposed.
    pub transposed: BTreeSet<String>,
}

/// One tensor (or part) the search considers.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    shape: Vec<usize>,
    sq: Vec<usize>,
    float: bool,
}

impl Item {
    fn leaf(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

/// A name's first numbered segment: (stack, layer, role), e.g. `_model.encoder.2.conv.weight`
/// → (`_model.encoder`, 2, `conv.weight`).
pub fn stack_layer_role(name: &str) -> Option<(String, u32, String)> {
    let segs: Vec<&str> = name.split('.').collect();
    let at = segs
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, s)| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
        .map(|(i, _)| i)?;
    if at + 1 >= segs.len() {
        return None;
    }
    let layer = segs[at].parse().ok()?;
    Some((segs[..at].join("."), layer, segs[at + 1..].join(".")))
}

/// Automatic pairing of A and B for `spec` (see the module documentation).
pub fn auto<'a>(
    spec: &CompareSpec,
    (model_a, a): (&str, &'a dyn WeightSource),
    (model_b, b): (&str, &'a dyn WeightSource),
) -> Result<Auto<'a>, Error> {
    let selected = |s: &dyn WeightSource| -> BTreeSet<String> {
        s.tensors()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| spec.selects(n))
            .collect()
    };
    let (sel_a, sel_b) = (selected(a), selected(b));
    let mut found: Vec<Found> = Vec::new();
    for name in sel_a.intersection(&sel_b) {
        found.push(Found {
            a: name.clone(),
            b: name.clone(),
            by: PairedBy {
                method: PairMethod::Name,
                rule: "equal names".to_owned(),
                score: None,
                candidates: 1,
            },
        });
    }
    let rem_a: BTreeSet<&String> = sel_a.difference(&sel_b).collect();
    let rem_b: BTreeSet<&String> = sel_b.difference(&sel_a).collect();
    let fusable = |s: &dyn WeightSource, rem: &BTreeSet<&String>| -> BTreeSet<String> {
        rem.iter()
            .filter(|n| {
                let Some(i) = s.find(n) else { return false };
                let t = &s.tensors()[i];
                let ws = n
                    .strip_suffix(".bias")
                    .and_then(|stem| s.find(&format!("{stem}.weight")))
                    .map(|w| s.tensors()[w].shape.as_slice());
                !matches!(
                    names::fused(n, &t.shape, ws, names::Hints::default()),
                    Ok(None)
                )
            })
            .map(|n| (*n).clone())
            .collect()
    };
    let (split_a, split_b) = (fusable(a, &rem_a), fusable(b, &rem_b));
    let pa = present(model_a, a, &|n| split_a.contains(n), &|_| false)?;
    let pb = present(model_b, b, &|n| split_b.contains(n), &|_| false)?;
    let items = |p: &Presented<'_>, rem: &BTreeSet<&String>| -> Vec<Item> {
        p.names
            .iter()
            .filter(|(n, _)| {
                let parent = n.split_once('#').map_or(n.as_str(), |(p, _)| p);
                rem.contains(&parent.to_owned())
            })
            .map(|(n, &i)| {
                let t = &p.views.tensors()[i];
                Item {
                    name: n.clone(),
                    shape: t.shape.clone(),
                    sq: squeezed(&t.shape),
                    float: t.dtype.is_float(),
                }
            })
            .collect()
    };
    let mut search = Search {
        models: (model_a, model_b),
        a: &pa.views,
        b: &pb.views,
        items_a: items(&pa, &rem_a),
        items_b: items(&pb, &rem_b),
        done_a: BTreeSet::new(),
        done_b: BTreeSet::new(),
        found: Vec::new(),
        transposed: BTreeSet::new(),
        cache: BTreeMap::new(),
    };
    search.normalised();
    search.stacks()?;
    search.leftovers(false, false)?;
    search.propagate();
    search.leftovers(false, true)?;
    search.leftovers(true, false)?;
    search.leftovers(true, true)?;
    let transposed = std::mem::take(&mut search.transposed);
    found.extend(search.found);
    let pb = if transposed.is_empty() {
        pb
    } else {
        present(model_b, b, &|n| split_b.contains(n), &|n| {
            transposed.contains(n)
        })?
    };
    found.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    let report = report(spec, &pa, &pb, &sel_a, &sel_b, &found);
    Ok(Auto {
        a: pa,
        b: pb,
        found,
        report,
        split_a,
        split_b,
        transposed,
    })
}

/// The search state over the items names did not pair.
struct Search<'v, 'a> {
    models: (&'v str, &'v str),
    a: &'v Views<'a>,
    b: &'v Views<'a>,
    items_a: Vec<Item>,
    items_b: Vec<Item>,
    done_a: BTreeSet<String>,
    done_b: BTreeSet<String>,
    found: Vec<Found>,
    /// B tensors to present transposed.
    transposed: BTreeSet<String>,
    /// Content subsamples by (side, name, transposed).
    cache: BTreeMap<(bool, String, bool), Option<Vec<f32>>>,
}

impl Search<'_, '_> {
    fn open_a(&self) -> impl Iterator<Item = &Item> {
        self.items_a
            .iter()
            .filter(|i| !self.done_a.contains(&i.name))
    }

    fn open_b(&self) -> impl Iterator<Item = &Item> {
        self.items_b
            .iter()
            .filter(|i| !self.done_b.contains(&i.name))
    }

    fn take(&mut self, a: &str, b: &str, by: PairedBy) {
        self.done_a.insert(a.to_owned());
        self.done_b.insert(b.to_owned());
        self.found.push(Found {
            a: a.to_owned(),
            b: b.to_owned(),
            by,
        });
    }

    /// Step 2: equal normalised names (unique on both sides).
    fn normalised(&mut self) {
        let canon = |items: &mut dyn Iterator<Item = &Item>| {
            let names: Vec<String> = items.map(|i| i.name.clone()).collect();
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            // Read together: one checkpoint's names settle its convention (Gemma's norms).
            let read = names::normalise_all(names.iter().map(String::as_str));
            for (n, c) in names.iter().zip(read) {
                m.entry(c.canonical).or_default().push(n.clone());
            }
            m
        };
        let ca = canon(&mut self.open_a());
        let cb = canon(&mut self.open_b());
        for (c, na) in &ca {
            if let (Some(nb), [x]) = (cb.get(c), &na[..]) {
                if let [y] = &nb[..] {
                    self.take(
                        x,
                        y,
                        PairedBy {
                            method: PairMethod::Normalised,
                            rule: format!("normalised name {c}"),
                            score: None,
                            candidates: 1,
                        },
                    );
                }
            }
        }
    }

    /// Step 3: layer stacks matched by their per-layer shapes, roles within them.
    fn stacks(&mut self) -> Result<(), Error> {
        type Stacks = BTreeMap<String, BTreeMap<u32, BTreeMap<String, Vec<usize>>>>;
        let group = |items: &mut dyn Iterator<Item = &Item>| -> Stacks {
            let mut out: Stacks = BTreeMap::new();
            for i in items.filter(|i| i.float) {
                if let Some((stack, layer, role)) = stack_layer_role(&i.name) {
                    out.entry(stack)
                        .or_default()
                        .entry(layer)
                        .or_default()
                        .insert(role, i.sq.clone());
                }
            }
            out
        };
        let sa = group(&mut self.open_a());
        let sb = group(&mut self.open_b());
        // Structural fit of every stack pair: per common layer, the multiset intersection of
        // shapes.
        let mut fits = Vec::new();
        for (na, la) in &sa {
            for (nb, lb) in &sb {
                let mut fit = 0usize;
                for (l, ra) in la {
                    let Some(rb) = lb.get(l) else { continue };
                    let mut shapes: Vec<&Vec<usize>> = rb.values().collect();
                    for s in ra.values() {
                        if let Some(k) = shapes.iter().position(|x| *x == s) {
                            shapes.swap_remove(k);
                            fit += 1;
                        }
                    }
                }
                let size = |l: &BTreeMap<u32, BTreeMap<String, Vec<usize>>>| {
                    l.values().map(BTreeMap::len).sum::<usize>()
                };
                if fit >= 2 && 2 * fit >= size(la).min(size(lb)) {
                    let depth = la.len().abs_diff(lb.len());
                    fits.push((std::cmp::Reverse(fit), depth, na.clone(), nb.clone()));
                }
            }
        }
        fits.sort();
        let (mut used_a, mut used_b) = (BTreeSet::new(), BTreeSet::new());
        for (_, _, na, nb) in fits {
            if used_a.contains(&na) || used_b.contains(&nb) {
                continue;
            }
            used_a.insert(na.clone());
            used_b.insert(nb.clone());
            self.match_stack(&na, &sa[&na], &nb, &sb[&nb])?;
        }
        Ok(())
    }

    /// Pairs the roles of one matched stack pair, layer by layer.
    fn match_stack(
        &mut self,
        na: &str,
        la: &BTreeMap<u32, BTreeMap<String, Vec<usize>>>,
        nb: &str,
        lb: &BTreeMap<u32, BTreeMap<String, Vec<usize>>>,
    ) -> Result<(), Error> {
        let layers: Vec<u32> = la.keys().filter(|l| lb.contains_key(l)).copied().collect();
        // A role's shape signature: its shape in every common layer (None where absent).
        let roles = |l: &BTreeMap<u32, BTreeMap<String, Vec<usize>>>| {
            let mut out: BTreeMap<String, Vec<Option<Vec<usize>>>> = BTreeMap::new();
            let names: BTreeSet<&String> = l.values().flat_map(|r| r.keys()).collect();
            for role in names {
                out.insert(
                    role.clone(),
                    layers.iter().map(|x| l[x].get(role).cloned()).collect(),
                );
            }
            out
        };
        let (ra, rb) = (roles(la), roles(lb));
        let name = |stack: &str, l: u32, role: &str| format!("{stack}.{l}.{role}");
        let mut role_pairs: Vec<(String, String, PairedBy)> = Vec::new();
        let (mut open_a, mut open_b): (BTreeSet<&String>, BTreeSet<&String>) =
            (ra.keys().collect(), rb.keys().collect());
        let compatible = |x: &str, y: &str| {
            leaves_compatible(x, y)
                && ra[x].iter().zip(&rb[y]).any(|(p, q)| p.is_some() && p == q)
                && ra[x]
                    .iter()
                    .zip(&rb[y])
                    .all(|(p, q)| p.is_none() || q.is_none() || p == q)
        };
        for r in ra.keys() {
            if rb.contains_key(r) && compatible(r, r) {
                role_pairs.push((
                    r.clone(),
                    r.clone(),
                    structure(format!("same role `{r}` in matched stacks")),
                ));
                open_a.remove(r);
                open_b.remove(r);
            }
        }
        // Roles whose full names normalise to the same role (`self_attn.q_proj` ≙
        // `attn.qkv#q`), judged in the first common layer.
        if let Some(&l0) = layers.first() {
            let role_of = |stack: &str, r: &str| {
                let c = names::normalise(&name(stack, l0, r)).canonical;
                let marker = format!(".{l0}.");
                c.split_once(&marker).map(|(_, role)| role.to_owned())
            };
            let mut by_role: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
            for r in &open_a {
                if let Some(c) = role_of(na, r) {
                    by_role.entry(c).or_default().0.push((*r).clone());
                }
            }
            for r in &open_b {
                if let Some(c) = role_of(nb, r) {
                    by_role.entry(c).or_default().1.push((*r).clone());
                }
            }
            for (c, (x, y)) in by_role {
                if let ([x], [y]) = (&x[..], &y[..]) {
                    if compatible(x, y) {
                        role_pairs.push((
                            x.clone(),
                            y.clone(),
                            PairedBy {
                                method: PairMethod::Normalised,
                                rule: format!("same normalised role `{c}` in matched stacks"),
                                score: None,
                                candidates: 1,
                            },
                        ));
                        open_a.remove(x);
                        open_b.remove(y);
                    }
                }
            }
        }
        // Remaining roles grouped by signature.
        type Signature = Vec<Option<Vec<usize>>>;
        type Group<'r> = (Vec<&'r String>, Vec<&'r String>);
        let mut groups: BTreeMap<(&Signature, u8), Group<'_>> = BTreeMap::new();
        // A weight role and a bias role never correspond: they are grouped apart.
        let kind =
            |r: &str| leaves_compatible(r, "weight") as u8 + 2 * leaves_compatible(r, "bias") as u8;
        for r in &open_a {
            groups.entry((&ra[*r], kind(r))).or_default().0.push(r);
        }
        for r in &open_b {
            if let Some(g) = groups.get_mut(&(&rb[*r], kind(r))) {
                g.1.push(r);
            }
        }
        for (_, (ga, gb)) in groups {
            if ga.is_empty() || gb.is_empty() {
                continue;
            }
            if let ([x], [y]) = (&ga[..], &gb[..]) {
                role_pairs.push((
                    (*x).clone(),
                    (*y).clone(),
                    structure(format!(
                        "only role of its shape in matched stacks `{na}` ≙ `{nb}`"
                    )),
                ));
                continue;
            }
            // Content: mean subsample Pearson over up to SCORE_LAYERS common layers.
            let step = layers.len().div_ceil(SCORE_LAYERS).max(1);
            let scored: Vec<u32> = layers.iter().step_by(step).copied().collect();
            let mut score = vec![0.0; ga.len() * gb.len()];
            for (i, x) in ga.iter().enumerate() {
                for (j, y) in gb.iter().enumerate() {
                    let mut sum = 0.0;
                    let mut n = 0.0;
                    for &l in &scored {
                        if let Some(r) = self.score(&name(na, l, x), &name(nb, l, y), false)? {
                            sum += r;
                            n += 1.0;
                        }
                    }
                    score[i * gb.len() + j] = if n > 0.0 { sum / n } else { f64::NEG_INFINITY };
                }
            }
            let k = ga.len().max(gb.len());
            for (i, j) in hungarian_max(&score, ga.len(), gb.len()) {
                let s = score[i * gb.len() + j];
                role_pairs.push((
                    ga[i].clone(),
                    gb[j].clone(),
                    PairedBy {
                        method: PairMethod::Content,
                        rule: format!(
                            "best of {k} roles of one shape in matched stacks `{na}` ≙ `{nb}`"
                        ),
                        score: s.is_finite().then(|| crate::report::round(s)),
                        candidates: k,
                    },
                ));
            }
        }
        for (x, y, by) in role_pairs {
            for &l in &layers {
                let (an, bn) = (name(na, l, &x), name(nb, l, &y));
                if la[&l].contains_key(&x) && lb[&l].contains_key(&y) {
                    self.take(&an, &bn, by.clone());
                }
            }
        }
        Ok(())
    }

    /// Step 3b/4: what is left, by (squeezed) shape; `transposed` pairs A's 2-D tensors with
    /// B's stored the other way round. Without `content`, only what structure decides (the
    /// only candidate of a shape, or of a shape and leaf name). With it, groups go largest
    /// tensors first, and after each group the module mappings found so far are propagated
    /// ([`Search::propagate`]), so a bias follows its weight instead of being searched.
    fn leftovers(&mut self, transposed: bool, content: bool) -> Result<(), Error> {
        let key = |i: &Item, t: bool| -> Option<Vec<usize>> {
            if !t {
                return Some(i.sq.clone());
            }
            match i.shape[..] {
                [r, c] if r != c => Some(vec![c, r]),
                _ => None,
            }
        };
        let mut shapes: Vec<Vec<usize>> = self
            .open_a()
            .filter(|i| i.float)
            .filter_map(|i| key(i, false))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        shapes.sort_by_key(|s| std::cmp::Reverse(s.iter().product::<usize>()));
        let how = if transposed { ", B transposed" } else { "" };
        for shape in shapes {
            let ga: Vec<Item> = self
                .open_a()
                .filter(|i| i.float && key(i, false).as_ref() == Some(&shape))
                .cloned()
                .collect();
            let gb: Vec<Item> = self
                .open_b()
                .filter(|i| i.float && key(i, transposed).as_ref() == Some(&shape))
                .cloned()
                .collect();
            if ga.is_empty() || gb.is_empty() {
                continue;
            }
            // Same leaf name first.
            let mut leaves: BTreeMap<&str, (Vec<&Item>, Vec<&Item>)> = BTreeMap::new();
            for i in &ga {
                leaves.entry(i.leaf()).or_default().0.push(i);
            }
            for i in &gb {
                if let Some(l) = leaves.get_mut(i.leaf()) {
                    l.1.push(i);
                }
            }
            let mut chosen = Vec::new();
            for (leaf, (la, lb)) in &leaves {
                if la.is_empty() || lb.is_empty() || (la.len() == ga.len() && lb.len() == gb.len())
                {
                    continue;
                }
                chosen.extend(self.assign(
                    la,
                    lb,
                    transposed,
                    content,
                    &format!("of shape {shape:?} and leaf `{leaf}`{how}"),
                )?);
            }
            for (x, y, by) in chosen {
                self.take_maybe_transposed(&x, &y, by, transposed);
            }
            let la: Vec<&Item> = ga
                .iter()
                .filter(|i| !self.done_a.contains(&i.name))
                .collect();
            let lb: Vec<&Item> = gb
                .iter()
                .filter(|i| !self.done_b.contains(&i.name))
                .collect();
            if !la.is_empty() && !lb.is_empty() {
                let chosen = self.assign(
                    &la,
                    &lb,
                    transposed,
                    content,
                    &format!("of shape {shape:?}{how}"),
                )?;
                for (x, y, by) in chosen {
                    self.take_maybe_transposed(&x, &y, by, transposed);
                }
            }
            if content {
                self.propagate();
            }
        }
        Ok(())
    }

    /// Pairs open tensors that sit in modules already mapped: when `P.weight` ≙ `Q.weight`,
    /// `P.bias` pairs with `Q.bias` (same leaf, same shape). The pair inherits the largest
    /// candidate count of the pairs that established the mapping (a mapping content chose
    /// keeps its search's null). A module mapped to two different modules is not used.
    fn propagate(&mut self) {
        let module = |n: &str| {
            n.rsplit_once('.')
                .map(|(m, leaf)| (m.to_owned(), leaf.to_owned()))
        };
        let mut map: BTreeMap<String, Option<(String, usize)>> = BTreeMap::new();
        for f in &self.found {
            let (Some((ma, _)), Some((mb, _))) = (module(&f.a), module(&f.b)) else {
                continue;
            };
            let e = map.entry(ma).or_insert(Some((mb.clone(), f.by.candidates)));
            match e {
                Some((q, k)) if *q == mb => *k = (*k).max(f.by.candidates),
                _ => *e = None,
            }
        }
        let open_b: BTreeMap<String, Item> =
            self.open_b().map(|i| (i.name.clone(), i.clone())).collect();
        let mut take = Vec::new();
        for a in self.open_a().filter(|i| i.float) {
            let Some((p, leaf)) = module(&a.name) else {
                continue;
            };
            let Some(Some((q, k))) = map.get(&p) else {
                continue;
            };
            let bn = format!("{q}.{leaf}");
            if let Some(b) = open_b.get(&bn) {
                if b.float && b.sq == a.sq {
                    take.push((a.name.clone(), bn, *k, p.clone(), q.clone()));
                }
            }
        }
        for (a, b, k, p, q) in take {
            if self.done_b.contains(&b) {
                continue;
            }
            let by = PairedBy {
                method: if k > 1 {
                    PairMethod::Content
                } else {
                    PairMethod::Structure
                },
                rule: format!("same module as the pairs `{p}` ≙ `{q}`"),
                score: None,
                candidates: k,
            };
            self.take(&a, &b, by);
        }
    }

    fn take_maybe_transposed(&mut self, a: &str, b: &str, by: PairedBy, transposed: bool) {
        if transposed {
            self.transposed.insert(b.to_owned());
            self.done_b.insert(b.to_owned());
            self.done_a.insert(a.to_owned());
            self.found.push(Found {
                a: a.to_owned(),
                b: format!("{b}{TRANSPOSED}"),
                by,
            });
        } else {
            self.take(a, b, by);
        }
    }

    /// One group: the only pair, or (with `content`) the content assignment.
    fn assign(
        &mut self,
        ga: &[&Item],
        gb: &[&Item],
        transposed: bool,
        content: bool,
        what: &str,
    ) -> Result<Vec<(String, String, PairedBy)>, Error> {
        if let ([x], [y]) = (ga, gb) {
            if !leaves_compatible(&x.name, &y.name) {
                return Ok(Vec::new());
            }
            return Ok(vec![(
                x.name.clone(),
                y.name.clone(),
                structure(format!("the only tensor {what} on both sides")),
            )]);
        }
        if !content {
            return Ok(Vec::new());
        }
        let mut score = vec![0.0; ga.len() * gb.len()];
        for (i, x) in ga.iter().enumerate() {
            for (j, y) in gb.iter().enumerate() {
                score[i * gb.len() + j] = if leaves_compatible(&x.name, &y.name) {
                    self.score(&x.name, &y.name, transposed)?
                        .unwrap_or(f64::NEG_INFINITY)
                } else {
                    f64::NEG_INFINITY
                };
            }
        }
        let k = ga.len().max(gb.len());
        Ok(hungarian_max(&score, ga.len(), gb.len())
            .into_iter()
            .filter(|&(i, j)| leaves_compatible(&ga[i].name, &gb[j].name))
            .map(|(i, j)| {
                let s = score[i * gb.len() + j];
                (
                    ga[i].name.clone(),
                    gb[j].name.clone(),
                    PairedBy {
                        method: PairMethod::Content,
                        rule: format!("best of {k} tensors {what}"),
                        score: s.is_finite().then(|| crate::report::round(s)),
                        candidates: k,
                    },
                )
            })
            .collect())
    }

    /// Pearson of the fixed subsamples of A's `a` and B's `b` (B transposed if asked).
    fn score(&mut self, a: &str, b: &str, transposed: bool) -> Result<Option<f64>, Error> {
        let x = self.subsample(true, a, false)?;
        let y = self.subsample(false, b, transposed)?;
        Ok(match (x, y) {
            (Some(x), Some(y)) if x.len() == y.len() => weightkin_core::Moments::of_tensors(&x, &y)
                .pearson()
                .value(),
            _ => None,
        })
    }

    fn subsample(
        &mut self,
        side_a: bool,
        name: &str,
        transposed: bool,
    ) -> Result<Option<Vec<f32>>, Error> {
        let key = (side_a, name.to_owned(), transposed);
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let views = if side_a { self.a } else { self.b };
        let v = match views.find(name) {
            Some(i) => read_subsample(views, i, transposed).map_err(|source| Error::Views {
                model: (if side_a { self.models.0 } else { self.models.1 }).to_owned(),
                source: Box::new(source),
            })?,
            None => None,
        };
        self.cache.insert(key, v.clone());
        Ok(v)
    }
}

/// Whether two tensors can hold the same parameter by their last name segments: a weight
/// never corresponds to a bias (`weight` vs `bias`); any other leaf (`weight_ih`, `basis`,
/// a fused part's `weight#q`) may correspond to anything.
fn leaves_compatible(a: &str, b: &str) -> bool {
    let kind = |n: &str| {
        let leaf = n.rsplit('.').next().unwrap_or(n);
        let leaf = leaf.split_once('#').map_or(leaf, |(l, _)| l);
        match leaf {
            "weight" => 1,
            "bias" => 2,
            _ => 0,
        }
    };
    let (x, y) = (kind(a), kind(b));
    x == 0 || y == 0 || x == y
}

fn structure(rule: String) -> PairedBy {
    PairedBy {
        method: PairMethod::Structure,
        rule,
        score: None,
        candidates: 1,
    }
}

/// The subsample positions of an `n`-element tensor: everything up to [`SUBSAMPLE`], else
/// [`RUNS`] runs evenly spaced.
fn positions(n: usize) -> Vec<usize> {
    if n <= SUBSAMPLE {
        return (0..n).collect();
    }
    let run = SUBSAMPLE / RUNS;
    (0..RUNS)
        .flat_map(|k| {
            let start = k * (n - run) / (RUNS - 1);
            start..start + run
        })
        .collect()
}

/// Reads tensor `index`'s subsample (of its transpose, for a 2-D tensor, if asked): the same
/// positions in row-major order as its partner's, so the two line up element by element.
fn read_subsample(
    views: &Views<'_>,
    index: usize,
    transposed: bool,
) -> weightkin_core::Result<Option<Vec<f32>>> {
    let info = &views.tensors()[index];
    if !info.dtype.is_float() {
        return Ok(None);
    }
    let pos = positions(info.numel);
    let mut out = Vec::with_capacity(pos.len());
    if transposed {
        let [r, c] = info.shape[..] else {
            return Ok(None);
        };
        // Element e of the [c, r] transpose is element (e % r, e / r) of the stored tensor.
        let mut one = [0f32; 1];
        for e in pos {
            let (i, j) = (e / r, e % r);
            views.read_f32(index, j * c + i, &mut one)?;
            out.push(one[0]);
        }
        return Ok(Some(out));
    }
    let mut k = 0;
    while k < pos.len() {
        let start = pos[k];
        let mut len = 1;
        while k + len < pos.len() && pos[k + len] == start + len {
            len += 1;
        }
        let mut buf = vec![0f32; len];
        views.read_f32(index, start, &mut buf)?;
        out.extend_from_slice(&buf);
        k += len;
    }
    Ok(Some(out))
}

/// Maximum-score assignment of a `rows × cols` score matrix ([`weightkin_core::lap`]):
/// (row, column) pairs, one per row of the smaller side, sorted. Undefined scores (−∞) are
/// replaced by a score below every finite one, so they are chosen only when nothing else is
/// left.
pub fn hungarian_max(score: &[f64], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    let floor = score
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, v| a.max(v.abs()));
    let finite: Vec<f64> = score
        .iter()
        .map(|&v| if v.is_finite() { v } else { -4.0 * floor - 4.0 })
        .collect();
    // Finite scores and a consistent shape: the solver cannot fail here.
    weightkin_core::lap::assign_max(&finite, rows, cols)
        .map(|a| a.pairs().collect())
        .unwrap_or_default()
}

/// Prefix of a pair's names: for layered names, the stack with `*`; else the names without
/// their longest common suffix of segments.
fn prefixes(a: &str, b: &str) -> (String, String, Option<u32>) {
    if let (Some((sa, la, _)), Some((sb, _, _))) = (stack_layer_role(a), stack_layer_role(b)) {
        return (format!("{sa}.*"), format!("{sb}.*"), Some(la));
    }
    let (xa, xb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let mut common = 0;
    while common < xa.len().min(xb.len()) - 1
        && xa[xa.len() - 1 - common] == xb[xb.len() - 1 - common]
    {
        common += 1;
    }
    (
        xa[..xa.len() - common].join("."),
        xb[..xb.len() - common].join("."),
        None,
    )
}

fn report(
    spec: &CompareSpec,
    pa: &Presented<'_>,
    pb: &Presented<'_>,
    sel_a: &BTreeSet<String>,
    sel_b: &BTreeSet<String>,
    found: &[Found],
) -> CorrespondenceReport {
    type Counts = (BTreeSet<u32>, usize, BTreeMap<PairMethod, usize>);
    let mut mappings: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut methods = BTreeMap::new();
    for f in found {
        *methods.entry(f.by.method).or_insert(0) += 1;
        if f.by.method == PairMethod::Name {
            continue;
        }
        let (a, b, layer) = prefixes(&f.a, &f.b);
        let e = mappings.entry((a, b)).or_default();
        e.0.extend(layer);
        e.1 += 1;
        *e.2.entry(f.by.method).or_insert(0) += 1;
    }
    let parent = |n: &str| n.split_once('#').map_or(n, |(p, _)| p).to_owned();
    let paired_a: BTreeSet<String> = found.iter().map(|f| parent(&f.a)).collect();
    let paired_b: BTreeSet<String> = found.iter().map(|f| parent(&f.b)).collect();
    let mut coverage = Vec::new();
    for (model, sel, paired) in [("a", sel_a, &paired_a), ("b", sel_b, &paired_b)] {
        let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let naming = judge::Components::new(spec, sel.iter().map(String::as_str));
        for n in sel {
            let e = by.entry(naming.of(n)).or_default();
            e.0 += 1;
            e.1 += usize::from(paired.contains(n));
        }
        for (component, (tensors, paired)) in by {
            coverage.push(Coverage {
                model,
                component,
                tensors,
                paired,
            });
        }
    }
    let _ = (pa, pb);
    CorrespondenceReport {
        mappings: mappings
            .into_iter()
            .map(|((a, b), (layers, tensors, methods))| Mapping {
                a,
                b,
                layers: layers.len(),
                tensors,
                methods,
            })
            .collect(),
        methods,
        coverage,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn hungarian_finds_the_best_assignment() {
        // Brute force over small matrices.
        let mut rng = weightkin_core::rng::Rng::new(7);
        for rows in 1..=5 {
            for cols in 1..=5 {
                for _ in 0..20 {
                    let s: Vec<f64> = (0..rows * cols)
                        .map(|_| (rng.next_u64() % 100) as f64)
                        .collect();
                    let got = hungarian_max(&s, rows, cols);
                    assert_eq!(got.len(), rows.min(cols));
                    let total: f64 = got.iter().map(|&(i, j)| s[i * cols + j]).sum();
                    assert_eq!(total, brute(&s, rows, cols), "{rows}x{cols}");
                    let (mut ri, mut ci) = (BTreeSet::new(), BTreeSet::new());
                    for &(i, j) in &got {
                        assert!(ri.insert(i) && ci.insert(j));
                    }
                }
            }
        }
    }

    fn brute(s: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(s: &[f64], rows: usize, cols: usize, i: usize, used: &mut Vec<bool>) -> f64 {
            if i == rows {
                return 0.0;
            }
            let mut best = f64::NEG_INFINITY;
            // Rows may stay unassigned only when rows > cols.
            let free = used.iter().filter(|u| !**u).count();
            if rows - i > free {
                best = go(s, rows, cols, i + 1, used);
            }
            for j in 0..cols {
                if !used[j] {
                    used[j] = true;
                    best = best.max(s[i * cols + j] + go(s, rows, cols, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(s, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn stacks_layers_and_roles() {
        assert_eq!(
            stack_layer_role("_model.encoder.2.reparam_conv.weight"),
            Some(("_model.encoder".into(), 2, "reparam_conv.weight".into()))
        );
        assert_eq!(stack_layer_role("conv1.weight"), None);
        assert_eq!(stack_layer_role("0.weight"), None);
        assert_eq!(stack_layer_role("a.3"), None);
        assert_eq!(
            prefixes(
                "encoder.layer.3.attention.self.query.weight",
                "visual.blocks.3.attn.qkv.weight#q"
            ),
            ("encoder.layer.*".into(), "visual.blocks.*".into(), Some(3))
        );
        assert_eq!(
            prefixes("_model.decoder.rnn.weight_ih", "lstm_cell.weight_ih"),
            ("_model.decoder.rnn".into(), "lstm_cell".into(), None)
        );
        assert_eq!(positions(10).len(), 10);
        let p = positions(1 << 20);
        assert_eq!(p.len(), SUBSAMPLE);
        assert_eq!(*p.last().unwrap(), (1 << 20) - 1);
    }
}
