//! Measure: each tensor pair streamed once. Every moment-based metric comes from the same
//! single pass ([`pair_pass`]), which also keeps what later stages ask for on the way
//! ([`Taps`]: the calibration subsample, the BF16 ULP histogram, file hashing); tensor
//! metrics (CKA) read whole tensors, or an evenly strided subset of whole examples above
//! their bound. [`pairs`] measures a comparison's pairs in batches; [`grid`] computes layer ×
//! layer grids from the same [`measure`].

pub mod grid;
pub mod pairs;

use weightkin_core::{
    pair_pass, read_examples, ExampleSample, Input, MetricValue, Moments, Needs, Samples, Taps,
    Tensors, Undefined,
};

use crate::recipe::{BuiltMetric, CompareSpec};
use crate::Error;

// The side of a pair lives in core, where the pass and the readers take it; re-exported so
// that `measure::Side` keeps naming it.
pub use weightkin_core::Side;

/// One metric's result on one pair.
pub struct MetricResult {
    /// Metric name.
    pub name: &'static str,
    /// Its value.
    pub value: MetricValue,
    /// Its values under the metric's own null (empty if it has none).
    pub null: Vec<f64>,
    /// The subset of examples a tensor metric was evaluated on, when the pair was larger
    /// than the metric's [`weightkin_core::Metric::max_elements`] (`None`: whole tensors, or
    /// a moment metric).
    pub subsample: Option<ExampleSample>,
}

/// What [`measure`] gives for one tensor pair.
pub struct Measurement {
    /// Moments of the whole pair.
    pub moments: Moments,
    /// One result per metric, in the order asked.
    pub results: Vec<MetricResult>,
    /// The calibration subsample, when asked for ([`Taps::samples`]).
    pub samples: Option<Samples>,
    /// BF16 ULP statistics, when asked for ([`Taps::ulp`]) and both sides are BF16.
    pub ulp: Option<weightkin_core::UlpStats>,
    /// Both sides' magnitudes, when asked for ([`Taps::magnitudes`]).
    pub magnitudes: Option<[weightkin_core::Magnitudes; 2]>,
}

/// Measures one tensor pair with `metrics`.
///
/// * Moment metrics only: one streaming pass ([`pair_pass`]), keeping what `taps` asks for
///   on the way.
/// * A metric that needs tensors, and the pair fits every such metric's
///   [`weightkin_core::Metric::max_elements`]: both tensors read whole; moments and samples
///   come from the same in-memory data, exactly as the streaming pass computes them.
/// * A pair larger than some tensor metric's bound: the streaming pass, exactly as for
///   moment metrics (so moments, samples, ULP statistics and hashing do not depend on the
///   metrics asked for), then each tensor metric on the tensors whole if they fit its bound,
///   else on the same evenly strided subset of whole examples of both
///   ([`ExampleSample`], read by [`read_examples`]). One metric's input is held at a time, so
///   the working memory is bounded by the largest bound, whatever the tensor size.
pub fn measure(
    cmp: &CompareSpec,
    metrics: &[BuiltMetric],
    a: Side<'_>,
    b: Side<'_>,
    name: &str,
    taps: &Taps,
) -> Result<Measurement, Error> {
    let pair = PairInput { cmp, a, b, name };
    let tensor_metrics: Vec<&BuiltMetric> = metrics
        .iter()
        .filter(|m| m.spec.needs == Needs::Tensors)
        .collect();
    if !tensor_metrics.is_empty() && tensor_metrics.iter().all(|m| pair.plan(m).is_none()) {
        pair.whole(metrics, taps)
    } else {
        pair.streamed(metrics, taps)
    }
}

/// A tensor metric's input.
fn with_tensors<'t>(
    moments: &'t Moments,
    a: &'t [f32],
    b: &'t [f32],
    shape: &'t [usize],
) -> Input<'t> {
    Input {
        moments,
        tensors: Some(Tensors { a, b, shape }),
    }
}

/// One pair being measured, and what its errors name.
struct PairInput<'p> {
    cmp: &'p CompareSpec,
    a: Side<'p>,
    b: Side<'p>,
    name: &'p str,
}

impl PairInput<'_> {
    fn fail(&self, source: weightkin_core::Error) -> Error {
        Error::Measure {
            compare: self.cmp.name.clone(),
            tensor: self.name.to_owned(),
            source: Box::new(source),
        }
    }

    fn shape(&self) -> &[usize] {
        &self.a.info().shape
    }

    /// How a tensor metric sees this pair: `None` whole, else a subsample.
    fn plan(&self, m: &BuiltMetric) -> Option<ExampleSample> {
        ExampleSample::plan(
            self.shape(),
            m.metric.example_axis(),
            m.metric.max_elements(),
        )
    }

    /// Both tensors whole, as f32.
    fn read_both(&self) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let numel = self.a.info().numel;
        let (va, vb) = rayon::join(|| self.a.read(numel), || self.b.read(numel));
        Ok((va.map_err(|e| self.fail(e))?, vb.map_err(|e| self.fail(e))?))
    }

    /// One metric on `input`. `try_evaluate`: a metric running foreign code (a shared-library
    /// plugin) that fails stops the audit with the plugin's own message, rather than leaving
    /// a silent gap.
    fn evaluate(
        &self,
        m: &BuiltMetric,
        input: &Input<'_>,
        subsample: Option<ExampleSample>,
    ) -> Result<MetricResult, Error> {
        Ok(MetricResult {
            name: m.spec.name,
            value: m.metric.try_evaluate(input).map_err(|e| self.fail(e))?,
            null: m.metric.null_samples(input),
            subsample,
        })
    }

    /// Every tensor metric fits its bound: both tensors read whole, and moments, samples and
    /// ULP statistics come from the same in-memory data, exactly as the pass computes them.
    fn whole(&self, metrics: &[BuiltMetric], taps: &Taps) -> Result<Measurement, Error> {
        let (va, vb) = self.read_both()?;
        let moments = Moments::of_tensors(&va, &vb);
        let input = with_tensors(&moments, &va, &vb, self.shape());
        let results = metrics
            .iter()
            .map(|m| self.evaluate(m, &input, None))
            .collect::<Result<Vec<_>, Error>>()?;
        let (a, b) = (self.a, self.b);
        Ok(Measurement {
            moments,
            results,
            samples: taps
                .samples
                .and_then(|budget| Samples::of_tensors(&va, &vb, budget)),
            ulp: taps
                .ulp
                .and_then(|budget| weightkin_core::bf16_ulp_sampled(a, b, budget)),
            magnitudes: taps.magnitudes.then(|| {
                [
                    weightkin_core::Magnitudes::of_f32(&va),
                    weightkin_core::Magnitudes::of_f32(&vb),
                ]
            }),
        })
    }

    /// The streaming pass, then each tensor metric on whole tensors or a subsample of whole
    /// examples.
    fn streamed(&self, metrics: &[BuiltMetric], taps: &Taps) -> Result<Measurement, Error> {
        let (a, b) = (self.a, self.b);
        let pass = pair_pass(a, b, a.info().numel, taps).map_err(|e| self.fail(e))?;
        let results = metrics
            .iter()
            .map(|m| self.after_pass(m, &pass.moments))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Measurement {
            moments: pass.moments,
            results,
            samples: pass.samples,
            ulp: pass.ulp,
            magnitudes: pass.magnitudes,
        })
    }

    /// One metric after the streaming pass: a moment metric from the pass's moments, a
    /// tensor metric on whole tensors if they fit its bound (another's is smaller), else on
    /// its subsample of whole examples.
    fn after_pass(&self, m: &BuiltMetric, moments: &Moments) -> Result<MetricResult, Error> {
        if m.spec.needs != Needs::Tensors {
            let input = Input {
                moments,
                tensors: None,
            };
            return self.evaluate(m, &input, None);
        }
        let Some(sample) = self.plan(m) else {
            let (va, vb) = self.read_both()?;
            return self.evaluate(m, &with_tensors(moments, &va, &vb, self.shape()), None);
        };
        if sample.is_empty() {
            return Ok(MetricResult {
                name: m.spec.name,
                value: MetricValue::Undefined(Undefined::ExampleTooLarge),
                null: Vec::new(),
                subsample: None,
            });
        }
        let (a, b) = (self.a, self.b);
        let (va, vb) = rayon::join(|| read_examples(a, &sample), || read_examples(b, &sample));
        let (va, vb) = (va.map_err(|e| self.fail(e))?, vb.map_err(|e| self.fail(e))?);
        let shape = sample.shape(self.shape());
        self.evaluate(m, &with_tensors(moments, &va, &vb, &shape), Some(sample))
    }
}

/// Largest tensor whose distinct values are counted to recognise a structured buffer.
const STRUCTURE_CHECK_MAX: usize = 1 << 22;

/// Most distinct values a structured tensor takes.
pub const STRUCTURE_MAX_DISTINCT: usize = 256;

/// Whether the tensor takes few distinct values: what a mask, an index table or a fixed
/// basis looks like, and a trained weight does not. Only called for tensors identical in both
/// models. See [`distinct_limit`].
pub fn structured(side: Side<'_>) -> bool {
    let info = side.info();
    if info.numel > STRUCTURE_CHECK_MAX {
        return false;
    }
    few_distinct(side, info.numel, distinct_limit(info.numel, info.dtype))
}

/// How many distinct values a tensor of `numel` elements stored as `dtype` may take and still
/// be structured: n/50, at least 16 and at most [`STRUCTURE_MAX_DISTINCT`] — a trained
/// weight of a thousand elements or more takes thousands (even in BF16, whose 7-bit mantissa
/// gives a normal distribution about 8 000 values, which a bare n/50 called structured above
/// 400 000 elements) — and at most a sixteenth of the values the dtype can represent (an FP8
/// weight uses most of its 256 codes; a 0/1 mask in FP8 still has 2).
pub fn distinct_limit(numel: usize, dtype: weightkin_core::Dtype) -> usize {
    let codes = 1u64.checked_shl(dtype.bits() as u32).unwrap_or(u64::MAX);
    let by_dtype = usize::try_from(codes / 16).unwrap_or(usize::MAX);
    (numel / 50)
        .clamp(16, STRUCTURE_MAX_DISTINCT)
        .min(by_dtype)
        .max(1)
}

/// Whether the tensor's `numel` values take at most `limit` distinct bit patterns. Reads
/// chunk by chunk and stops at the first value past the limit, so a trained weight (every
/// value distinct) costs a read of about `limit` values, not a read and sort of the whole
/// tensor (issue 17: the sort was 59 % of comparing a model with its exact dequantisation).
fn few_distinct(side: Side<'_>, numel: usize, limit: usize) -> bool {
    let few = count_distinct_up_to(side, numel, limit);
    // The whole tensor, not only the part read: a page fault maps the whole page-cache folio
    // around the page it needs, which reaches past a chunk (see `generated::Lazy`'s drop).
    side.source.release(side.index, 0, numel);
    few
}

/// [`few_distinct`]'s count, without the release.
fn count_distinct_up_to(side: Side<'_>, numel: usize, limit: usize) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(limit.min(1 << 12) + 1);
    let mut buf = vec![0f32; weightkin_core::CHUNK.min(numel)];
    let mut start = 0;
    while start < numel {
        let n = (numel - start).min(buf.len());
        let out = &mut buf[..n];
        if side.read_f32(start, out).is_err() {
            return false;
        }
        for v in out.iter() {
            if seen.insert(v.to_bits()) && seen.len() > limit {
                return false;
            }
        }
        start += n;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
    use weightkin_core::Limits;

    /// Above CKA's `max-elements`, a pair's moments, calibration samples and ULP statistics
    /// are exactly those of the moment-only pass, and only CKA sees a subsample; at or below
    /// it, the whole tensors are read, as before.
    #[test]
    fn above_the_cap_the_measurement_is_the_moment_only_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols) = (96, 40);
        let data = |seed: u64| uniform_f32(rows * cols, seed, -0.5, 0.5);
        let (x, e) = (data(1), data(2));
        let y: Vec<f32> = x.iter().zip(&e).map(|(x, e)| x + 0.3 * e).collect();
        for (name, v) in [("a", &x), ("b", &y)] {
            SafetensorsBuilder::new()
                .tensor_bf16("w", &[rows, cols], v)
                .write(&dir.path().join(format!("{name}.safetensors")))
                .unwrap();
        }
        let registry = crate::registry::builtin().unwrap();
        let text = |cap: usize| {
            format!(
                "[audit]\nname = \"t\"\n[models.a]\npath = \"a.safetensors\"\n\
                 [models.b]\npath = \"b.safetensors\"\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\nmetrics = [\"cosine\", \"pearson\", \"cka\"]\n\
                 [compare.params.cka]\nmax-elements = {cap}\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\nmetrics = [\"cosine\", \"pearson\"]\n"
            )
        };
        let path = dir.path().join("r.toml");
        let open = |m: &str| {
            registry
                .open(&dir.path().join(m), None, &Limits::default())
                .unwrap()
        };
        let (a, b) = (open("a.safetensors"), open("b.safetensors"));
        let (x, y) = (Side::new(a.as_ref(), 0), Side::new(b.as_ref(), 0));
        let taps = Taps {
            samples: Some(CHUNK_BUDGET),
            ulp: Some(CHUNK_BUDGET),
            observer: None,
            magnitudes: true,
            ..Default::default()
        };
        for (cap, subsampled) in [(1024, true), (rows * cols, false)] {
            let recipe = crate::recipe::parse(&path, &text(cap), &registry).unwrap();
            let [with_cka, moments_only] = &recipe.compares[..] else {
                panic!("two compares");
            };
            let m = |c: &CompareSpec| measure(c, &c.metrics, x, y, "w", &taps).unwrap();
            let (got, want) = (m(with_cka), m(moments_only));
            let pass = pair_pass(x, y, rows * cols, &taps).unwrap();
            assert_eq!(got.moments, want.moments, "cap {cap}");
            assert_eq!(got.moments, pass.moments, "cap {cap}");
            assert_eq!(got.ulp, want.ulp);
            assert!(got.ulp.is_some());
            // The whole-tensor and streamed paths keep the same magnitudes.
            assert_eq!(got.magnitudes, want.magnitudes);
            assert_eq!(got.magnitudes, pass.magnitudes);
            assert!(got.magnitudes.is_some());
            for (r, w) in got.results.iter().zip(&want.results) {
                assert_eq!((r.name, r.value), (w.name, w.value));
                assert!(r.subsample.is_none());
            }
            let cka = &got.results[2];
            assert_eq!(cka.subsample.is_some(), subsampled, "cap {cap}");
            if subsampled {
                // The pass's own samples (stored BF16), not a copy of in-memory tensors.
                assert_eq!(got.samples, pass.samples);
                let s = cka.subsample.unwrap();
                assert_eq!((s.kept, s.examples, s.features), (25, 96, 40));
            } else {
                let (va, vb) = (x.read(rows * cols).unwrap(), y.read(rows * cols).unwrap());
                assert_eq!(got.samples, Samples::of_tensors(&va, &vb, CHUNK_BUDGET));
            }
            assert!(cka.value.value().is_some());
        }
    }

    const CHUNK_BUDGET: usize = weightkin_core::CHUNK;

    /// The limit: n/50 within [16, 256], and a sixteenth of the dtype's codes.
    #[test]
    fn distinct_limit_by_size_and_dtype() {
        use weightkin_core::Dtype;
        assert_eq!(distinct_limit(4, Dtype::F32), 16);
        assert_eq!(distinct_limit(5000, Dtype::F32), 100);
        assert_eq!(distinct_limit(1 << 20, Dtype::F32), 256);
        assert_eq!(distinct_limit(1 << 20, Dtype::BF16), 256);
        assert_eq!(distinct_limit(1 << 20, Dtype::F8_E4M3), 16);
        assert_eq!(distinct_limit(1 << 20, Dtype::F4), 1);
    }

    /// A BF16 weight of a million normal values takes thousands of distinct values, though
    /// fewer than n/50: not structured (it was, before the limit's ceiling).
    #[test]
    fn a_bf16_trained_weight_is_not_structured() {
        let dir = tempfile::tempdir().unwrap();
        let n = 1 << 20;
        // Sums of uniforms: close to normal, as trained weights are.
        let u: Vec<Vec<f32>> = (0..4)
            .map(|s| uniform_f32(n, 20 + s, -0.05, 0.05))
            .collect();
        let w: Vec<f32> = (0..n).map(|i| u.iter().map(|v| v[i]).sum()).collect();
        let bits: std::collections::HashSet<u16> =
            w.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
        assert!(bits.len() > 256 && bits.len() < n / 50, "{}", bits.len());
        let path = dir.path().join("w.safetensors");
        SafetensorsBuilder::new()
            .tensor_bf16("w", &[1024, 1024], &w)
            .write(&path)
            .unwrap();
        let registry = crate::registry::builtin().unwrap();
        let src = registry.open(&path, None, &Limits::default()).unwrap();
        assert!(!structured(Side::new(src.as_ref(), 0)));
    }

    /// A tensor is structured when it takes at most the limit's distinct values, counted
    /// across chunk boundaries; one value more and it is not.
    #[test]
    fn structured_counts_distinct_values_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * weightkin_core::CHUNK + 7;
        let limit = distinct_limit(n, weightkin_core::Dtype::F32);
        assert_eq!(limit, STRUCTURE_MAX_DISTINCT);
        // `limit` distinct values, spread so that each chunk sees only some of them.
        let at_limit: Vec<f32> = (0..n).map(|i| (i % limit) as f32).collect();
        let mut over = at_limit.clone();
        over[n - 1] = -1.0; // one more distinct value, in the last chunk
        let noise = uniform_f32(n, 9, -1.0, 1.0);
        let path = dir.path().join("s.safetensors");
        SafetensorsBuilder::new()
            .tensor_f32("at", &[n], &at_limit)
            .tensor_f32("over", &[n], &over)
            .tensor_f32("noise", &[n], &noise)
            .tensor_f32("few", &[4], &[0.0, 1.0, 0.0, 1.0])
            .write(&path)
            .unwrap();
        let registry = crate::registry::builtin().unwrap();
        let src = registry.open(&path, None, &Limits::default()).unwrap();
        let index = |name: &str| src.tensors().iter().position(|t| t.name == name).unwrap();
        let is = |name: &str| structured(Side::new(src.as_ref(), index(name)));
        assert!(is("at"));
        assert!(!is("over"));
        assert!(!is("noise"));
        assert!(is("few"));
    }
}
