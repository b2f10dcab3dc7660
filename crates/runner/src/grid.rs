//! Layer × layer grids and layer alignment.
//!
//! For a tensor class present in many layers of both models (`model.layers.*.mlp.up_proj.weight`),
//! a grid holds one metric for every pair (layer i of A, layer j of B). A derived model shows
//! a bright diagonal (or, for a model that kept a subset of A's layers, a bright staircase);
//! an independent one does not. From the grids of one layer stack (`model.layers`) the best
//! monotone alignment of B's layers to A's is found by dynamic programming: B's layer j maps
//! to A's layer f(j) with f non-decreasing, which covers B keeping a subset of A's layers
//! (distillation by layer dropping) and B repeating layers (depth up-scaling in place). The
//! unconstrained best match per B layer is reported beside it, so a non-monotone reuse
//! (SOLAR-style "layers 0–23 then 8–31") is visible too.

use std::collections::BTreeMap;

use rayon::prelude::*;
use weightkin_core::{ExampleSample, Taps, WeightSource};

use crate::execute::{measure, RunOptions};
use crate::pairing::layer_and_class;
use crate::recipe::{BuiltMetric, CompareSpec, GridSpec};
use crate::report::{round, Alignment, Grid, LayerMatch, SkippedGrid, Subsampled};
use crate::Error;

/// Tensors of one model by class, then by layer: class → layer → (name, tensor index).
pub type Layered = BTreeMap<String, BTreeMap<u32, (String, usize)>>;

/// Groups a model's (renamed, selected) tensors by class and layer.
pub fn layered<'a>(names: impl IntoIterator<Item = (&'a String, &'a usize)>) -> Layered {
    let mut out: Layered = BTreeMap::new();
    for (name, &index) in names {
        if let (Some(layer), class) = layer_and_class(name) {
            out.entry(class)
                .or_default()
                .insert(layer, (name.clone(), index));
        }
    }
    out
}

/// The layer stack a class belongs to: the part of the class before `.*` (`model.layers`).
pub fn stack_of(class: &str) -> &str {
    class.split_once(".*").map_or(class, |(stack, _)| stack)
}

/// Computes a grid for every class `spec` selects that has at least two layers in one model
/// and one in the other, and whose float tensors agree in shape across the two models.
/// Selected classes that get no grid are returned with the reason.
pub fn grids(
    cmp: &CompareSpec,
    spec: &GridSpec,
    a: &dyn WeightSource,
    la: &Layered,
    b: &dyn WeightSource,
    lb: &Layered,
    opts: &RunOptions<'_>,
) -> Result<(Vec<Grid>, Vec<SkippedGrid>), Error> {
    let (ta, tb) = (a.tensors(), b.tensors());
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |class: &str, reason: &str| {
        skipped.push(SkippedGrid {
            class: class.to_owned(),
            reason: reason.to_owned(),
        })
    };
    for (class, layers_a) in la {
        if !spec.selects(class) {
            continue;
        }
        let Some(layers_b) = lb.get(class) else {
            skip(class, "only model A has this class");
            continue;
        };
        if layers_a.len().max(layers_b.len()) < 2 {
            skip(class, "fewer than two layers in both models");
            continue;
        }
        let comparable = layers_a.values().all(|(_, i)| ta[*i].dtype.is_float())
            && layers_b.values().all(|(_, i)| tb[*i].dtype.is_float());
        let shape = layers_a.values().next().map(|(_, i)| ta[*i].shape.clone());
        let same_shape = layers_a
            .values()
            .all(|(_, i)| Some(&ta[*i].shape) == shape.as_ref())
            && layers_b
                .values()
                .all(|(_, i)| Some(&tb[*i].shape) == shape.as_ref());
        if !comparable {
            skip(class, "non-float dtype");
            continue;
        }
        if !same_shape {
            skip(class, "shapes differ between layers or models");
            continue;
        }
        let g = grid(cmp, class, &spec.metric, a, layers_a, b, layers_b, opts)?;
        if g.values.iter().flatten().all(Option::is_none) {
            skip(
                class,
                &format!("{} is undefined for every cell of this class", g.metric),
            );
            continue;
        }
        out.push(g);
    }
    for class in lb.keys() {
        if spec.selects(class) && !la.contains_key(class) {
            skip(class, "only model B has this class");
        }
    }
    skipped.sort_by(|x, y| x.class.cmp(&y.class));
    Ok((out, skipped))
}

#[allow(clippy::too_many_arguments)]
fn grid(
    cmp: &CompareSpec,
    class: &str,
    metric: &BuiltMetric,
    a: &dyn WeightSource,
    layers_a: &BTreeMap<u32, (String, usize)>,
    b: &dyn WeightSource,
    layers_b: &BTreeMap<u32, (String, usize)>,
    opts: &RunOptions<'_>,
) -> Result<Grid, Error> {
    let cells: Vec<(u32, usize, u32, usize, &str)> = layers_a
        .iter()
        .flat_map(|(&la, (name, ia))| {
            layers_b
                .iter()
                .map(move |(&lb, (_, ib))| (la, *ia, lb, *ib, name.as_str()))
        })
        .collect();
    let numel = layers_a
        .values()
        .next()
        .map_or(0, |(_, i)| a.tensors()[*i].numel);
    opts.progress.start(
        &format!("grid {class}"),
        (cells.len() * numel) as u64,
        "elements",
    );
    let values = cells
        .par_iter()
        .map(|&(_, ia, _, ib, name)| {
            let taps = Taps::default();
            let v = measure(cmp, std::slice::from_ref(metric), a, ia, b, ib, name, &taps)?;
            opts.progress.advance(numel as u64);
            Ok(v.results
                .into_iter()
                .next()
                .map_or((None, None), |r| (r.value.value().map(round), r.subsample)))
        })
        .collect::<Result<Vec<(Option<f64>, Option<ExampleSample>)>, Error>>()?;
    // Every cell has the class's shape, so every subsampled cell kept the same examples.
    let subsampled = values.iter().find_map(|(_, s)| *s).map(Subsampled::from);
    let values: Vec<Option<f64>> = values.into_iter().map(|(v, _)| v).collect();
    opts.progress.finish();
    let nb = layers_b.len();
    let rows: Vec<Vec<Option<f64>>> = values.chunks(nb).map(<[_]>::to_vec).collect();
    let (mut diag, mut off) = (Vec::new(), Vec::new());
    for (&(la, _, lb, _, _), v) in cells.iter().zip(&values) {
        if let Some(v) = v {
            if la == lb {
                diag.push(*v);
            } else {
                off.push(*v);
            }
        }
    }
    Ok(Grid {
        class: class.to_owned(),
        stack: stack_of(class).to_owned(),
        metric: metric.spec.name.to_owned(),
        layers_a: layers_a.keys().copied().collect(),
        layers_b: layers_b.keys().copied().collect(),
        values: rows,
        diagonal_mean: mean(&diag),
        off_diagonal_mean: mean(&off),
        subsampled,
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| round(v.iter().sum::<f64>() / v.len() as f64))
}

/// Aligns each layer stack from its grids (all grids of a stack must share the layer lists;
/// the cell-wise mean over classes is aligned). Stacks are returned sorted by name.
pub fn align(grids: &[Grid]) -> Vec<Alignment> {
    let mut stacks: BTreeMap<&str, Vec<&Grid>> = BTreeMap::new();
    for g in grids {
        stacks.entry(&g.stack).or_default().push(g);
    }
    let mut out = Vec::new();
    for (stack, gs) in stacks {
        let Some(first) = gs.first() else { continue };
        // Only grids over the same layers can be averaged.
        let gs: Vec<&Grid> = gs
            .iter()
            .copied()
            .filter(|g| g.layers_a == first.layers_a && g.layers_b == first.layers_b)
            .collect();
        let (na, nb) = (first.layers_a.len(), first.layers_b.len());
        let mut m = vec![vec![None; nb]; na];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                let vals: Vec<f64> = gs
                    .iter()
                    .filter_map(|g| g.values.get(i).and_then(|r| r.get(j)).copied().flatten())
                    .collect();
                *cell = mean(&vals);
            }
        }
        let path = monotone_path(&m);
        let on: Vec<f64> = path
            .iter()
            .enumerate()
            .filter_map(|(j, &i)| m[i][j])
            .collect();
        let mut off = Vec::new();
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                if path.get(j) != Some(&i) {
                    off.extend(*v);
                }
            }
        }
        let mapping = path
            .iter()
            .enumerate()
            .map(|(j, &i)| LayerMatch {
                b: first.layers_b[j],
                a: first.layers_a[i],
                score: m[i][j],
            })
            .collect();
        let best_match = (0..nb)
            .map(|j| {
                let (i, score) = (0..na).map(|i| (i, m[i][j])).fold(
                    (0, None),
                    |best: (usize, Option<f64>), (i, v)| match (best.1, v) {
                        (_, None) => best,
                        (None, Some(_)) => (i, v),
                        (Some(b), Some(x)) if x > b => (i, v),
                        _ => best,
                    },
                );
                LayerMatch {
                    b: first.layers_b[j],
                    a: first.layers_a[i],
                    score,
                }
            })
            .collect();
        let mut classes: Vec<String> = gs.iter().map(|g| g.class.clone()).collect();
        classes.sort();
        out.push(Alignment {
            stack: stack.to_owned(),
            metric: first.metric.clone(),
            classes,
            mapping,
            meaningful: matches!(
                (mean(&on), mean(&off)),
                (Some(on), Some(off)) if on - off >= crate::verdict::MIN_EFFECT
            ),
            score: mean(&on),
            off_mapping_mean: mean(&off),
            best_match,
            applied: false,
        });
    }
    out
}

/// The non-decreasing path i = f(j) through `m` (rows: A layers, columns: B layers) that
/// maximises the sum of defined cells (undefined cells count as −1, below any correlation).
/// Ties go to the smallest row, so the result is deterministic.
fn monotone_path(m: &[Vec<Option<f64>>]) -> Vec<usize> {
    let na = m.len();
    let nb = m.first().map_or(0, Vec::len);
    if na == 0 || nb == 0 {
        return Vec::new();
    }
    let val = |i: usize, j: usize| m[i][j].unwrap_or(-1.0);
    // best[j][i]: best total for columns 0..=j with column j on row i.
    let mut best = vec![vec![0.0f64; na]; nb];
    let mut from = vec![vec![0usize; na]; nb];
    for (i, b) in best[0].iter_mut().enumerate() {
        *b = val(i, 0);
    }
    for j in 1..nb {
        // Running argmax of best[j-1][0..=i].
        let (mut arg, mut top) = (0usize, f64::NEG_INFINITY);
        for i in 0..na {
            if best[j - 1][i] > top {
                top = best[j - 1][i];
                arg = i;
            }
            best[j][i] = top + val(i, j);
            from[j][i] = arg;
        }
    }
    let mut i = (0..na).fold(0, |arg, i| {
        if best[nb - 1][i] > best[nb - 1][arg] {
            i
        } else {
            arg
        }
    });
    let mut path = vec![0; nb];
    for j in (0..nb).rev() {
        path[j] = i;
        i = from[j][i];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(values: Vec<Vec<f64>>) -> Vec<Vec<Option<f64>>> {
        values
            .into_iter()
            .map(|r| r.into_iter().map(Some).collect())
            .collect()
    }

    #[test]
    fn identity_alignment() {
        let m = grid(vec![
            vec![0.9, 0.1, 0.0],
            vec![0.1, 0.9, 0.1],
            vec![0.0, 0.1, 0.9],
        ]);
        assert_eq!(monotone_path(&m), vec![0, 1, 2]);
    }

    #[test]
    fn every_second_layer_kept() {
        // B has 3 layers = A's layers 0, 2, 4.
        let mut v = vec![vec![0.05; 3]; 6];
        v[0][0] = 0.95;
        v[2][1] = 0.9;
        v[4][2] = 0.92;
        assert_eq!(monotone_path(&grid(v)), vec![0, 2, 4]);
    }

    #[test]
    fn repeated_layers() {
        // B = A0 A1 A1 A2 (a layer duplicated in place).
        let mut v = vec![vec![0.0; 4]; 3];
        v[0][0] = 1.0;
        v[1][1] = 1.0;
        v[1][2] = 1.0;
        v[2][3] = 1.0;
        assert_eq!(monotone_path(&grid(v)), vec![0, 1, 1, 2]);
    }

    #[test]
    fn stacks() {
        assert_eq!(
            stack_of("model.layers.*.mlp.up_proj.weight"),
            "model.layers"
        );
        assert_eq!(stack_of("visual.blocks.*.attn.qkv.weight"), "visual.blocks");
    }
}
