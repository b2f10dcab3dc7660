//! Layer grids of the built-in CKA from prepared sides (issue 17).
//!
//! Computing each cell with [`crate::measure::measure`] reads both tensors, centres them and
//! forms three Gram products per cell: O(L²) heavy products, each layer's own terms
//! recomputed L times (a 24 × 24 grid of 1024 × 1024 layers took 114 s on 2 cores). Here
//! the grid comes from [`weightkin_metrics::cka::gram`]: each layer of each side is prepared
//! (read, centred, row norms) and gives its Gram's lower triangle once, and a cell costs one
//! Frobenius inner product of two Grams.
//!
//! **Memory.** The Grams are cut into slabs so that A's slab of every layer fits
//! [`SLAB_BUDGET`]: for each slab, A's layers are prepared in parallel and their slabs held;
//! then B's layers are prepared in parallel, one slab each at a time per thread, and dotted
//! with every held slab. Each Gram entry is computed once; a layer is read and centred once
//! per slab (one slab for up to 5792 examples with 24 layers, so most classes read each
//! tensor once). Peak: the budget, plus per thread one layer's input, its centred copy and
//! one slab's product.
//!
//! **Same values as cell by cell.** The subsample of examples (`max-elements`), the reasons
//! a cell has no value and the debiasing are the per-pair CKA's; only the f32 rounding of
//! the Gram entries differs (a few 1e-6 at most after rounding: the workspace's
//! `tests/grids.rs`). A grid whose per-pair
//! cost is lower (very tall matrices, where the per-pair feature form is cheap) and every
//! metric other than the built-in CKA keep the cell-by-cell path.

use rayon::prelude::*;
use weightkin_core::{pair_pass, read_examples, ExampleSample, Metric, Side, Taps, Undefined};
use weightkin_metrics::cka::gram::{self, SideTerms, Slab};
use weightkin_metrics::cka::{self, Cka};

use super::ClassLayers;
use crate::recipe::{BuiltMetric, CompareSpec};
use crate::report::round;
use crate::{Error, RunOptions};

/// Bytes of Gram slabs held at once for A's layers (128 MiB): one slab for every class of a
/// 24-layer model with up to 5792 examples per layer; a 24-layer MLP class of 2816 rows
/// takes 3 slabs (its 24 triangles are 380 MB). Keeps a grid's peak resident memory under
/// the project's 300 MB target (BENCHMARKS.md, "CKA layer grids").
pub const SLAB_BUDGET: usize = 128 << 20;

/// The built-in CKA, when it is the grid's metric (a plugin cannot register its name).
pub(super) fn builtin_cka(metric: &BuiltMetric) -> Option<Cka> {
    if !std::ptr::eq(metric.spec, &cka::SPEC) {
        return None;
    }
    Cka::from_params(&metric.params).ok()
}

/// A grid's cells, row-major (A's layers × B's layers), and the subsample of examples
/// every cell was measured on.
pub(super) struct Cells {
    pub values: Vec<Option<f64>>,
    pub subsample: Option<ExampleSample>,
}

/// One layer of one side.
#[derive(Clone, Copy)]
struct Layer<'a> {
    side: Side<'a>,
    name: &'a str,
}

fn layers<'a>(c: &ClassLayers<'a>) -> Vec<Layer<'a>> {
    c.layers
        .values()
        .map(|(name, i)| Layer {
            side: Side::new(c.source, *i),
            name: name.as_str(),
        })
        .collect()
}

/// What every layer of the class is read as.
struct Reading<'a> {
    cmp: &'a CompareSpec,
    cka: Cka,
    shape: &'a [usize],
    numel: usize,
    /// `None`: whole tensors.
    sample: Option<ExampleSample>,
}

/// One layer's slab with its share of the layer's tr(KK), and on the first slab the
/// layer's terms (or why it has no CKA).
struct LayerSlab {
    slab: Option<(Slab, f64)>,
    terms: Option<Result<SideTerms, Undefined>>,
}

impl Reading<'_> {
    fn fail(&self, layer: Layer<'_>, source: weightkin_core::Error) -> Error {
        Error::Measure {
            compare: self.cmp.name.clone(),
            tensor: layer.name.to_owned(),
            source: Box::new(source),
        }
    }

    /// Elements read per layer and slab (for progress).
    fn read_numel(&self) -> usize {
        self.sample.map_or(self.numel, |s| s.len())
    }

    /// Reads and prepares `layer`, then computes its slab `rows`. On the first slab also
    /// the layer's terms; a layer found undefined there is not read again (`defined`).
    fn slab(
        &self,
        layer: Layer<'_>,
        rows: std::ops::Range<usize>,
        first: bool,
        defined: bool,
    ) -> Result<LayerSlab, Error> {
        if !defined {
            return Ok(LayerSlab {
                slab: None,
                terms: None,
            });
        }
        let (data, shape) = match &self.sample {
            None => (layer.side.read(self.numel), self.shape.to_vec()),
            Some(s) => (read_examples(layer.side, s), s.shape(self.shape)),
        };
        let data = data.map_err(|e| self.fail(layer, e))?;
        // The f32 copy is all that is needed now: hand the tensor's mapped pages back (a
        // hint; `read_examples` already does so as it goes), or a grid over every layer of
        // both models would keep both files resident (1.4 GB for the benchmark pair).
        if let Some(raw) = layer.side.raw() {
            raw.file.release(raw.bytes);
        }
        let mut prepared = self.cka.prepare(&data, &shape);
        drop(data);
        // A subsample's NaN/inf check covers the whole tensor, as the per-pair path's
        // moments (from the streaming pass over every element) do.
        if first && self.sample.is_some() && prepared.is_ok() {
            let pass = pair_pass(layer.side, layer.side, self.numel, &Taps::default())
                .map_err(|e| self.fail(layer, e))?;
            if !pass.moments.is_finite() {
                prepared = Err(Undefined::NonFinite);
            }
        }
        Ok(match prepared {
            Ok(p) => {
                let slab = p.slab(rows);
                let own = slab.dot(&slab);
                LayerSlab {
                    terms: first.then(|| Ok(p.terms())),
                    slab: Some((slab, own)),
                }
            }
            Err(why) => LayerSlab {
                slab: None,
                terms: first.then_some(Err(why)),
            },
        })
    }
}

/// The grid of the built-in CKA for one class from prepared sides, A's slabs held within
/// `budget` bytes ([`SLAB_BUDGET`]), or `None` where the cell-by-cell path is the one to take
/// (not a matrix, no example fits `max-elements`, or cheaper pair by pair).
pub(super) fn cells(
    cmp: &CompareSpec,
    class: &str,
    cka: Cka,
    [a, b]: [ClassLayers<'_>; 2],
    opts: &RunOptions<'_>,
    budget: usize,
) -> Result<Option<Cells>, Error> {
    let (la, lb) = (layers(&a), layers(&b));
    let Some(head) = la.first() else {
        return Ok(None);
    };
    let info = head.side.info();
    let shape = info.shape.as_slice();
    if shape.len() < 2 || info.numel == 0 {
        return Ok(None);
    }
    let sample = ExampleSample::plan(shape, cka.example_axis(), cka.max_elements());
    if sample.is_some_and(|s| s.is_empty()) {
        return Ok(None);
    }
    let (n, p) = match sample {
        Some(s) => (s.kept, s.features),
        None => match cka.examples {
            cka::Examples::Rows => (shape[0], info.numel / shape[0]),
            cka::Examples::Columns => (info.numel / shape[0], shape[0]),
        },
    };
    let slabs = gram::slabs(n, la.len(), budget);
    if gram::grid_cost(n, p, la.len(), lb.len(), slabs.len())
        > gram::per_pair_cost(n, p, la.len(), lb.len())
    {
        return Ok(None);
    }
    let reading = Reading {
        cmp,
        cka,
        shape,
        numel: info.numel,
        sample,
    };
    let step = reading.read_numel() as u64;
    opts.progress.start(
        &format!("grid {class}"),
        ((la.len() + lb.len()) * slabs.len()) as u64 * step,
        "elements",
    );
    let mut terms_a: Vec<Result<SideTerms, Undefined>> = Vec::new();
    let mut terms_b: Vec<Result<SideTerms, Undefined>> = Vec::new();
    let mut cross = vec![0f64; la.len() * lb.len()];
    for (k, rows) in slabs.iter().enumerate() {
        let first = k == 0;
        let defined = |terms: &[Result<SideTerms, Undefined>], i: usize| {
            terms.get(i).is_none_or(Result::is_ok)
        };
        let held = la
            .par_iter()
            .enumerate()
            .map(|(i, layer)| {
                opts.checkpoint()?;
                let s = reading.slab(*layer, rows.clone(), first, defined(&terms_a, i))?;
                opts.progress.advance(step);
                Ok(s)
            })
            .collect::<Result<Vec<LayerSlab>, Error>>()?;
        trim_heap();
        let streamed = lb
            .par_iter()
            .enumerate()
            .map(|(j, layer)| {
                opts.checkpoint()?;
                let s = reading.slab(*layer, rows.clone(), first, defined(&terms_b, j))?;
                let dots = s.slab.as_ref().map(|(sb, own)| {
                    let with_a: Vec<f64> = held
                        .iter()
                        .map(|h| h.slab.as_ref().map_or(0.0, |(sa, _)| sa.dot(sb)))
                        .collect();
                    (*own, with_a)
                });
                opts.progress.advance(step);
                Ok((s.terms, dots))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for (i, h) in held.into_iter().enumerate() {
            if let Some(t) = h.terms {
                terms_a.push(t);
            }
            if let (Some(Ok(t)), Some((_, own))) = (terms_a.get_mut(i), &h.slab) {
                t.add_self_trace(*own);
            }
        }
        for (j, (t, dots)) in streamed.into_iter().enumerate() {
            if let Some(t) = t {
                terms_b.push(t);
            }
            let Some((own, with_a)) = dots else { continue };
            if let Some(Ok(t)) = terms_b.get_mut(j) {
                t.add_self_trace(own);
            }
            for (i, d) in with_a.into_iter().enumerate() {
                cross[i * lb.len() + j] += d;
            }
        }
        trim_heap();
    }
    opts.progress.finish();
    let values = cross
        .iter()
        .enumerate()
        .map(
            |(c, &x)| match (&terms_a[c / lb.len()], &terms_b[c % lb.len()]) {
                (Ok(ta), Ok(tb)) => cka.from_terms(ta, tb, x).value().map(round),
                _ => None,
            },
        )
        .collect();
    Ok(Some(Cells {
        values,
        subsample: sample,
    }))
}

/// Hands the C allocator's free memory back to the system (`malloc_trim`, glibc): after the
/// phase that prepared A's layers and after each slab. Their per-layer buffers (a layer's
/// f32 copy, its centred copy, one slab's product: tens of MB each, per thread) are freed by
/// then, but glibc keeps such blocks in its heaps once its mmap threshold has risen, and
/// the next phase's buffers of other sizes do not reuse them: 150–170 MB of a full-model
/// grid's peak (BENCHMARKS.md, "CKA layer grids"). Nothing elsewhere.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap memory to the system; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}
