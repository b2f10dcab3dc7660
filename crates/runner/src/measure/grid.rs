//! Layer × layer grids: for a tensor class present in many layers of both models
//! (`model.layers.*.mlp.up_proj.weight`), one metric for every pair (layer i of A, layer j of
//! B). A derived model shows a bright diagonal (or, for a model that kept a subset of A's
//! layers, a bright staircase); an independent one does not. The layer alignment computed
//! from the grids is the align stage's ([`crate::align`]).

use rayon::prelude::*;
use weightkin_core::{ExampleSample, Taps, WeightSource};

use crate::measure::{measure, Side};
use crate::plan::{stack_of, LayerTensors, Layered};
use crate::recipe::{BuiltMetric, CompareSpec, GridSpec};
use crate::report::{round, rounded_mean as mean, Grid, GridSkip, SkippedGrid, Subsampled};
use crate::{Error, RunOptions};

/// One model's selected tensors grouped by class and layer.
#[derive(Clone, Copy)]
pub struct LayeredModel<'a> {
    /// The model.
    pub source: &'a dyn WeightSource,
    /// Its tensors by class, then layer.
    pub layered: &'a Layered,
}

/// One class's layers in one model.
#[derive(Clone, Copy)]
struct ClassLayers<'a> {
    source: &'a dyn WeightSource,
    layers: &'a LayerTensors,
}

impl ClassLayers<'_> {
    fn all(&self, f: impl Fn(&weightkin_core::TensorInfo) -> bool) -> bool {
        let tensors = self.source.tensors();
        self.layers.values().all(|(_, i)| f(&tensors[*i]))
    }
}

/// Computes a grid for every class `spec` selects that has at least two layers in one model
/// and one in the other, and whose float tensors agree in shape across the two models.
/// Selected classes that get no grid are returned with the reason.
pub fn grids(
    cmp: &CompareSpec,
    spec: &GridSpec,
    a: LayeredModel<'_>,
    b: LayeredModel<'_>,
    opts: &RunOptions<'_>,
) -> Result<(Vec<Grid>, Vec<SkippedGrid>), Error> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (class, layers_a) in a.layered {
        if !spec.selects(class) {
            continue;
        }
        let side_a = ClassLayers {
            source: a.source,
            layers: layers_a,
        };
        let reason = match b.layered.get(class) {
            None => Some(GridSkip::OnlyInA),
            Some(layers_b) => {
                let side_b = ClassLayers {
                    source: b.source,
                    layers: layers_b,
                };
                match skip_reason(side_a, side_b) {
                    Some(reason) => Some(reason),
                    None => {
                        let g = grid(cmp, class, &spec.metric, side_a, side_b, opts)?;
                        if g.values.iter().flatten().all(Option::is_none) {
                            Some(GridSkip::Undefined {
                                metric: g.metric.clone(),
                            })
                        } else {
                            out.push(g);
                            None
                        }
                    }
                }
            }
        };
        if let Some(reason) = reason {
            skipped.push(SkippedGrid {
                class: class.clone(),
                reason,
            });
        }
    }
    for class in b.layered.keys() {
        if spec.selects(class) && !a.layered.contains_key(class) {
            skipped.push(SkippedGrid {
                class: class.clone(),
                reason: GridSkip::OnlyInB,
            });
        }
    }
    skipped.sort_by(|x, y| x.class.cmp(&y.class));
    Ok((out, skipped))
}

/// Why a class present in both models cannot have a grid, if it cannot.
fn skip_reason(a: ClassLayers<'_>, b: ClassLayers<'_>) -> Option<GridSkip> {
    if a.layers.len().max(b.layers.len()) < 2 {
        return Some(GridSkip::FewerThanTwoLayers);
    }
    if !(a.all(|t| t.dtype.is_float()) && b.all(|t| t.dtype.is_float())) {
        return Some(GridSkip::NonFloat);
    }
    let shape = a
        .layers
        .values()
        .next()
        .map(|(_, i)| a.source.tensors()[*i].shape.clone());
    let same = |t: &weightkin_core::TensorInfo| Some(&t.shape) == shape.as_ref();
    if !(a.all(same) && b.all(same)) {
        return Some(GridSkip::ShapesDiffer);
    }
    None
}

/// One cell of a grid: layer `la` of A (tensor `ia`) against layer `lb` of B (tensor `ib`).
struct Cell<'a> {
    la: u32,
    a: Side<'a>,
    lb: u32,
    b: Side<'a>,
    name: &'a str,
}

fn grid(
    cmp: &CompareSpec,
    class: &str,
    metric: &BuiltMetric,
    a: ClassLayers<'_>,
    b: ClassLayers<'_>,
    opts: &RunOptions<'_>,
) -> Result<Grid, Error> {
    let cells: Vec<Cell<'_>> = a
        .layers
        .iter()
        .flat_map(|(&la, (name, ia))| {
            b.layers.iter().map(move |(&lb, (_, ib))| Cell {
                la,
                a: Side::new(a.source, *ia),
                lb,
                b: Side::new(b.source, *ib),
                name: name.as_str(),
            })
        })
        .collect();
    let numel = a
        .layers
        .values()
        .next()
        .map_or(0, |(_, i)| a.source.tensors()[*i].numel);
    opts.progress.start(
        &format!("grid {class}"),
        (cells.len() * numel) as u64,
        "elements",
    );
    let values = cells
        .par_iter()
        .map(|cell| {
            let taps = Taps::default();
            let v = measure(
                cmp,
                std::slice::from_ref(metric),
                cell.a,
                cell.b,
                cell.name,
                &taps,
            )?;
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
    let nb = b.layers.len();
    let rows: Vec<Vec<Option<f64>>> = values.chunks(nb).map(<[_]>::to_vec).collect();
    let (mut diag, mut off) = (Vec::new(), Vec::new());
    for (cell, v) in cells.iter().zip(&values) {
        if let Some(v) = v {
            if cell.la == cell.lb {
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
        layers_a: a.layers.keys().copied().collect(),
        layers_b: b.layers.keys().copied().collect(),
        values: rows,
        diagonal_mean: mean(&diag),
        off_diagonal_mean: mean(&off),
        subsampled,
    })
}
