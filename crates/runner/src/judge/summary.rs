//! From per-tensor evidence to verdicts: per component (the counts, the decision, the
//! sentence, the tensors cited for and against), overall, and the caveats that applied.

use std::collections::BTreeMap;

use super::{
    Cited, ComponentVerdict, Components, Evidence, Excluded, Exclusion, Measured, Method, Role,
    Verdict, Verdicts, ALPHA, MIN_EFFECT, MIN_SUPPORT_FRACTION,
};
use crate::recipe::{CompareSpec, Permutation};
use crate::report::{round, NullKind, Reason, Unpaired};
use crate::stats;

/// An evidence row with its index in the comparison's pairs.
type Indexed<'e> = (usize, &'e Evidence);

fn supports(e: &Evidence) -> bool {
    significant(e)
        && matches!((e.pearson, e.null_mean), (Some(r), Some(mu)) if r - mu >= MIN_EFFECT)
}

fn significant(e: &Evidence) -> bool {
    e.p_adjusted.is_some_and(|p| p < ALPHA)
}

fn cite(name: &str, e: &Evidence) -> Cited {
    Cited {
        tensor: name.to_owned(),
        pearson: e.pearson,
        z: e.z,
        p_adjusted: e.p_adjusted,
        null: e.null,
    }
}

fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "—".to_owned(),
        Some(p) if p < 1e-300 => "< 1e-300".to_owned(),
        Some(p) => format!("{p:.1e}"),
    }
}

/// A value with `digits` decimals, or "—".
fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".to_owned(), |v| format!("{v:.digits$}"))
}

/// The verdicts of one comparison from its evidence rows (in pair order, like `measured`).
pub(super) fn summarise(
    spec: &CompareSpec,
    naming: &Components<'_>,
    measured: &[Measured<'_>],
    rows: &[Evidence],
    unpaired: &[Unpaired],
) -> Verdicts {
    let mut by_component: BTreeMap<String, Vec<Indexed<'_>>> = BTreeMap::new();
    let compared: std::collections::BTreeSet<&str> =
        rows.iter().map(|e| e.component.as_str()).collect();
    for (i, e) in rows.iter().enumerate() {
        by_component
            .entry(e.component.clone())
            .or_default()
            .push((i, e));
    }
    // Integer and boolean buffers are listed as not evidence of their component.
    let mut buffers: BTreeMap<String, Vec<Excluded>> = BTreeMap::new();
    for u in unpaired
        .iter()
        .filter(|u| u.reason == Reason::NonFloatDtype)
    {
        buffers
            .entry(naming.of(&u.name))
            .or_default()
            .push(Excluded {
                tensor: u.name.clone(),
                reason: Exclusion::NonFloatBuffer,
            });
    }
    for name in buffers.keys() {
        by_component.entry(name.clone()).or_default();
    }
    let components: Vec<ComponentVerdict> = by_component
        .iter()
        .map(|(name, members)| {
            let extra = buffers.remove(name).unwrap_or_default();
            component(name, members, measured, extra)
        })
        .collect();
    let (overall, mut sentence) = overall(spec, &components);
    sentence.push_str(&without_counterpart(spec, naming, &compared, unpaired));
    Verdicts {
        overall,
        sentence,
        method: method(spec.permutation),
        caveats: caveats(spec, measured, rows, &components),
        components,
    }
}

/// The verdict on one component from its rows (`members`) and the buffers listed in it.
fn component(
    name: &str,
    members: &[Indexed<'_>],
    measured: &[Measured<'_>],
    buffers: Vec<Excluded>,
) -> ComponentVerdict {
    let pair_name = |i: usize| &measured[i].pair.name;
    let ev: Vec<Indexed<'_>> = members
        .iter()
        .copied()
        .filter(|(_, e)| !matches!(e.role, Role::NotEvidence(_)))
        .collect();
    let supporting = ev.iter().filter(|(_, e)| supports(e)).count();
    let significant_n = ev.iter().filter(|(_, e)| significant(e)).count();
    let identical = ev
        .iter()
        .filter(|(i, _)| measured[*i].moments.equal == measured[*i].moments.n)
        .count();
    let pearsons: Vec<f64> = ev.iter().filter_map(|(_, e)| e.pearson).collect();
    let ulps: Vec<f64> = ev
        .iter()
        .filter_map(|(_, e)| e.bf16_ulp.map(|u| u.within_one))
        .collect();
    let zs: Vec<f64> = ev.iter().filter_map(|(_, e)| e.z).collect();
    let needed = ((ev.len() as f64) * MIN_SUPPORT_FRACTION).ceil().max(1.0) as usize;
    let verdict = if ev.is_empty() {
        Verdict::Inconclusive
    } else if supporting >= needed {
        Verdict::Derived
    } else if significant_n == 0 {
        Verdict::Independent
    } else {
        Verdict::Inconclusive
    };
    let mut sorted = ev.clone();
    sorted.sort_by(|(i, x), (j, y)| {
        y.z.unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&x.z.unwrap_or(f64::NEG_INFINITY))
            .then(pair_name(*i).cmp(pair_name(*j)))
    });
    let mut not_evidence: Vec<Excluded> = members
        .iter()
        .filter_map(|(i, e)| match e.role {
            Role::NotEvidence(reason) => Some(Excluded {
                tensor: pair_name(*i).clone(),
                reason,
            }),
            _ => None,
        })
        .collect();
    not_evidence.extend(buffers);
    not_evidence.sort_by(|x, y| x.tensor.cmp(&y.tensor));
    let counts = Counts {
        evidence: ev.len(),
        supporting,
        significant: significant_n,
        needed,
        identical,
        not_evidence: not_evidence.len(),
    };
    let summary = Summary {
        median_pearson: stats::median(&pearsons).map(round),
        median_z: stats::median(&zs),
        max_z: zs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        min_p: ev
            .iter()
            .filter_map(|(_, e)| e.p_adjusted)
            .min_by(f64::total_cmp),
        within_one: stats::mean_sd(&ulps).map(|(m, _)| round(m)),
    };
    ComponentVerdict {
        name: name.to_owned(),
        verdict,
        sentence: sentence(name, verdict, &counts, &summary),
        tensors: members.len(),
        evidence: ev.len(),
        init_prior: ev.iter().filter(|(_, e)| e.role == Role::InitPrior).count(),
        supporting,
        significant: significant_n,
        identical,
        bf16_within_one_ulp: summary.within_one,
        median_pearson: summary.median_pearson,
        median_z: summary.median_z.map(|z| (z * 1e3).round() / 1e3),
        min_p_adjusted: summary.min_p,
        stouffer_z: stats::stouffer(&zs).map(|z| (z * 1e3).round() / 1e3),
        deciding: sorted
            .iter()
            .take(5)
            .map(|(i, e)| cite(pair_name(*i), e))
            .collect(),
        counter: sorted
            .iter()
            .rev()
            .take(5)
            .map(|(i, e)| cite(pair_name(*i), e))
            .collect(),
        not_evidence,
    }
}

/// Tensor counts of a component, as its sentence states them.
struct Counts {
    evidence: usize,
    supporting: usize,
    significant: usize,
    needed: usize,
    identical: usize,
    not_evidence: usize,
}

/// Summary statistics of a component's evidence, as its sentence states them.
struct Summary {
    median_pearson: Option<f64>,
    median_z: Option<f64>,
    max_z: f64,
    min_p: Option<f64>,
    within_one: Option<f64>,
}

/// The sentence a journalist can quote.
fn sentence(name: &str, verdict: Verdict, c: &Counts, s: &Summary) -> String {
    match verdict {
        Verdict::Derived => {
            format!(
                "{name}: DERIVED. {} of {} evidence tensors correlate with A far beyond \
                 what unrelated weights show (median Pearson {}, median z {}, smallest \
                 Holm-adjusted p {}){}.",
                c.supporting,
                c.evidence,
                fmt_opt(s.median_pearson, 4),
                fmt_opt(s.median_z, 1),
                fmt_p(s.min_p),
                if c.identical > 0 {
                    format!("; {} are value-for-value identical to A's", c.identical)
                } else {
                    String::new()
                },
            ) + &s
                .within_one
                .map(|w| {
                    format!(
                        " On the stored BF16 bits, {:.1} % of sampled weights are within 1 ULP \
                         of A's.",
                        100.0 * w
                    )
                })
                .unwrap_or_default()
        }
        Verdict::Independent => format!(
            "{name}: INDEPENDENT. None of {} evidence tensors correlates with A beyond what \
             unrelated weights show (median Pearson {}, largest z {:.1}).",
            c.evidence,
            fmt_opt(s.median_pearson, 4),
            s.max_z
        ),
        Verdict::Inconclusive if c.evidence == 0 => format!(
            "{name}: INCONCLUSIVE. It has no tensor that can serve as evidence ({} not \
             evidence).",
            c.not_evidence
        ),
        Verdict::Inconclusive => format!(
            "{name}: INCONCLUSIVE. {} of {} evidence tensors exceed the null \
             significantly but only {} by a Pearson margin of at least \
             {MIN_EFFECT} ({} needed for `derived`): partial reuse, or a weak \
             systematic similarity; read the per-tensor evidence.",
            c.significant, c.evidence, c.supporting, c.needed
        ),
    }
}

/// The overall verdict and its sentence: derived if any component is; independent if every
/// component with evidence is (and one has); else inconclusive. A component without any
/// tensor that can serve as evidence (a head whose only compared tensor is a one-element
/// bias, a component of generated tables) cannot speak either way: it is named in the
/// sentence but does not hold the other components' verdict hostage.
fn overall(spec: &CompareSpec, components: &[ComponentVerdict]) -> (Verdict, String) {
    let with = |v: Verdict| -> Vec<&str> {
        components
            .iter()
            .filter(|c| c.verdict == v && c.evidence > 0)
            .map(|c| c.name.as_str())
            .collect()
    };
    let (derived, independent) = (with(Verdict::Derived), with(Verdict::Independent));
    let without: Vec<&str> = components
        .iter()
        .filter(|c| c.evidence == 0)
        .map(|c| c.name.as_str())
        .collect();
    let judged = components.len() - without.len();
    let overall = if !derived.is_empty() {
        Verdict::Derived
    } else if judged > 0 && independent.len() == judged {
        Verdict::Independent
    } else {
        Verdict::Inconclusive
    };
    let (a, b) = (&spec.a, &spec.b);
    let mut sentence = match overall {
        Verdict::Derived => format!(
            "`{b}` shares weights with `{a}` in: {}.{}",
            derived.join(", "),
            if independent.is_empty() {
                String::new()
            } else {
                format!(" Independent of `{a}`: {}.", independent.join(", "))
            }
        ),
        Verdict::Independent => format!(
            "No component of `{b}` shows shared ancestry with `{a}`: every evidence tensor is \
             within what unrelated weights show."
        ),
        Verdict::Inconclusive => format!(
            "The weights do not settle whether `{b}` derives from `{a}`: see the components."
        ),
    };
    if !without.is_empty() && overall != Verdict::Inconclusive {
        sentence += &format!(
            " Without any tensor that can serve as evidence: {}.",
            without.join(", ")
        );
    }
    (overall, sentence)
}

/// The components of B none of whose tensors found a counterpart in A (an encoder's host
/// model: its language model, embeddings, head), as a sentence; empty when there are none.
/// They were not compared, so they get no verdict — and saying so keeps a reader from taking
/// the verdict on the part that was found for a verdict on the whole model.
fn without_counterpart(
    spec: &CompareSpec,
    naming: &Components<'_>,
    compared: &std::collections::BTreeSet<&str>,
    unpaired: &[Unpaired],
) -> String {
    let mut absent: BTreeMap<String, usize> = BTreeMap::new();
    for u in unpaired.iter().filter(|u| u.reason == Reason::OnlyInB) {
        let c = naming.of(&u.name);
        if !compared.contains(c.as_str()) {
            *absent.entry(c).or_insert(0) += 1;
        }
    }
    if absent.is_empty() {
        return String::new();
    }
    let list = absent
        .iter()
        .map(|(c, n)| format!("{c} ({n} tensor{})", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        " Without a counterpart in `{}`, so not compared and without a verdict: `{}`'s {list}.",
        spec.a, spec.b
    )
}

/// The decision rule, as the report states it.
fn method(permutation: Permutation) -> Method {
    const NULLS: &str = "reference models declared independent of A (same class) > cross-layer \
                (A's layer i vs B's layer j ≠ i, same class; s.d. floored at 1/√n) > \
                shift (A's matrix or vector vs B's shifted circularly along one axis, for a \
                tensor with neither; a vector's p-value must also hold without its most \
                influential element) > analytic (mean 0, s.d. 1/√n)";
    const ALIGNED_NULLS: &str = "for MLP tensors whose hidden units were aligned: aligned \
                cross-layer (A's layer i vs B's layer j ≠ i after the same assignment of \
                hidden units, the null under the same search); otherwise reference models \
                declared independent of A (same class) > cross-layer (A's layer i vs B's \
                layer j ≠ i, same class; s.d. floored at 1/√n) > shift (A's matrix or vector \
                vs B's shifted circularly along one axis, for a tensor with neither; a \
                vector's p-value must also hold without its most influential element) > \
                analytic (mean 0, s.d. 1/√n)";
    Method {
        statistic: "Pearson correlation per tensor (centred, so norm weights near 1.0 do \
                    not inflate it)",
        correction: "Holm step-down across all evidence tensors of the comparison",
        alpha: ALPHA,
        min_effect: MIN_EFFECT,
        min_support_fraction: MIN_SUPPORT_FRACTION,
        combination: "Stouffer's z per component, a summary only (assumes independent \
                      tensors, which layers of one model are not)",
        nulls: match permutation {
            Permutation::Off => NULLS,
            Permutation::Auto => ALIGNED_NULLS,
        },
    }
}

fn caveats(
    spec: &CompareSpec,
    measured: &[Measured<'_>],
    rows: &[Evidence],
    components: &[ComponentVerdict],
) -> Vec<String> {
    let mut out = Vec::new();
    let priors: Vec<(usize, &Evidence)> = rows
        .iter()
        .enumerate()
        .filter(|(_, e)| e.role == Role::InitPrior)
        .collect();
    if !priors.is_empty() {
        let cosines: Vec<f64> = priors.iter().filter_map(|(_, e)| e.cosine).collect();
        let expected: Vec<f64> = priors
            .iter()
            .map(|(i, _)| {
                let m = &measured[*i].moments;
                let n = m.n as f64;
                let (mu, var) = (m.mean_a, m.m2_a / n);
                mu * mu / (mu * mu + var)
            })
            .collect();
        out.push(format!(
            "{} tensors sit near a constant in both models (norm weights and the like). Their \
             raw cosine (median {}) is not evidence: independent models with the same \
             statistics would show about {} (mean²/(mean²+variance)). They were judged by \
             Pearson only.",
            priors.len(),
            stats::median(&cosines).map_or("—".to_owned(), |v| format!("{v:.4}")),
            stats::median(&expected).map_or("—".to_owned(), |v| format!("{v:.4}")),
        ));
    }
    let excluded: usize = components.iter().map(|c| c.not_evidence.len()).sum();
    if excluded > 0 {
        out.push(format!(
            "{excluded} tensors are not evidence (deterministic buffers, integer buffers, \
             structured identical tensors, constant tensors, or recipe overrides); they are \
             listed per component and did not influence any verdict."
        ));
    }
    let generated = components
        .iter()
        .flat_map(|c| &c.not_evidence)
        .filter(|e| matches!(e.reason, Exclusion::Generated { .. }))
        .count();
    if generated > 0 {
        out.push(format!(
            "{generated} of them are generated tables, recognised by their values whatever \
             their name: each is identical in both models and reproduced by a formula (an STFT \
             basis, a mel filterbank, a position table, a rotary cache, a mask, an arange), \
             which unrelated models compute alike. The formula is named per tensor."
        ));
    }
    if rows.iter().any(|e| e.null == Some(NullKind::Analytic)) {
        out.push(
            "Tensors without a cross-layer, reference or shift null were judged against the analytic \
             null (Pearson of independent vectors: s.d. 1/√n). Structured tensors can exceed it \
             without shared ancestry; declare a reference model known to be independent of A \
             (`references = [...]`) to calibrate them empirically."
                .to_owned(),
        );
    }
    out.push(match spec.permutation {
        Permutation::Off => {
            "Element-wise statistics (Pearson, cosine) do not detect a copy whose residual \
             stream, attention heads or hidden units were permuted, or whose residual stream \
             was rotated: such a copy reads as independent. `permutation = \"auto\"` \
             (`compare --align-units`) aligns them before measuring; CKA with the matching \
             orientation is invariant to permuting the feature axis."
                .to_owned()
        }
        Permutation::Auto => {
            "The residual stream was aligned from the token embeddings over shared tokens \
             (identity, signed permutation or rotation, whichever fits held-out rows best), \
             then attention heads (as KV groups) and MLP hidden units by assignment, judged \
             against the same alignment of A's layer i with B's layer j ≠ i: a copy that \
             permutes, rotates or width-prunes those is compared unit by unit. What could not \
             be aligned is listed in the report's alignment sections."
                .to_owned()
        }
    });
    out.push(format!(
        "`derived` means shared ancestry: `{}` may derive from `{}`, the reverse, or both from a \
         common ancestor (including a shared initialisation seed). The weights cannot tell \
         the direction.",
        spec.b, spec.a
    ));
    out
}
