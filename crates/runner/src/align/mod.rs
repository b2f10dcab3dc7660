//! Align: undo what scrambles the correspondence between A and B without changing what the
//! weights compute. Today: layer alignment — from the layer grids of one stack, the best
//! monotone mapping of B's layers to A's (dynamic programming over the class-averaged grid:
//! B's layer j maps to A's layer f(j) with f non-decreasing, which covers B keeping a subset
//! of A's layers and B repeating layers in place), and the unconstrained best match per B
//! layer beside it, so a non-monotone reuse (SOLAR-style "layers 0–23 then 8–31") is visible
//! too. With `align = "auto"` a meaningful alignment re-pairs layered tensors along it
//! ([`LayerRemap`]). Within layers: [`units`] aligns MLP hidden units (permuted or
//! width-pruned copies), with its own null under the same search.

pub mod beside;
pub mod facts;
pub mod residual;
pub mod units;

/// `base` with some tensors replaced in place by views of themselves
/// ([`Views::replacing`]); an error names the model.
fn replaced<'a>(
    model: &str,
    base: &'a dyn weightkin_core::WeightSource,
    views: BTreeMap<usize, crate::correspond::views::View>,
) -> Result<crate::correspond::views::Views<'a>, crate::Error> {
    crate::correspond::views::Views::replacing(base, views).map_err(|source| crate::Error::Views {
        model: model.to_owned(),
        source: Box::new(source),
    })
}
pub mod vocab;

use std::collections::BTreeMap;

use crate::judge::MIN_EFFECT;
use crate::plan::{layer_and_class, stack_of};
use crate::report::{rounded_mean as mean, Alignment, Grid, LayerMatch};

/// Aligns each layer stack from its grids (all grids of a stack must share the layer lists;
/// the cell-wise mean over classes is aligned). Stacks are returned sorted by name.
pub fn from_grids(grids: &[Grid]) -> Vec<Alignment> {
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
                (Some(on), Some(off)) if on - off >= MIN_EFFECT
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

/// Where layered tensors of B pair in A after alignment: (stack, B layer) → A layer.
#[derive(Debug, Default)]
pub struct LayerRemap(BTreeMap<(String, u32), u32>);

impl LayerRemap {
    /// Applies every meaningful alignment (marking it `applied`) and returns the remap.
    pub fn apply(alignments: &mut [Alignment]) -> LayerRemap {
        let mut remap = BTreeMap::new();
        for al in alignments.iter_mut().filter(|al| al.meaningful) {
            al.applied = true;
            for m in &al.mapping {
                remap.insert((al.stack.clone(), m.b), m.a);
            }
        }
        LayerRemap(remap)
    }

    /// The A name a B name pairs with when the alignment moves it to another layer; `None`
    /// pairs equal names.
    pub fn target(&self, name: &str) -> Option<String> {
        let (Some(layer), class) = layer_and_class(name) else {
            return None;
        };
        let to = self.0.get(&(stack_of(&class).to_owned(), layer))?;
        (*to != layer).then(|| class.replacen('*', &to.to_string(), 1))
    }
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
}
