//! The conformance kit: the checks every metric passes, built-in or loaded from a
//! shared-library plugin.
//!
//! A metric's [`MetricSpec`] makes promises — a range, symmetry, a value on identical inputs,
//! the parameters it accepts — and the [`Metric`] contract adds more: degenerate
//! input gives a stated [`Undefined`](crate::Undefined) reason, never NaN, and the same input
//! always gives the same bits. [`check`] tests each promise on fixed synthetic data and returns
//! a [`Report`] with one row per [`Check`]. The built-in metrics' test suite and
//! `weightkin plugins check PATH` both run exactly this code, so a third-party plugin is held
//! to the same standard as the built-ins.
//!
//! Every evaluation goes through [`Metric::try_evaluate`] inside
//! `catch_unwind`, so a metric that panics, returns an error or breaks its range is reported
//! as a failed row rather than stopping the run.

use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Error, Input, Metric, MetricSpec, MetricValue, Moments, Needs, ParamValue, Params};
use crate::{Result, Tensors};

/// Largest |m(a, b) − m(b, a)| and |m(a, a) − identity| accepted: the built-ins meet these
/// exactly; the slack allows one rounding in a plugin's arithmetic.
pub const TOLERANCE: f64 = 1e-12;

/// Elements of the synthetic tensors (viewed as a 2500 × 4 matrix).
const N: usize = 10_000;

/// One property the kit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// The metric builds with no parameters.
    Build,
    /// The doc is one non-empty line.
    Doc,
    /// The declared range is an interval (not NaN, low < high) and holds the identity value.
    DeclaredRange,
    /// m(a, a) equals the declared identity value (skipped if none is declared).
    Identity,
    /// Related and unrelated pairs give finite values within the declared range.
    Range,
    /// m(a, b) = m(b, a) if symmetry is declared (skipped otherwise).
    Symmetry,
    /// The same input gives the same bits, from one built metric and from a second one.
    Determinism,
    /// Empty tensors give "undefined", not a value.
    Empty,
    /// NaN or ±infinity in either tensor gives "undefined", not a value.
    NonFinite,
    /// All-zero and constant tensors give a value within range or "undefined", never an
    /// error.
    Degenerate,
    /// Tensors of different lengths give "undefined" or an error, never a value (metrics that
    /// read only moments never see the tensors, so it is skipped for them).
    ShapeMismatch,
    /// An unknown parameter is rejected when the metric is built.
    UnknownParam,
}

impl Check {
    /// Every check, in the order [`check`] runs them.
    pub const ALL: [Check; 12] = [
        Check::Build,
        Check::Doc,
        Check::DeclaredRange,
        Check::Identity,
        Check::Range,
        Check::Symmetry,
        Check::Determinism,
        Check::Empty,
        Check::NonFinite,
        Check::Degenerate,
        Check::ShapeMismatch,
        Check::UnknownParam,
    ];

    /// Short name, as printed in the table.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Build => "build",
            Check::Doc => "doc",
            Check::DeclaredRange => "declared-range",
            Check::Identity => "identity",
            Check::Range => "range",
            Check::Symmetry => "symmetry",
            Check::Determinism => "determinism",
            Check::Empty => "empty",
            Check::NonFinite => "non-finite",
            Check::Degenerate => "degenerate",
            Check::ShapeMismatch => "shape-mismatch",
            Check::UnknownParam => "unknown-param",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The metric keeps the promise.
    Pass,
    /// It does not; the text says how (first counter-example).
    Fail(String),
    /// The check does not apply to this metric; the text says why.
    Skip(&'static str),
}

/// All checks of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The metric.
    pub metric: &'static str,
    /// One row per [`Check`], in [`Check::ALL`] order.
    pub results: Vec<(Check, Outcome)>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self
            .results
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Fail(_)))
    }

    /// The outcome of `check`.
    pub fn outcome(&self, check: Check) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|(c, _)| *c == check)
            .map(|(_, o)| o)
    }
}

impl fmt::Display for Report {
    /// The same table as [`table`], for one metric.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table(std::slice::from_ref(self)))
    }
}

/// A pass/fail table of several reports (`metric  check  result  detail`), then a summary line.
pub fn table(reports: &[Report]) -> String {
    let w_metric = reports
        .iter()
        .map(|r| r.metric.len())
        .chain(["metric".len()])
        .max()
        .unwrap_or(0);
    let w_check = Check::ALL.iter().map(|c| c.name().len()).max().unwrap_or(0);
    let mut o = String::new();
    let _ = writeln!(o, "{:w_metric$}  {:w_check$}  result", "metric", "check");
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for r in reports {
        for (check, outcome) in &r.results {
            let (word, detail) = match outcome {
                Outcome::Pass => {
                    pass += 1;
                    ("pass", "")
                }
                Outcome::Fail(why) => {
                    fail += 1;
                    ("FAIL", why.as_str())
                }
                Outcome::Skip(why) => {
                    skip += 1;
                    ("skip", *why)
                }
            };
            let line = format!(
                "{:w_metric$}  {:w_check$}  {word}  {detail}",
                r.metric,
                check.name()
            );
            let _ = writeln!(o, "{}", line.trim_end());
        }
    }
    let _ = writeln!(o, "{pass} passed, {fail} failed, {skip} skipped");
    o
}

/// Deterministic pseudo-random data in [offset − ½, offset + ½) (a 64-bit LCG, Knuth MMIX
/// constants), so the kit's inputs are the same on every machine.
pub fn synthetic(n: usize, seed: u64, offset: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            offset + ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect()
}

/// Evaluates `metric` on `a`, `b` as a [`MetricSpec`] with `needs` would be evaluated by the
/// executor: moments always, whole tensors too for [`Needs::Tensors`]. Tensors are shaped as a
/// 4-column matrix where the length allows (so matrix metrics such as CKA apply), else as a
/// column. A panic is caught and returned as `Err(message)`.
pub fn evaluate(
    metric: &dyn Metric,
    needs: Needs,
    a: &[f32],
    b: &[f32],
) -> std::result::Result<Result<MetricValue>, String> {
    let moments = Moments::of_slices(a, b);
    let shape = if a.len().is_multiple_of(4) {
        [a.len() / 4, 4]
    } else {
        [a.len(), 1]
    };
    let tensors = (needs == Needs::Tensors).then_some(Tensors {
        a,
        b,
        shape: &shape,
    });
    catch_unwind(AssertUnwindSafe(|| {
        metric.try_evaluate(&Input {
            moments: &moments,
            tensors,
        })
    }))
    .map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        format!("panicked: {text}")
    })
}

/// What one evaluation gave, as text for a failure row.
fn show(r: &std::result::Result<Result<MetricValue>, String>) -> String {
    match r {
        Ok(Ok(MetricValue::Value(v))) => format!("{v}"),
        Ok(Ok(MetricValue::Undefined(u))) => format!("undefined ({u})"),
        Ok(Err(e)) => format!("error: {e}"),
        Err(panic) => panic.clone(),
    }
}

/// Runs every [`Check`] against `spec`.
pub fn check(spec: &MetricSpec) -> Report {
    let mut results = Vec::with_capacity(Check::ALL.len());
    let metric = match catch_unwind(AssertUnwindSafe(|| (spec.build)(&Params::new()))) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            results.push((Check::Build, Outcome::Fail(format!("error: {e}"))));
            return Report {
                metric: spec.name,
                results,
            };
        }
        Err(_) => {
            results.push((Check::Build, Outcome::Fail("panicked".to_owned())));
            return Report {
                metric: spec.name,
                results,
            };
        }
    };
    results.push((Check::Build, Outcome::Pass));
    let kit = Kit {
        spec,
        metric: metric.as_ref(),
    };
    for c in &Check::ALL[1..] {
        results.push((*c, kit.run(*c)));
    }
    Report {
        metric: spec.name,
        results,
    }
}

struct Kit<'a> {
    spec: &'a MetricSpec,
    metric: &'a dyn Metric,
}

/// `Ok(())` or the first counter-example.
type Verdict = std::result::Result<(), String>;

impl Kit<'_> {
    fn eval(&self, a: &[f32], b: &[f32]) -> std::result::Result<Result<MetricValue>, String> {
        evaluate(self.metric, self.spec.needs, a, b)
    }

    /// A finite value within the declared range, or why not.
    fn value_in_range(&self, what: &str, a: &[f32], b: &[f32]) -> std::result::Result<f64, String> {
        let r = self.eval(a, b);
        let (lo, hi) = self.spec.range;
        match r {
            Ok(Ok(MetricValue::Value(v))) if v.is_finite() && lo <= v && v <= hi => Ok(v),
            Ok(Ok(MetricValue::Value(v))) => Err(format!("{what} = {v}, outside [{lo}, {hi}]")),
            other => Err(format!("{what} gave {}, expected a value", show(&other))),
        }
    }

    /// "Undefined" (or, if `error_ok`, an error), or why not.
    fn no_value(&self, what: &str, a: &[f32], b: &[f32], error_ok: bool) -> Verdict {
        match self.eval(a, b) {
            Ok(Ok(MetricValue::Undefined(_))) => Ok(()),
            Ok(Err(_)) if error_ok => Ok(()),
            other => Err(format!("{what} gave {}, expected undefined", show(&other))),
        }
    }

    fn run(&self, check: Check) -> Outcome {
        let verdict = match check {
            Check::Build => Ok(()),
            Check::Doc => self.doc(),
            Check::DeclaredRange => self.declared_range(),
            Check::Identity => match self.spec.identity {
                None => return Outcome::Skip("no identity value declared"),
                Some(id) => self.identity(id),
            },
            Check::Range => self.range(),
            Check::Symmetry if !self.spec.symmetric => {
                return Outcome::Skip("not declared symmetric")
            }
            Check::Symmetry => self.symmetry(),
            Check::Determinism => self.determinism(),
            Check::Empty => self.no_value("m([], [])", &[], &[], false),
            Check::NonFinite => self.non_finite(),
            Check::Degenerate => self.degenerate(),
            Check::ShapeMismatch if self.spec.needs == Needs::Moments => {
                return Outcome::Skip("reads only moments, never the tensors")
            }
            Check::ShapeMismatch => self.no_value(
                "tensors of 8 and 12 elements",
                &synthetic(8, 5, 0.0),
                &synthetic(12, 6, 0.0),
                true,
            ),
            Check::UnknownParam => self.unknown_param(),
        };
        match verdict {
            Ok(()) => Outcome::Pass,
            Err(why) => Outcome::Fail(why),
        }
    }

    fn doc(&self) -> Verdict {
        let doc = self.spec.doc;
        if doc.trim().is_empty() {
            Err("empty".to_owned())
        } else if doc.contains(['\n', '\r']) {
            Err("more than one line".to_owned())
        } else {
            Ok(())
        }
    }

    fn declared_range(&self) -> Verdict {
        let (lo, hi) = self.spec.range;
        if lo.is_nan() || hi.is_nan() || lo >= hi {
            return Err(format!("[{lo}, {hi}] is not an interval"));
        }
        match self.spec.identity {
            Some(id) if !(id.is_finite() && lo <= id && id <= hi) => {
                Err(format!("identity value {id} is outside [{lo}, {hi}]"))
            }
            _ => Ok(()),
        }
    }

    /// The related and unrelated pairs the value checks use.
    fn pairs() -> [(&'static str, Vec<f32>, Vec<f32>); 3] {
        let a = synthetic(N, 1, 0.3);
        let b = synthetic(N, 2, -0.1);
        let c: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + 0.1 * y).collect();
        [
            ("m(a, b)", a.clone(), b.clone()),
            ("m(a, c)", a, c.clone()),
            ("m(b, c)", b, c),
        ]
    }

    fn identity(&self, id: f64) -> Verdict {
        for (what, x) in [
            ("m(a, a)", synthetic(N, 1, 0.3)),
            ("m(b, b)", synthetic(N, 2, -0.1)),
        ] {
            let v = self.value_in_range(what, &x, &x)?;
            if (v - id).abs() > TOLERANCE {
                return Err(format!("{what} = {v}, declared identity {id}"));
            }
        }
        Ok(())
    }

    fn range(&self) -> Verdict {
        for (what, x, y) in Self::pairs() {
            self.value_in_range(what, &x, &y)?;
            let swapped = format!("{what} swapped");
            self.value_in_range(&swapped, &y, &x)?;
        }
        Ok(())
    }

    fn symmetry(&self) -> Verdict {
        for (what, x, y) in Self::pairs() {
            let xy = self.value_in_range(what, &x, &y)?;
            let yx = self.value_in_range(what, &y, &x)?;
            if (xy - yx).abs() > TOLERANCE {
                return Err(format!("{what} = {xy}, swapped {yx}"));
            }
        }
        Ok(())
    }

    fn determinism(&self) -> Verdict {
        let [_, (what, x, y), _] = Self::pairs();
        let first = self.eval(&x, &y);
        let again = self.eval(&x, &y);
        let rebuilt = match (self.spec.build)(&Params::new()) {
            Ok(m) => evaluate(m.as_ref(), self.spec.needs, &x, &y),
            Err(e) => return Err(format!("second build failed: {e}")),
        };
        let same = |p: &std::result::Result<Result<MetricValue>, String>,
                    q: &std::result::Result<Result<MetricValue>, String>| {
            match (p, q) {
                (Ok(Ok(MetricValue::Value(u))), Ok(Ok(MetricValue::Value(v)))) => {
                    u.to_bits() == v.to_bits()
                }
                (Ok(Ok(MetricValue::Undefined(u))), Ok(Ok(MetricValue::Undefined(v)))) => u == v,
                // Failing the same way twice is deterministic; the failure shows elsewhere.
                (Ok(Err(e)), Ok(Err(f))) => e.to_string() == f.to_string(),
                (Err(e), Err(f)) => e == f,
                _ => false,
            }
        };
        if !same(&first, &again) {
            Err(format!(
                "{what} gave {}, then {}",
                show(&first),
                show(&again)
            ))
        } else if !same(&first, &rebuilt) {
            Err(format!(
                "{what} gave {}, then {} from a second build",
                show(&first),
                show(&rebuilt)
            ))
        } else {
            Ok(())
        }
    }

    fn non_finite(&self) -> Verdict {
        let r = synthetic(8, 3, 0.0);
        let with = |i: usize, v: f32| {
            let mut x = r.clone();
            x[i] = v;
            x
        };
        self.no_value("NaN in a", &with(1, f32::NAN), &r, false)?;
        self.no_value("+inf in a", &with(2, f32::INFINITY), &r, false)?;
        self.no_value("NaN in b", &r, &with(3, f32::NAN), false)?;
        self.no_value("-inf in b", &r, &with(0, f32::NEG_INFINITY), false)
    }

    fn degenerate(&self) -> Verdict {
        let r = synthetic(8, 3, 0.0);
        for (what, x) in [("zeros", vec![0.0; 8]), ("constant", vec![2.0; 8])] {
            for (label, p, q) in [
                (format!("m({what}, r)"), &x, &r),
                (format!("m(r, {what})"), &r, &x),
            ] {
                match self.eval(p, q) {
                    Ok(Ok(MetricValue::Undefined(_))) => {}
                    _ => {
                        self.value_in_range(&label, p, q)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn unknown_param(&self) -> Verdict {
        let mut p = Params::new();
        p.insert("no-such-param".into(), ParamValue::Bool(true));
        match catch_unwind(AssertUnwindSafe(|| (self.spec.build)(&p))) {
            Ok(Err(Error::InvalidParam { .. })) => Ok(()),
            Ok(Err(e)) => Err(format!("rejected with an unexpected error: {e}")),
            Ok(Ok(_)) => Err("`no-such-param` was accepted".to_owned()),
            Err(_) => Err("building with `no-such-param` panicked".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::Undefined;

    /// A configurable misbehaving metric for testing the kit itself.
    #[derive(Clone, Copy)]
    enum Bad {
        Good,
        Panics,
        OutOfRange,
        Asymmetric,
        NanOnEmpty,
        Random,
    }

    struct M(Bad);

    impl Metric for M {
        fn evaluate(&self, input: &Input<'_>) -> MetricValue {
            let m = input.moments;
            if m.n == 0 {
                return match self.0 {
                    Bad::NanOnEmpty => MetricValue::Value(f64::NAN),
                    _ => MetricValue::Undefined(Undefined::Empty),
                };
            }
            if !m.is_finite() {
                return MetricValue::Undefined(Undefined::NonFinite);
            }
            let v = match self.0 {
                Bad::Panics => panic!("index out of bounds"),
                Bad::OutOfRange => 2.0,
                Bad::Asymmetric => m.mean_a.tanh(),
                Bad::Random => {
                    use std::sync::atomic::{AtomicU64, Ordering};
                    static CALLS: AtomicU64 = AtomicU64::new(0);
                    if m.sum_sq_diff == 0.0 {
                        1.0
                    } else {
                        (CALLS.fetch_add(1, Ordering::Relaxed) % 7) as f64 / 10.0
                    }
                }
                Bad::Good | Bad::NanOnEmpty => {
                    if m.sum_sq_diff == 0.0 {
                        1.0
                    } else {
                        0.5
                    }
                }
            };
            MetricValue::Value(v)
        }
    }

    fn spec(bad: Bad) -> &'static MetricSpec {
        let build: &'static (dyn Fn(&Params) -> Result<Box<dyn Metric>> + Send + Sync) =
            Box::leak(Box::new(move |p: &Params| -> Result<Box<dyn Metric>> {
                if let Some(k) = p.keys().next() {
                    return Err(Error::InvalidParam {
                        metric: "m",
                        param: k.clone(),
                        problem: crate::ParamProblem::Unknown {
                            accepted: "none".into(),
                        },
                    });
                }
                Ok(Box::new(M(bad)))
            }));
        Box::leak(Box::new(MetricSpec {
            name: "m",
            doc: "a test metric",
            range: (-1.0, 1.0),
            symmetric: true,
            identity: Some(1.0),
            params: &[],
            needs: Needs::Moments,
            build,
        }))
    }

    fn failed(r: &Report) -> Vec<&'static str> {
        r.results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fail(_)))
            .map(|(c, _)| c.name())
            .collect()
    }

    #[test]
    fn a_good_metric_passes_everything_that_applies() {
        let r = check(spec(Bad::Good));
        assert!(r.passed(), "{r}");
        assert_eq!(r.results.len(), Check::ALL.len());
        assert_eq!(
            r.outcome(Check::ShapeMismatch),
            Some(&Outcome::Skip("reads only moments, never the tensors"))
        );
    }

    #[test]
    fn each_broken_promise_fails_its_check() {
        let r = check(spec(Bad::Panics));
        assert_eq!(failed(&r), ["identity", "range", "symmetry", "degenerate"]);
        assert!(
            matches!(r.outcome(Check::Range), Some(Outcome::Fail(m)) if m.contains("panicked: index out of bounds")),
            "{r}"
        );
        let r = check(spec(Bad::OutOfRange));
        assert_eq!(failed(&r), ["identity", "range", "symmetry", "degenerate"]);
        assert_eq!(
            r.outcome(Check::Range),
            Some(&Outcome::Fail("m(a, b) = 2, outside [-1, 1]".into()))
        );
        let r = check(spec(Bad::Asymmetric));
        assert!(failed(&r).contains(&"symmetry"), "{r}");
        let r = check(spec(Bad::NanOnEmpty));
        assert_eq!(failed(&r), ["empty"]);
        let r = check(spec(Bad::Random));
        assert!(failed(&r).contains(&"determinism"), "{r}");
    }

    #[test]
    fn the_table_lists_every_row_and_a_summary() {
        let t = table(&[check(spec(Bad::OutOfRange))]);
        assert!(t.starts_with("metric  check           result\n"), "{t}");
        assert!(
            t.contains("m       range           FAIL  m(a, b) = 2, outside [-1, 1]\n"),
            "{t}"
        );
        assert!(
            t.contains("m       degenerate      FAIL  m(zeros, r) = 2, outside [-1, 1]\n"),
            "{t}"
        );
        assert!(t.ends_with("7 passed, 4 failed, 1 skipped\n"), "{t}");
    }

    #[test]
    fn declared_properties_are_checked_without_evaluating() {
        let base = spec(Bad::Good);
        let bad_range: &'static MetricSpec = Box::leak(Box::new(MetricSpec {
            range: (1.0, -1.0),
            doc: "two\nlines",
            identity: Some(5.0),
            ..*base
        }));
        let r = check(bad_range);
        assert!(matches!(r.outcome(Check::Doc), Some(Outcome::Fail(_))));
        assert!(matches!(
            r.outcome(Check::DeclaredRange),
            Some(Outcome::Fail(_))
        ));
    }
}
