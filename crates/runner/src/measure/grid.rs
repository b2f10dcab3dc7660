//! Layer × layer grids: for a tensor class present in many layers of both models
//! (`model.layers.*.mlp.up_proj.weight`), one metric for every pair (layer i of A, layer j of
//! B). A derived model shows a bright diagonal (or, for a model that kept a subset of A's
//! layers, a bright staircase); an independent one does not. The layer alignment computed
//! from the grids is the align stage's ([`crate::align`]).

mod gram;

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

/// Every cell measured on its own ([`measure`]): any metric, and the built-in CKA where the
/// prepared path does not apply ([`gram::cells`]).
fn cell_by_cell(
    cmp: &CompareSpec,
    class: &str,
    metric: &BuiltMetric,
    a: ClassLayers<'_>,
    b: ClassLayers<'_>,
    opts: &RunOptions<'_>,
) -> Result<(Vec<Option<f64>>, Option<Subsampled>), Error> {
    let cells: Vec<Cell<'_>> = a
        .layers
        .values()
        .flat_map(|(name, ia)| {
            b.layers.values().map(move |(_, ib)| Cell {
                a: Side::new(a.source, *ia),
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
            opts.checkpoint()?;
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
    Ok((values, subsampled))
}

/// One cell of a grid: a layer of A against a layer of B (named by A's tensor).
struct Cell<'a> {
    a: Side<'a>,
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
    let prepared = match gram::builtin_cka(metric) {
        Some(cka) => gram::cells(cmp, class, cka, [a, b], opts, gram::SLAB_BUDGET)?,
        None => None,
    };
    let (values, subsampled) = match prepared {
        Some(c) => (c.values, c.subsample.map(Subsampled::from)),
        None => cell_by_cell(cmp, class, metric, a, b, opts)?,
    };
    let cells = a
        .layers
        .keys()
        .flat_map(|&la| b.layers.keys().map(move |&lb| (la, lb)));
    let nb = b.layers.len();
    let rows: Vec<Vec<Option<f64>>> = values.chunks(nb).map(<[_]>::to_vec).collect();
    let (mut diag, mut off) = (Vec::new(), Vec::new());
    for ((la, lb), v) in cells.zip(&values) {
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
        layers_a: a.layers.keys().copied().collect(),
        layers_b: b.layers.keys().copied().collect(),
        values: rows,
        diagonal_mean: mean(&diag),
        off_diagonal_mean: mean(&off),
        subsampled,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use weightkin_core::Limits;

    /// A grid cut into several slabs (a budget of a few rows) gives the one-slab values, on
    /// 6 layers against 4 (a tall class, where the per-pair path takes the feature form, and
    /// a square one), rows and columns as examples.
    #[test]
    fn slab_count_does_not_change_the_grid() {
        use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
        let dir = tempfile::tempdir().unwrap();
        let classes = [
            ("mlp.up_proj", [40usize, 24usize]),
            ("self_attn.q_proj", [24, 24]),
        ];
        for (file, layers, noise) in [("a.safetensors", 6, 0.0f32), ("b.safetensors", 4, 0.5)] {
            let mut builder = SafetensorsBuilder::new();
            for layer in 0..layers {
                for (c, (class, shape)) in classes.iter().enumerate() {
                    let n = shape[0] * shape[1];
                    let seed = (layer * 2 + c) as u64;
                    let v: Vec<f32> = uniform_f32(n, seed, -0.5, 0.5)
                        .iter()
                        .zip(uniform_f32(n, seed + 100, -0.5, 0.5))
                        .map(|(x, e)| x + noise * e)
                        .collect();
                    let name = format!("model.layers.{layer}.{class}.weight");
                    builder = builder.tensor_f32(&name, shape, &v);
                }
            }
            builder.write(&dir.path().join(file)).unwrap();
        }
        let reg = crate::registry::builtin().unwrap();
        let open = |m: &str| {
            reg.open(&dir.path().join(m), None, &Limits::default())
                .unwrap()
        };
        let (sa, sb) = (open("a.safetensors"), open("b.safetensors"));
        let layered = |s: &dyn WeightSource| {
            let names: std::collections::BTreeMap<String, usize> = s
                .tensors()
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect();
            crate::plan::layered(&names)
        };
        let (la, lb) = (layered(sa.as_ref()), layered(sb.as_ref()));
        let mut compared = 0;
        for examples in ["rows", "columns"] {
            let text = format!(
                "[audit]\nname = \"t\"\n[models.a]\npath = \"a\"\n[models.b]\npath = \"b\"\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\ngrid = {{ metric = \"cka\" }}\n\
                 [compare.params.cka]\nexamples = \"{examples}\"\n"
            );
            let r = crate::recipe::parse(std::path::Path::new("r.toml"), &text, &reg).unwrap();
            let cmp = &r.compares[0];
            let cka = gram::builtin_cka(&cmp.grid.as_ref().unwrap().metric).unwrap();
            for (class, layers_a) in &la {
                let Some(layers_b) = lb.get(class) else {
                    continue;
                };
                let sides = [
                    ClassLayers {
                        source: sa.as_ref(),
                        layers: layers_a,
                    },
                    ClassLayers {
                        source: sb.as_ref(),
                        layers: layers_b,
                    },
                ];
                if skip_reason(sides[0], sides[1]).is_some() {
                    continue;
                }
                let opts = RunOptions::default();
                let cells = |budget| gram::cells(cmp, class, cka, sides, &opts, budget).unwrap();
                let (Some(one), Some(many)) = (cells(gram::SLAB_BUDGET), cells(6 << 10)) else {
                    continue;
                };
                for (x, y) in one.values.iter().zip(&many.values) {
                    match (x, y) {
                        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-6 + 1e-12, "{class}"),
                        (None, None) => {}
                        _ => panic!("{class}: {x:?} vs {y:?}"),
                    }
                }
                compared += one.values.iter().flatten().count();
            }
        }
        // 2 classes × 6 × 4 cells × 2 axes.
        assert_eq!(compared, 2 * 24 * 2);
    }
}
