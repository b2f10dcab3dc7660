//! Linear centered kernel alignment (CKA) between two weight matrices.
//!
//! Rows are examples and columns features by default (`examples = "columns"` swaps them):
//! for a weight `W[out, in]` that compares the `out` units' incoming weight vectors. Tensors
//! of rank > 2 are flattened to `[shape[0], rest]`.
//!
//! **Estimator.** The default is the *debiased* estimator (unbiased HSIC, Song et al. 2012,
//! as used by Kornblith et al. 2019 and Nguyen et al. 2021): biased linear CKA has a high
//! floor on near-square weight matrices — 0.16–0.38 measured between a random and a trained
//! 384×384 matrix — which is exactly the kind of number that misleads. `estimator = "biased"`
//! gives the classic value.
//!
//! **Invariances.** CKA is invariant to orthogonal transforms and to isotropic scaling of the
//! feature axis (columns): rotating the input space of a layer, or scaling a whole matrix,
//! leaves it unchanged. It is *not* invariant to permuting the examples (rows): rows are
//! matched by index, so a model whose hidden units were permuted compares as unrelated
//! unless the permutation is undone first. Shifting a column is removed by centring.
//!
//! **Computation.** Columns are centred in f64; then the traces tr(KL), tr(KK), tr(LL) of the
//! linear Gram matrices come from whichever form is cheaper — the feature form
//! ‖XᵀY‖²_F (cost n·(p²+q²+pq)) or the sample form ⟨XXᵀ, YYᵀ⟩_F (cost n²·(p+q)) — with the
//! matrix products in f32 through candle-core's CPU matmul (CUDA with the `cuda` feature) and
//! every reduction in f64. The debiased correction (which subtracts nearly equal large terms)
//! runs entirely in f64. Values are rounded to 6 decimals, the accuracy of f32 Gram products,
//! so that reports do not carry matmul rounding noise.
//!
//! **Memory bound.** CKA is given at most `max-elements` elements per tensor (default
//! [`DEFAULT_MAX_ELEMENTS`], 16 Mi). A larger pair is measured on the same evenly strided
//! subset of whole examples of both tensors — rows, or columns with `examples = "columns"` —
//! chosen and read by the executor ([`weightkin_core::ExampleSample`]); the debiased
//! estimator is unbiased on a subset of examples, so the value estimates the same quantity,
//! and the report marks it. Each Gram matrix (the cheaper of n × n and p × p) then holds at
//! most 1.5 × `max-elements` elements.

pub mod gram;

use candle_core::{Device, Tensor};
use weightkin_core::rng::Rng;
use weightkin_core::{
    Error, ExampleAxis, Input, Metric, MetricSpec, MetricValue, Needs, ParamProblem, ParamValue,
    Params, Result, Undefined, DEFAULT_MAX_ELEMENTS,
};

/// Name used in recipes.
pub const NAME: &str = "cka";

/// Registration entry.
pub static SPEC: MetricSpec = MetricSpec {
    name: NAME,
    doc: "linear CKA of two weight matrices (rows = examples by default; debiased estimator by \
          default); invariant to orthogonal transforms and isotropic scaling of the feature \
          axis, not to permuting rows",
    range: (-1.0, 1.0),
    symmetric: true,
    identity: Some(1.0),
    params: &["estimator", "examples", "permutations", "max-elements"],
    needs: Needs::Tensors,
    build: &build,
};

/// Which HSIC estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// Unbiased HSIC (Song et al. 2012): no floor for unrelated matrices.
    Debiased,
    /// The classic biased HSIC.
    Biased,
}

/// Which axis holds the examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Examples {
    /// Rows are examples (`W[out, in]`: one example per output unit).
    Rows,
    /// Columns are examples.
    Columns,
}

fn string_param<T>(
    params: &Params,
    key: &'static str,
    expected: &'static str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    match params.get(key) {
        None => Ok(default),
        Some(ParamValue::String(s)) => parse(s).ok_or(Error::InvalidParam {
            metric: NAME,
            param: key.to_owned(),
            problem: ParamProblem::BadValue { expected },
        }),
        Some(_) => Err(Error::InvalidParam {
            metric: NAME,
            param: key.to_owned(),
            problem: ParamProblem::BadValue { expected },
        }),
    }
}

fn build(params: &Params) -> Result<Box<dyn Metric>> {
    Ok(Box::new(Cka::from_params(params)?))
}

impl Cka {
    /// Validates a recipe's `params.cka` table and builds the metric: what the registry's
    /// build function does, typed, for the runner's layer grids ([`gram`]), which compute
    /// the built-in CKA from prepared sides.
    pub fn from_params(params: &Params) -> Result<Cka> {
        SPEC.check_param_names(params)?;
        let estimator = string_param(
            params,
            "estimator",
            "\"debiased\" or \"biased\"",
            Estimator::Debiased,
            |s| match s {
                "debiased" => Some(Estimator::Debiased),
                "biased" => Some(Estimator::Biased),
                _ => None,
            },
        )?;
        let examples = string_param(
            params,
            "examples",
            "\"rows\" or \"columns\"",
            Examples::Rows,
            |s| match s {
                "rows" => Some(Examples::Rows),
                "columns" => Some(Examples::Columns),
                _ => None,
            },
        )?;
        let permutations = match params.get("permutations") {
            None => DEFAULT_PERMUTATIONS,
            Some(ParamValue::Integer(k)) if (0..=MAX_PERMUTATIONS).contains(k) => *k as usize,
            Some(_) => {
                return Err(Error::InvalidParam {
                    metric: NAME,
                    param: "permutations".to_owned(),
                    problem: ParamProblem::BadValue {
                        expected: "an integer from 0 to 64",
                    },
                })
            }
        };
        let max_elements = match params.get("max-elements") {
            None => DEFAULT_MAX_ELEMENTS,
            Some(ParamValue::Integer(k)) if *k >= MIN_MAX_ELEMENTS => {
                usize::try_from(*k).unwrap_or(usize::MAX)
            }
            Some(_) => {
                return Err(Error::InvalidParam {
                    metric: NAME,
                    param: "max-elements".to_owned(),
                    problem: ParamProblem::BadValue {
                        expected: "an integer of at least 1024 (elements per tensor)",
                    },
                })
            }
        };
        Ok(Cka {
            estimator,
            examples,
            permutations,
            max_elements,
        })
    }
}

/// Smallest `max-elements` a recipe may set.
pub const MIN_MAX_ELEMENTS: i64 = 1024;

/// Row permutations for the permutation null, by default. Each costs one more CKA.
pub const DEFAULT_PERMUTATIONS: usize = 4;

/// Most permutations a recipe may ask for.
pub const MAX_PERMUTATIONS: i64 = 64;

/// The built metric.
#[derive(Debug, Clone, Copy)]
pub struct Cka {
    /// Estimator.
    pub estimator: Estimator,
    /// Example axis.
    pub examples: Examples,
    /// Permutations of B's examples for the permutation null (0: none).
    pub permutations: usize,
    /// Most elements per tensor CKA is given: a larger pair is measured on an evenly strided
    /// subset of whole examples (see [`Metric::max_elements`]). Parameter `max-elements`,
    /// default [`DEFAULT_MAX_ELEMENTS`].
    pub max_elements: usize,
}

impl Metric for Cka {
    fn example_axis(&self) -> ExampleAxis {
        match self.examples {
            Examples::Rows => ExampleAxis::Rows,
            Examples::Columns => ExampleAxis::Columns,
        }
    }

    fn max_elements(&self) -> usize {
        self.max_elements
    }

    fn evaluate(&self, input: &Input<'_>) -> MetricValue {
        let Some(t) = input.tensors else {
            return MetricValue::Undefined(Undefined::BackendFailed);
        };
        if t.a.is_empty() {
            return MetricValue::Undefined(Undefined::Empty);
        }
        if !input.moments.is_finite() {
            return MetricValue::Undefined(Undefined::NonFinite);
        }
        if t.shape.len() < 2 {
            return MetricValue::Undefined(Undefined::NotAMatrix);
        }
        let rows = t.shape[0];
        let cols = t.a.len() / rows.max(1);
        match cka(t.a, t.b, rows, cols, self.examples, self.estimator) {
            Ok(v) => v,
            Err(_) => MetricValue::Undefined(Undefined::BackendFailed),
        }
    }

    /// CKA with B's examples permuted by `permutations` fixed pseudo-random permutations
    /// (seeds 1, 2, …): the correspondence between A's and B's examples is destroyed, every
    /// other property of both matrices kept.
    fn null_samples(&self, input: &Input<'_>) -> Vec<f64> {
        let Some(t) = input.tensors else {
            return Vec::new();
        };
        if t.shape.len() < 2 || t.a.is_empty() || !input.moments.is_finite() {
            return Vec::new();
        }
        let rows = t.shape[0];
        let cols = t.a.len() / rows.max(1);
        let (n, p) = match self.examples {
            Examples::Rows => (rows, cols),
            Examples::Columns => (cols, rows),
        };
        (1..=self.permutations as u64)
            .filter_map(|seed| {
                // A fixed pseudo-random permutation per seed (the workspace's seeded PRNG).
                let perm = Rng::new(seed).permutation(n);
                let mut b = vec![0f32; t.b.len()];
                for (dst, &src) in perm.iter().enumerate() {
                    for j in 0..p {
                        let (d, s) = match self.examples {
                            Examples::Rows => (dst * p + j, src * p + j),
                            Examples::Columns => (j * n + dst, j * n + src),
                        };
                        b[d] = t.b[s];
                    }
                }
                cka(t.a, &b, rows, cols, self.examples, self.estimator)
                    .ok()
                    .and_then(MetricValue::value)
            })
            .collect()
    }
}

/// Column-centred copy of a row-major `n × p` matrix (examples × features), centred in f64.
fn centred(x: &[f32], n: usize, p: usize, examples: Examples) -> Vec<f32> {
    // Work in examples × features orientation.
    let get = |i: usize, j: usize| match examples {
        Examples::Rows => x[i * p + j],
        Examples::Columns => x[j * n + i],
    };
    let mut means = vec![0f64; p];
    for i in 0..n {
        for (j, m) in means.iter_mut().enumerate() {
            *m += f64::from(get(i, j));
        }
    }
    for m in &mut means {
        *m /= n as f64;
    }
    let mut out = vec![0f32; n * p];
    for i in 0..n {
        for j in 0..p {
            out[i * p + j] = (f64::from(get(i, j)) - means[j]) as f32;
        }
    }
    out
}

fn device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    Device::Cpu
}

/// A tensor's elements (flattened); the tensor itself is dropped once they are copied out.
fn into_vec(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Σ of squares, in f64.
fn frob2(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

/// Σ of the element-wise product, in f64.
fn frob_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Traces tr(KL), tr(KK), tr(LL) of the linear Gram matrices of centred `x` (n × p) and
/// `y` (n × q), from the cheaper form. Each matrix is dropped as soon as it is no longer
/// needed, so that at most two Gram-sized buffers live at once besides the inputs.
fn traces(
    x: Vec<f32>,
    y: Vec<f32>,
    n: usize,
    p: usize,
    q: usize,
) -> candle_core::Result<(f64, f64, f64)> {
    let dev = device();
    // `from_vec`: on the CPU the matrices are moved in, not copied.
    let xt = Tensor::from_vec(x, (n, p), &dev)?;
    let yt = Tensor::from_vec(y, (n, q), &dev)?;
    let (n64, p64, q64) = (n as f64, p as f64, q as f64);
    let feature_cost = n64 * (p64 * p64 + q64 * q64 + p64 * q64);
    let sample_cost = n64 * n64 * (p64 + q64);
    if feature_cost <= sample_cost {
        let xx = frob2(&into_vec(xt.t()?.matmul(&xt)?)?);
        let yy = frob2(&into_vec(yt.t()?.matmul(&yt)?)?);
        let xy = frob2(&into_vec(xt.t()?.matmul(&yt)?)?);
        Ok((xy, xx, yy))
    } else {
        let k = xt.matmul(&xt.t()?)?;
        drop(xt);
        let k = into_vec(k)?;
        let l = yt.matmul(&yt.t()?)?;
        drop(yt);
        let l = into_vec(l)?;
        Ok((frob_dot(&k, &l), frob2(&k), frob2(&l)))
    }
}

/// Squared row norms of a row-major `n × p` matrix, in f64.
fn row_norms(x: &[f32], p: usize) -> Vec<f64> {
    x.chunks(p.max(1))
        .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect()
}

/// Linear CKA of two equally shaped row-major `rows × cols` matrices.
pub fn cka(
    a: &[f32],
    b: &[f32],
    rows: usize,
    cols: usize,
    examples: Examples,
    estimator: Estimator,
) -> candle_core::Result<MetricValue> {
    let (n, p) = match examples {
        Examples::Rows => (rows, cols),
        Examples::Columns => (cols, rows),
    };
    if estimator == Estimator::Debiased && n < 4 {
        return Ok(MetricValue::Undefined(Undefined::TooFewExamples));
    }
    if n < 2 {
        return Ok(MetricValue::Undefined(Undefined::TooFewExamples));
    }
    let x = centred(a, n, p, examples);
    let y = centred(b, n, p, examples);
    // Squared row norms of the centred examples, for the debiased estimator.
    let norms = (estimator == Estimator::Debiased).then(|| (row_norms(&x, p), row_norms(&y, p)));
    let (t_xy, t_xx, t_yy) = traces(x, y, n, p, p)?;
    let norms = norms
        .as_ref()
        .map(|(dx, dy)| (dx.as_slice(), dy.as_slice()));
    Ok(from_traces(n, [t_xy, t_xx, t_yy], norms))
}

/// CKA from the traces `[tr(KL), tr(KK), tr(LL)]` of the linear Gram matrices of two
/// centred `n`-example matrices and, for the debiased estimator, the squared row norms of
/// each (`None`: biased). Shared by [`cka`] and the layer grids ([`gram`]), so that the
/// two differ only in how the traces were computed.
pub(crate) fn from_traces(
    n: usize,
    [t_xy, t_xx, t_yy]: [f64; 3],
    norms: Option<(&[f64], &[f64])>,
) -> MetricValue {
    let (h_xy, h_xx, h_yy) = match norms {
        None => (t_xy, t_xx, t_yy),
        Some((dx, dy)) => {
            // Kornblith et al.'s feature-space form of the unbiased HSIC for centred
            // features (the common factor 1/(n(n−3)) cancels in the ratio):
            // tr(KL) − n/(n−2)·⟨diag K, diag L⟩ + tr(K)·tr(L)/((n−1)(n−2)).
            let (sx, sy) = (dx.iter().sum::<f64>(), dy.iter().sum::<f64>());
            let nf = n as f64;
            let h = |t: f64, d1: &[f64], d2: &[f64], s1: f64, s2: f64| {
                let dot: f64 = d1.iter().zip(d2).map(|(u, v)| u * v).sum();
                t - nf / (nf - 2.0) * dot + s1 * s2 / ((nf - 1.0) * (nf - 2.0))
            };
            (
                h(t_xy, dx, dy, sx, sy),
                h(t_xx, dx, dx, sx, sx),
                h(t_yy, dy, dy, sy, sy),
            )
        }
    };
    if !(h_xx > 0.0 && h_yy > 0.0) {
        return MetricValue::Undefined(Undefined::Constant);
    }
    let v = (h_xy / (h_xx * h_yy).sqrt()).clamp(-1.0, 1.0);
    MetricValue::Value((v * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `n` values uniform in (−½, ½].
    fn data(n: usize, seed: u64) -> Vec<f32> {
        weightkin_core::testing::uniform_f32(n, seed, -0.5, 0.5)
    }

    /// Reference: explicit n × n Gram matrices in f64 with Kornblith's `center_gram`.
    fn reference(a: &[f32], b: &[f32], n: usize, p: usize, debiased: bool) -> f64 {
        let gram = |x: &[f32]| {
            let mut g = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    g[i * n + j] = (0..p)
                        .map(|k| f64::from(x[i * p + k]) * f64::from(x[j * p + k]))
                        .sum();
                }
            }
            g
        };
        let center = |mut g: Vec<f64>| {
            let nf = n as f64;
            if debiased {
                for i in 0..n {
                    g[i * n + i] = 0.0;
                }
                let mut means: Vec<f64> = (0..n)
                    .map(|j| (0..n).map(|i| g[i * n + j]).sum::<f64>() / (nf - 2.0))
                    .collect();
                let total: f64 = means.iter().sum::<f64>() / (2.0 * (nf - 1.0));
                for m in &mut means {
                    *m -= total;
                }
                for i in 0..n {
                    for j in 0..n {
                        g[i * n + j] -= means[i] + means[j];
                    }
                }
                for i in 0..n {
                    g[i * n + i] = 0.0;
                }
            } else {
                let mut means: Vec<f64> = (0..n)
                    .map(|j| (0..n).map(|i| g[i * n + j]).sum::<f64>() / nf)
                    .collect();
                let total: f64 = means.iter().sum::<f64>() / nf / 2.0;
                for m in &mut means {
                    *m -= total;
                }
                for i in 0..n {
                    for j in 0..n {
                        g[i * n + j] -= means[i] + means[j];
                    }
                }
            }
            g
        };
        let (k, l) = (center(gram(a)), center(gram(b)));
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(u, v)| u * v).sum::<f64>();
        dot(&k, &l) / (dot(&k, &k).sqrt() * dot(&l, &l).sqrt())
    }

    #[test]
    fn matches_explicit_gram_reference_in_both_forms() {
        // 40 × 12 uses the feature form, 12 × 40 the sample form.
        for (n, p) in [(40usize, 12usize), (12, 40)] {
            let a = data(n * p, 1);
            let b: Vec<f32> = a
                .iter()
                .zip(data(n * p, 2))
                .map(|(x, y)| x + 0.7 * y)
                .collect();
            for (est, debiased) in [(Estimator::Debiased, true), (Estimator::Biased, false)] {
                let got = cka(&a, &b, n, p, Examples::Rows, est)
                    .unwrap()
                    .value()
                    .unwrap();
                let want = reference(&a, &b, n, p, debiased);
                assert!(
                    (got - want).abs() < 2e-6,
                    "{n}x{p} {est:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn identity_and_invariances() {
        let (n, p) = (64, 16);
        let a = data(n * p, 3);
        let v = |b: &[f32]| {
            cka(&a, b, n, p, Examples::Rows, Estimator::Debiased)
                .unwrap()
                .value()
                .unwrap()
        };
        assert_eq!(v(&a), 1.0);
        // Isotropic scaling.
        let scaled: Vec<f32> = a.iter().map(|x| 3.0 * x).collect();
        assert!((v(&scaled) - 1.0).abs() < 1e-5);
        // Orthogonal transform of the feature axis: swap and negate two columns.
        let mut rot = a.clone();
        for r in 0..n {
            rot.swap(r * p, r * p + 1);
            rot[r * p] = -rot[r * p];
        }
        assert!((v(&rot) - 1.0).abs() < 1e-5);
        // Not invariant to permuting rows (examples).
        let mut perm = a.clone();
        perm.rotate_left(p);
        assert!(v(&perm) < 0.5);
    }

    #[test]
    fn debiased_has_no_floor_where_biased_does() {
        let (n, p) = (96, 96);
        let a = data(n * p, 5);
        let b = data(n * p, 6);
        let deb = cka(&a, &b, n, p, Examples::Rows, Estimator::Debiased)
            .unwrap()
            .value()
            .unwrap();
        let bia = cka(&a, &b, n, p, Examples::Rows, Estimator::Biased)
            .unwrap()
            .value()
            .unwrap();
        assert!(deb.abs() < 0.05, "debiased {deb}");
        assert!(bia > 0.3, "biased {bia}");
    }

    #[test]
    fn permutation_null_is_centred_near_zero_for_related_matrices() {
        let (n, p) = (64, 16);
        let a = data(n * p, 7);
        let b: Vec<f32> = a
            .iter()
            .zip(data(n * p, 8))
            .map(|(x, y)| x + 0.5 * y)
            .collect();
        let shape = [n, p];
        let m = weightkin_core::Moments::of_tensors(&a, &b);
        let metric = Cka {
            estimator: Estimator::Debiased,
            examples: Examples::Rows,
            permutations: 8,
            max_elements: DEFAULT_MAX_ELEMENTS,
        };
        let input = Input {
            moments: &m,
            tensors: Some(weightkin_core::Tensors {
                a: &a,
                b: &b,
                shape: &shape,
            }),
        };
        let value = metric.evaluate(&input).value().unwrap();
        let null = metric.null_samples(&input);
        assert_eq!(null.len(), 8);
        let mean = null.iter().sum::<f64>() / 8.0;
        assert!(value > 0.7 && mean.abs() < 0.1, "{value} vs null {null:?}");
        assert_eq!(null, metric.null_samples(&input), "deterministic");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(
            cka(
                &[1.0; 6],
                &[1.0; 6],
                3,
                2,
                Examples::Rows,
                Estimator::Debiased
            )
            .unwrap(),
            MetricValue::Undefined(Undefined::TooFewExamples)
        );
        assert_eq!(
            cka(
                &[1.0; 20],
                &data(20, 1),
                10,
                2,
                Examples::Rows,
                Estimator::Debiased
            )
            .unwrap(),
            MetricValue::Undefined(Undefined::Constant)
        );
    }
}
