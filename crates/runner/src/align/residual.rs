//! Residual-stream alignment (issue 15): recover the basis in which B's residual stream is
//! written relative to A's — unchanged, a signed permutation, a rotation, or a projection
//! between two widths — from the token embeddings over shared tokens, and present every B
//! tensor that lives on the residual axis in A's basis before anything else is measured.
//!
//! # Why
//!
//! A transformer's residual stream has no privileged basis as far as what it computes is
//! concerned: permuting its dimensions (and flipping signs, where no LayerNorm mean couples
//! them) in the embedding, in every input projection's columns, in every output projection's
//! rows and biases and in the norm parameters is a function-preserving change; so, once the
//! norm gains are folded into the next projections, is any orthogonal rotation (Zhu et al.'s
//! `rotate_model`). Either sends every element-wise statistic between A and B to zero.
//!
//! # How
//!
//! 1. **Rows.** The token embeddings of A and B (canonical role `embed`, the text tower's)
//!    over the tokens both vocabularies hold, matched by their token strings
//!    ([`super::vocab`]), or in row order when a side has no token strings (said so in the
//!    report). [`ROWS_PER_WIDTH`] rows per dimension of the wider side (4096 to [`ROWS_MAX`]),
//!    evenly spaced over the shared list; rows that are
//!    all zero, not finite, or bit-for-bit equal to another sampled row in either model are
//!    dropped (unused and duplicated tokens carry no information about the basis). The rows
//!    left alternate between a *fit* half and a *check* half.
//! 2. **Candidates**, fitted on the fit half (columns centred by their fit-half means):
//!    - *identity* (equal widths only);
//!    - *signed permutation*: the linear assignment ([`weightkin_core::lap`]) of B's
//!      embedding columns to A's on |Pearson| of the columns, the sign of each match from
//!      its Pearson (AWM's cost 1 − |cos|); rectangular when the widths differ, which keeps
//!      the matched dimensions of the wider side;
//!    - *rotation*: orthogonal Procrustes, the polar factor `Q = U Vᵀ` of `X_Aᵀ X_B = U Σ Vᵀ`
//!      (MDIR), semi-orthogonal when the widths differ.
//! 3. **Choice**, on the check half, which the fit never saw: each candidate's held-out fit is
//!    the Pearson of A's check rows with B's check rows mapped into A's basis. The simplest
//!    candidate within [`TIE`] of the best is taken (identity, then permutation, then
//!    rotation): a rotation can always imitate a permutation, so it has to earn its place.
//!    The basis counts as *recovered* when that held-out fit is at least [`FOUND_FIT`] — an
//!    effect-size rule for the report's wording only. Unrelated models of one tokenizer
//!    still fit a rotation far above zero (embeddings of the same tokens are semantically
//!    alike in any two trained models), so the fit is not evidence of derivation and never
//!    enters a verdict.
//!
//! # What is presented
//!
//! With identity chosen nothing changes. Otherwise every tensor on the residual axis is
//! presented in A's basis: input projections (`attn.q/k/v`, `mlp.gate/up`, the embeddings,
//! `lm_head`, the pooler) on their columns, output projections (`attn.o`, `mlp.down`) on their
//! rows, their biases, and the norm parameters (a permutation moves a gain without its sign).
//! Under a permutation with unequal widths the wider side is cut to the matched dimensions.
//! Under a rotation the norm gains of pre-norm layers are folded into the projections they
//! feed, on both sides (a canonical form: `W · diag(g)`), and the gains themselves are not
//! compared — a rotated copy must fold them, so they no longer exist as such in B.
//!
//! # The evidence and its null
//!
//! The alignment maximises the similarity of the *embeddings*: unlayered tensors on the
//! residual axis (embeddings, `lm_head`, the final norm) are therefore not evidence after a
//! non-identity alignment and are listed with that reason. Layered tensors are: the alignment
//! is one map for the whole model, applied to A's layer `i` against B's layer `j ≠ i` exactly
//! as to layer `i` against layer `i`, so the ordinary cross-layer null — computed on the
//! presented tensors — is the null under the same alignment. MLP units and attention heads
//! are then aligned on top of it ([`super::units`]) with their own aligned null.
//!
//! # Limits
//!
//! Widths above [`WIDTH_MAX`] are not aligned (listed). A rotation is applied to tensors of at
//! most [`crate::correspond::views::MATERIALISE_MAX`] elements (listed otherwise). Norm
//! folding covers pre-norm layers (`norm.attn` before attention, `norm.mlp` before the MLP,
//! the final `norm` before `lm_head`); a rotated post-norm (BERT) copy would need LayerNorm's
//! mean direction fixed too and is not folded. Vision and audio towers have no token rows to
//! align on and are left as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weightkin_core::{lap, WeightSource};

use crate::correspond::names;
use crate::correspond::views::{GatherAxis, Loc, Matrix, View, Views, MATERIALISE_MAX};
use crate::plan::Model;
use crate::recipe::CompareSpec;
use crate::report::{round, ResidualReport};
use crate::Error;

/// Most embedding rows used (fit and check halves together): [`ROWS_PER_WIDTH`] per dimension
/// of the wider side, at least 4096, at most this.
pub const ROWS_MAX: usize = 16_384;

/// Embedding rows sampled per residual dimension (of the wider side): 8, so that the fit half
/// holds 4 rows per dimension. A side with fewer than half as many usable rows is not aligned.
pub const ROWS_PER_WIDTH: usize = 8;

/// Held-out fit from which a recovered basis is reported as found.
pub const FOUND_FIT: f64 = 0.8;

/// Held-out fit from which a non-identity basis of equal widths is applied. Below it the best
/// basis explains less than half of the held-out embedding values — what independently
/// trained models of one tokenizer reach (the zoo's unrelated Llama pairs: 0.16; SmolLM2
/// against Gemma-3 under a projection: 0.40–0.41) — and the models are compared as stored:
/// aligning unrelated residual streams lets same-layer features that independent training on
/// similar data converges to line up, which no cross-layer null sees (the zoo: 20 of 560
/// unrelated Llama pairs `inconclusive` when always applied, against 1). Between different
/// widths the basis is always applied: without it nothing can be compared.
pub const APPLY_FIT: f64 = 0.5;

/// A simpler candidate within this much held-out fit of the best is preferred.
pub const TIE: f64 = 0.02;

/// Fewest usable embedding rows for any alignment: the permutation candidate matches the
/// embedding columns as vectors over the fit half's rows (32 at least). The rotation needs
/// [`ROWS_PER_WIDTH`] / 2 rows per dimension; with fewer it is not fitted (a model whose
/// vocabulary is small against its width, such as a character-level one).
pub const PERMUTATION_ROWS_MIN: usize = 64;

/// Widest residual stream aligned: [`ROWS_MAX`] rows hold 4 per dimension of a 4096-wide
/// stream, and the Procrustes SVD runs on a `d_A × d_B` f64 matrix (128 MiB at 4096).
pub const WIDTH_MAX: usize = 4096;

/// Where a member's residual axis lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Columns of `[x, d]` (an input projection, an embedding).
    Cols,
    /// Rows of `[d, x]` (an output projection).
    Rows,
    /// A vector on the residual axis that flips with the basis (a bias).
    Bias,
    /// A norm gain: moves with a permutation, keeps its sign, does not rotate.
    Gain,
}

/// One tensor on the residual axis, in both models.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    role: String,
    layer: Option<u32>,
    a: usize,
    b: usize,
    place: Place,
}

/// The rows the alignment fits on, as the caller found them.
#[derive(Debug, Clone)]
pub enum Rows {
    /// `(A row, B row)` of each token both vocabularies hold, and where the token strings
    /// came from.
    Shared {
        /// The pairs, by A's row.
        pairs: Vec<(usize, usize)>,
        /// A's vocabulary source.
        source_a: String,
        /// B's vocabulary source.
        source_b: String,
    },
    /// No token strings on one side: rows in stored order, and why.
    Order(String),
}

/// The chosen basis.
#[derive(Debug, Clone)]
enum Basis {
    Identity,
    /// `(A dim, B dim, sign)` by A dim.
    Permutation(Vec<(usize, usize, f32)>),
    /// `Q` (`d_A × d_B`): A's rows times `Q` approximate B's.
    Rotation(Matrix),
}

/// What the residual alignment gives a comparison.
pub struct Residual {
    /// The report section.
    pub report: ResidualReport,
    views_a: BTreeMap<usize, View>,
    views_b: BTreeMap<usize, View>,
    /// A names not compared after the alignment, with why.
    pub withheld: Vec<(String, crate::report::Reason, String)>,
    /// The finding a recovered non-identity basis is.
    pub finding: Option<String>,
}

impl Residual {
    /// A and B as the later stages see them.
    pub fn present<'a>(
        &self,
        model_a: &str,
        a: &'a dyn WeightSource,
        model_b: &str,
        b: &'a dyn WeightSource,
    ) -> Result<(Views<'a>, Views<'a>), Error> {
        Ok((
            super::replaced(model_a, a, self.views_a.clone())?,
            super::replaced(model_b, b, self.views_b.clone())?,
        ))
    }
}

/// The residual-axis members of the text tower, by tower; the embedding pair first.
fn members(cmp: &CompareSpec, a: Model<'_>, b: Model<'_>) -> BTreeMap<String, Vec<Member>> {
    let names: Vec<&String> = a
        .names
        .keys()
        .filter(|n| cmp.selects(n) && b.names.contains_key(*n))
        .collect();
    let read = names::normalise_all(names.iter().map(|n| n.as_str()));
    let mut out: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for (name, n) in names.iter().zip(&read) {
        let c = &n.canonical;
        let Some((tower, rest)) = c.split_once('.') else {
            continue;
        };
        let (layer, role) = match rest.strip_prefix("layers.") {
            Some(r) => match r.split_once('.') {
                Some((l, role)) => (l.parse::<u32>().ok(), role),
                None => continue,
            },
            None => (None, rest),
        };
        let Some((role, leaf)) = role.rsplit_once('.') else {
            continue;
        };
        let weight = leaf == "weight";
        let place = match (layer.is_some(), role, weight) {
            (true, "attn.q" | "attn.k" | "attn.v" | "mlp.gate" | "mlp.up", true) => Place::Cols,
            (true, "attn.o" | "mlp.down", true) => Place::Rows,
            (true, "attn.o" | "mlp.down", false) => Place::Bias,
            (false, "embed" | "pos_embed" | "type_embed" | "lm_head" | "pool", true) => Place::Cols,
            (_, r, true) if is_norm(r) => Place::Gain,
            (_, r, false) if is_norm(r) => Place::Bias,
            _ => continue,
        };
        let (Some(&ia), Some(&ib)) = (a.names.get(*name), b.names.get(*name)) else {
            continue;
        };
        out.entry(tower.to_owned()).or_default().push(Member {
            name: (*name).clone(),
            role: role.to_owned(),
            layer,
            a: ia,
            b: ib,
            place,
        });
    }
    // Only towers with a token embedding can be aligned on tokens; an `embed` with a bias
    // is a linear input layer (features in, not tokens), not a table of token rows.
    let biased: BTreeSet<String> = read
        .iter()
        .filter_map(|n| n.canonical.strip_suffix(".embed.bias").map(str::to_owned))
        .collect();
    out.retain(|tower, ms| {
        !biased.contains(tower) && ms.iter().any(|m| m.role == "embed" && m.layer.is_none())
    });
    out
}

fn is_norm(role: &str) -> bool {
    role == "norm" || role.starts_with("norm.")
}

/// Aligns B's residual stream to A's (see the module documentation). `rows` says which
/// embedding rows correspond.
pub fn align(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    rows: &Rows,
) -> Result<Option<Residual>, Error> {
    let towers = members(cmp, a, b);
    // One tower: the first with a token embedding (a model has one text tower).
    let Some((tower, members)) = towers.into_iter().next() else {
        return Ok(None);
    };
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    let Some(embed) = members
        .iter()
        .find(|m| m.role == "embed" && m.layer.is_none())
        .cloned()
    else {
        return Ok(None);
    };
    let (ea, eb) = (&ta[embed.a], &tb[embed.b]);
    let mut report = ResidualReport {
        tower: tower.clone(),
        embedding: embed.name.clone(),
        ..ResidualReport::default()
    };
    let cannot = |mut report: ResidualReport, why: String| {
        report.basis = "not aligned".to_owned();
        report.skipped.push(why);
        Ok(Some(Residual {
            report,
            views_a: BTreeMap::new(),
            views_b: BTreeMap::new(),
            withheld: Vec::new(),
            finding: None,
        }))
    };
    if ea.shape.len() != 2 || eb.shape.len() != 2 || !ea.dtype.is_float() || !eb.dtype.is_float() {
        return cannot(
            report,
            format!(
                "`{}`: the token embeddings must be float matrices [vocabulary, width]; \
                 A's is {:?}, B's {:?}",
                embed.name, ea.shape, eb.shape
            ),
        );
    }
    let (va, da, vb, db) = (ea.shape[0], ea.shape[1], eb.shape[0], eb.shape[1]);
    report.width_a = da;
    report.width_b = db;
    if da.max(db) > WIDTH_MAX || da.min(db) < 2 {
        return cannot(
            report,
            format!("residual widths {da} and {db}: alignment covers widths 2 to {WIDTH_MAX}"),
        );
    }
    let pairs: Vec<(usize, usize)> = match rows {
        Rows::Shared {
            pairs,
            source_a,
            source_b,
        } => {
            report.rows = format!("shared tokens ({source_a}; {source_b})");
            report.shared_tokens = Some(pairs.len());
            pairs
                .iter()
                .copied()
                .filter(|&(x, y)| x < va && y < vb)
                .collect()
        }
        Rows::Order(why) => {
            report.rows = format!("row order ({why})");
            (0..va.min(vb)).map(|r| (r, r)).collect()
        }
    };
    let need = ROWS_PER_WIDTH / 2 * da.max(db);
    // Evenly spaced over the shared list.
    let take = pairs
        .len()
        .min((ROWS_PER_WIDTH * da.max(db)).clamp(4096, ROWS_MAX));
    let picked: Vec<(usize, usize)> = (0..take)
        .map(|k| pairs[k * pairs.len() / take.max(1)])
        .collect();
    let xa = read_rows(cmp, a, embed.a, picked.iter().map(|p| p.0), da)?;
    let xb = read_rows(cmp, b, embed.b, picked.iter().map(|p| p.1), db)?;
    let usable = usable_rows(&xa, da, &xb, db);
    report.rows_used = usable.len();
    report.rows_dropped = picked.len() - usable.len();
    if usable.len() < PERMUTATION_ROWS_MIN {
        return cannot(
            report,
            format!(
                "{} usable embedding rows (of {} {}; rows all zero, not finite or repeated \
                 are dropped); aligning needs at least {PERMUTATION_ROWS_MIN} (a rotation \
                 between widths {da} and {db}: {need})",
                usable.len(),
                pairs.len(),
                if matches!(rows, Rows::Shared { .. }) {
                    "shared tokens"
                } else {
                    "rows in order"
                }
            ),
        );
    }
    let rotation_fitted = usable.len() >= need;
    if !rotation_fitted {
        report.skipped.push(format!(
            "rotation not fitted: {} usable embedding rows, a rotation between widths {da} and \
             {db} needs {need} ({} per dimension); identity and permutation were compared",
            usable.len(),
            ROWS_PER_WIDTH / 2
        ));
    }
    let fit: Vec<usize> = usable.iter().copied().step_by(2).collect();
    let check: Vec<usize> = usable.iter().copied().skip(1).step_by(2).collect();
    let (mean_a, mean_b) = (col_means(&xa, da, &fit), col_means(&xb, db, &fit));
    let fa = centred(&xa, da, &fit, &mean_a);
    let fb = centred(&xb, db, &fit, &mean_b);
    let ca = centred(&xa, da, &check, &mean_a);
    let cb = centred(&xb, db, &check, &mean_b);
    // Cross-products of the fit half's columns: d_A × d_B.
    let n_fit = fit.len();
    let xa_m = faer::MatRef::from_row_major_slice(&fa, n_fit, da);
    let xb_m = faer::MatRef::from_row_major_slice(&fb, n_fit, db);
    let mut cross = faer::Mat::<f64>::zeros(da, db);
    faer::linalg::matmul::matmul(
        cross.as_mut(),
        faer::Accum::Replace,
        xa_m.transpose(),
        xb_m,
        1.0f64,
        faer::Par::Seq,
    );
    let norm = |x: &[f64], d: usize, c: usize| -> f64 {
        x.chunks_exact(d).map(|r| r[c] * r[c]).sum::<f64>().sqrt()
    };
    let na: Vec<f64> = (0..da).map(|c| norm(&fa, da, c)).collect();
    let nb: Vec<f64> = (0..db).map(|c| norm(&fb, db, c)).collect();
    let corr = |u: usize, v: usize| {
        let d = na[u] * nb[v];
        if d > 0.0 {
            cross[(u, v)] / d
        } else {
            0.0
        }
    };
    // Signed permutation: B's dimensions (rows) against A's (columns), or the other way
    // round when B is wider; the smaller side is matched whole.
    let (rows_n, cols_n, b_rows) = if db <= da {
        (db, da, true)
    } else {
        (da, db, false)
    };
    let mut score = vec![0f32; rows_n * cols_n];
    for r in 0..rows_n {
        for c in 0..cols_n {
            let (u, v) = if b_rows { (c, r) } else { (r, c) };
            score[r * cols_n + c] = corr(u, v).abs() as f32;
        }
    }
    let assignment = lap::assign_max(&score, rows_n, cols_n).map_err(|source| Error::Align {
        compare: cmp.name.clone(),
        tensor: embed.name.clone(),
        source,
    })?;
    let mut perm: Vec<(usize, usize, f32)> = assignment
        .pairs()
        .map(|(r, c)| {
            let (u, v) = if b_rows { (c, r) } else { (r, c) };
            let s = if corr(u, v) < 0.0 { -1.0 } else { 1.0 };
            (u, v, s)
        })
        .collect();
    perm.sort_unstable_by_key(|p| p.0);
    // Rotation: the polar factor of the cross-products.
    let q = if rotation_fitted {
        Some(procrustes(cross.as_ref()).ok_or(Error::Internal(
            "the SVD of the token embeddings' cross-products did not converge",
        ))?)
    } else {
        None
    };
    // Held-out fits.
    let n_check = check.len();
    let fit_identity =
        (da == db).then(|| pearson_pairs(ca.iter().copied().zip(cb.iter().copied())));
    let fit_perm = pearson_pairs((0..n_check).flat_map(|r| {
        let (ra, rb) = (&ca[r * da..(r + 1) * da], &cb[r * db..(r + 1) * db]);
        perm.iter()
            .map(move |&(u, v, s)| (ra[u], rb[v] * f64::from(s)))
    }));
    let fit_rot = q.as_ref().map(|q| {
        // B's check rows in A's basis: Y Qᵀ.
        let cb_m = faer::MatRef::from_row_major_slice(&cb, n_check, db);
        let mut mapped = faer::Mat::<f64>::zeros(n_check, da);
        let qm = faer::MatRef::from_row_major_slice(q, da, db);
        faer::linalg::matmul::matmul(
            mapped.as_mut(),
            faer::Accum::Replace,
            cb_m,
            qm.transpose(),
            1.0f64,
            faer::Par::Seq,
        );
        pearson_pairs((0..n_check).flat_map(|r| {
            let ra = &ca[r * da..(r + 1) * da];
            let mapped = &mapped;
            (0..da).map(move |c| (ra[c], mapped[(r, c)]))
        }))
    });
    report.fit_identity = fit_identity.map(round);
    report.fit_permutation = Some(round(fit_perm));
    report.fit_rotation = fit_rot.map(round);
    let identity_perm = da == db && perm.iter().all(|&(u, v, s)| u == v && s > 0.0);
    let best = [fit_identity, Some(fit_perm), fit_rot]
        .into_iter()
        .flatten()
        .fold(f64::NEG_INFINITY, f64::max);
    let basis = match (&q, fit_rot) {
        _ if fit_identity.is_some_and(|f| f >= best - TIE) || identity_perm => Basis::Identity,
        _ if fit_perm >= best - TIE => Basis::Permutation(perm),
        (Some(q), Some(_)) => Basis::Rotation(Matrix {
            rows: da,
            cols: db,
            data: q.iter().map(|&x| x as f32).collect(),
        }),
        _ => Basis::Permutation(perm),
    };
    let chosen_fit = match &basis {
        Basis::Identity => fit_identity.unwrap_or(fit_perm),
        Basis::Permutation(_) => fit_perm,
        Basis::Rotation(_) => fit_rot.unwrap_or(fit_perm),
    };
    report.fit = round(chosen_fit);
    report.recovered = chosen_fit >= FOUND_FIT;
    let basis = match basis {
        Basis::Identity => Basis::Identity,
        other if da != db || chosen_fit >= APPLY_FIT => other,
        other => {
            let name = match other {
                Basis::Rotation(_) => "rotation",
                _ => "signed permutation",
            };
            report.skipped.push(format!(
                "the best basis ({name}, held-out fit {:.4}) is below {APPLY_FIT}: not applied, \
                 tensors compared as stored",
                chosen_fit
            ));
            report.fit = round(fit_identity.unwrap_or(0.0));
            Basis::Identity
        }
    };
    let mut out = Residual {
        report,
        views_a: BTreeMap::new(),
        views_b: BTreeMap::new(),
        withheld: Vec::new(),
        finding: None,
    };
    match basis {
        Basis::Identity => {
            out.report.basis = "identity".to_owned();
            if let Rows::Shared { pairs, .. } = rows {
                present_vocabulary(&mut out, &members, ta, tb, pairs);
            }
        }
        Basis::Permutation(perm) => {
            out.report.basis = "signed permutation".to_owned();
            out.report.matched = Some(perm.len());
            out.report.moved = Some(perm.iter().filter(|p| p.0 != p.1).count());
            out.report.sign_flips = Some(perm.iter().filter(|p| p.2 < 0.0).count());
            present_permutation(&mut out, &members, ta, tb, da, db, &perm);
        }
        Basis::Rotation(q) => {
            out.report.basis = if da == db {
                "rotation".to_owned()
            } else {
                "projection".to_owned()
            };
            present_rotation(&mut out, &members, a, b, da, db, &q, cmp)?;
        }
    }
    out.finding = finding(&out.report);
    Ok(Some(out))
}

/// The sentence a recovered, non-identity basis earns in the verdict.
fn finding(r: &ResidualReport) -> Option<String> {
    if !r.recovered {
        return None;
    }
    let over = format!(
        "recovered from {} embedding rows over {} (held-out fit {:.4})",
        r.rows_used, r.rows, r.fit
    );
    match r.basis.as_str() {
        "signed permutation" => Some(format!(
            "B's residual stream is a permutation of A's: {} of {} dimensions matched, {} \
             moved, {} with flipped sign, {over}.",
            r.matched.unwrap_or(0),
            r.width_a,
            r.moved.unwrap_or(0),
            r.sign_flips.unwrap_or(0)
        )),
        "rotation" => Some(format!(
            "B's residual stream is rotated relative to A's (orthogonal Procrustes), {over}; \
             norm gains are compared folded into the projections they feed."
        )),
        "projection" => Some(format!(
            "B's residual stream ({} wide) maps onto A's ({} wide) by a semi-orthogonal \
             projection, {over}.",
            r.width_b, r.width_a
        )),
        _ => None,
    }
}

/// Presents the token rows of B's embedding and output head in A's token order over the
/// shared tokens (A cut to them where B lacks some of A's tokens): a vocabulary extended,
/// shrunk or reordered. Token identity comes from the token strings, not from a search, so
/// these tensors stay evidence with their ordinary null.
fn present_vocabulary(
    out: &mut Residual,
    members: &[Member],
    ta: &[weightkin_core::TensorInfo],
    tb: &[weightkin_core::TensorInfo],
    pairs: &[(usize, usize)],
) {
    for m in members
        .iter()
        .filter(|m| m.layer.is_none() && matches!(m.role.as_str(), "embed" | "lm_head"))
    {
        let (sa, sb) = (&ta[m.a].shape, &tb[m.b].shape);
        let ([va, ca], [vb, cb]) = (sa.as_slice(), sb.as_slice()) else {
            continue;
        };
        let usable: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|&(x, y)| x < *va && y < *vb)
            .collect();
        let identical = *va == *vb && usable.len() == *va && usable.iter().all(|(x, y)| x == y);
        if identical || usable.is_empty() || ca != cb {
            continue;
        }
        let idx_a: Arc<Vec<usize>> = Arc::new(usable.iter().map(|p| p.0).collect());
        let idx_b: Arc<Vec<usize>> = Arc::new(usable.iter().map(|p| p.1).collect());
        if usable.len() < *va {
            out.views_a.insert(
                m.a,
                gather_view(&ta[m.a], m.a, (*va, *ca, GatherAxis::Rows), &idx_a, None),
            );
        }
        out.views_b.insert(
            m.b,
            gather_view(&tb[m.b], m.b, (*vb, *cb, GatherAxis::Rows), &idx_b, None),
        );
        out.report.tensors += 1;
        out.report.vocabulary_rows = Some(usable.len());
    }
}

/// Presents B's residual axis in A's order (signed), cutting the wider side to the matched
/// dimensions.
fn present_permutation(
    out: &mut Residual,
    members: &[Member],
    ta: &[weightkin_core::TensorInfo],
    tb: &[weightkin_core::TensorInfo],
    da: usize,
    db: usize,
    perm: &[(usize, usize, f32)],
) {
    let idx_a: Arc<Vec<usize>> = Arc::new(perm.iter().map(|p| p.0).collect());
    let idx_b: Arc<Vec<usize>> = Arc::new(perm.iter().map(|p| p.1).collect());
    let signs: Arc<Vec<f32>> = Arc::new(perm.iter().map(|p| p.2).collect());
    let cut_a = perm.len() < da;
    let mut transformed = 0;
    for m in members {
        let (sa, sb) = (&ta[m.a].shape, &tb[m.b].shape);
        let Some((ga, gb)) = gathers(m.place, sa, sb, da, db) else {
            out.report.skipped.push(format!(
                "`{}`: shapes {sa:?} and {sb:?} do not fit the residual widths",
                m.name
            ));
            continue;
        };
        let sign = match m.place {
            Place::Gain => None,
            _ => Some(Arc::clone(&signs)),
        };
        if cut_a {
            out.views_a
                .insert(m.a, gather_view(&ta[m.a], m.a, ga, &idx_a, None));
        }
        out.views_b
            .insert(m.b, gather_view(&tb[m.b], m.b, gb, &idx_b, sign));
        transformed += 1;
        if m.layer.is_none() {
            out.withheld.push(withheld(m));
        }
    }
    out.report.tensors = transformed;
    out.report.withheld = out.withheld.len();
}

fn withheld(m: &Member) -> (String, crate::report::Reason, String) {
    (
        m.name.clone(),
        crate::report::Reason::AlignmentFitted,
        format!(
            "`{}` lies on the residual axis outside the layers: after an alignment fitted on \
             the token embeddings its agreement is not independent evidence",
            m.role
        ),
    )
}

/// How a member's residual axis is gathered on each side: (rows, cols, axis) of A and B.
type GatherDims = (usize, usize, GatherAxis);

fn gathers(
    place: Place,
    sa: &[usize],
    sb: &[usize],
    da: usize,
    db: usize,
) -> Option<(GatherDims, GatherDims)> {
    match (place, sa, sb) {
        (Place::Cols, [ra, ca], [rb, cb]) if *ca == da && *cb == db => {
            Some(((*ra, da, GatherAxis::Cols), (*rb, db, GatherAxis::Cols)))
        }
        (Place::Rows, [ra, ca], [rb, cb]) if *ra == da && *rb == db => {
            Some(((da, *ca, GatherAxis::Rows), (db, *cb, GatherAxis::Rows)))
        }
        (Place::Bias | Place::Gain, [a], [b]) if *a == da && *b == db => {
            Some(((da, 1, GatherAxis::Rows), (db, 1, GatherAxis::Rows)))
        }
        _ => None,
    }
}

fn gather_view(
    t: &weightkin_core::TensorInfo,
    parent: usize,
    (rows, cols, axis): GatherDims,
    index: &Arc<Vec<usize>>,
    sign: Option<Arc<Vec<f32>>>,
) -> View {
    let shape = match (axis, t.shape.len()) {
        (GatherAxis::Rows, 1) => vec![index.len()],
        (GatherAxis::Rows, _) => vec![index.len(), cols],
        (GatherAxis::Cols, _) => vec![rows, index.len()],
    };
    View {
        name: t.name.clone(),
        shape,
        loc: Loc::Gather {
            parent,
            rows,
            cols,
            axis,
            index: Arc::clone(index),
            sign,
        },
    }
}

/// Presents B's residual axis through `q` (`d_A × d_B`), with pre-norm gains folded into the
/// projections they feed on both sides and the gains themselves withheld.
#[allow(clippy::too_many_arguments)]
fn present_rotation(
    out: &mut Residual,
    members: &[Member],
    a: Model<'_>,
    b: Model<'_>,
    da: usize,
    db: usize,
    q: &Matrix,
    cmp: &CompareSpec,
) -> Result<(), Error> {
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    // Qᵀ (d_B × d_A): B's columns times it land in A's basis.
    let mut qt = vec![0f32; db * da];
    for u in 0..da {
        for v in 0..db {
            qt[v * da + u] = q.data[u * db + v];
        }
    }
    let qt = Arc::new(Matrix {
        rows: db,
        cols: da,
        data: qt,
    });
    let q = Arc::new(q.clone());
    // Which gain feeds which projection: (layer, role) → the norm member.
    let by_key: BTreeMap<(Option<u32>, &str), &Member> = members
        .iter()
        .filter(|m| m.place == Place::Gain)
        .map(|m| ((m.layer, m.role.as_str()), m))
        .collect();
    let feeding = |m: &Member| -> Option<&Member> {
        let norm = match (m.layer.is_some(), m.role.as_str()) {
            (true, "attn.q" | "attn.k" | "attn.v") => "norm.attn",
            (true, "mlp.gate" | "mlp.up") => "norm.mlp",
            (false, "lm_head") => "norm",
            _ => return None,
        };
        by_key.get(&(m.layer, norm)).copied()
    };
    let gain = |model: Model<'_>, index: usize| -> Result<Arc<Vec<f32>>, Error> {
        let info = &model.source.tensors()[index];
        let mut v = vec![0f32; info.numel];
        model
            .source
            .read_f32(index, 0, &mut v)
            .map_err(|source| Error::Measure {
                compare: cmp.name.clone(),
                tensor: info.name.clone(),
                source: Box::new(source),
            })?;
        Ok(Arc::new(v))
    };
    let mut folded: BTreeSet<String> = BTreeSet::new();
    let mut transformed = 0;
    for m in members {
        let (sa, sb) = (&ta[m.a].shape, &tb[m.b].shape);
        if m.place == Place::Gain {
            continue;
        }
        if m.layer.is_none() {
            out.withheld.push(withheld(m));
        }
        if ta[m.a].numel > MATERIALISE_MAX || tb[m.b].numel > MATERIALISE_MAX {
            out.report.skipped.push(format!(
                "`{}`: more than {MATERIALISE_MAX} elements; a rotated view is computed in \
                 memory",
                m.name
            ));
            continue;
        }
        let norm = feeding(m).filter(|n| ta[n.a].shape == [da] && tb[n.b].shape == [db]);
        let (scale_a, scale_b) = match norm {
            Some(n) => {
                folded.insert(n.name.clone());
                (Some(gain(a, n.a)?), Some(gain(b, n.b)?))
            }
            None => (None, None),
        };
        let (va, vb) = match (m.place, sa.as_slice(), sb.as_slice()) {
            (Place::Cols, [ra, ca], [rb, cb]) if *ca == da && *cb == db => (
                scale_a.map(|s| Loc::Linear {
                    parent: m.a,
                    rows: *ra,
                    cols: da,
                    scale: Some(s),
                    left: None,
                    right: None,
                }),
                Loc::Linear {
                    parent: m.b,
                    rows: *rb,
                    cols: db,
                    scale: scale_b,
                    left: None,
                    right: Some(Arc::clone(&qt)),
                },
            ),
            (Place::Rows, [ra, _], [rb, cb]) if *ra == da && *rb == db => (
                None,
                Loc::Linear {
                    parent: m.b,
                    rows: db,
                    cols: *cb,
                    scale: None,
                    left: Some(Arc::clone(&q)),
                    right: None,
                },
            ),
            (Place::Bias, [x], [y]) if *x == da && *y == db => (
                None,
                Loc::Linear {
                    parent: m.b,
                    rows: db,
                    cols: 1,
                    scale: None,
                    left: Some(Arc::clone(&q)),
                    right: None,
                },
            ),
            _ => {
                out.report.skipped.push(format!(
                    "`{}`: shapes {sa:?} and {sb:?} do not fit the residual widths",
                    m.name
                ));
                continue;
            }
        };
        let shape_a = sa.clone();
        let shape_b = match m.place {
            Place::Cols => vec![sb[0], da],
            Place::Rows => vec![da, sb[1]],
            _ => vec![da],
        };
        if let Some(loc) = va {
            out.views_a.insert(
                m.a,
                View {
                    name: ta[m.a].name.clone(),
                    shape: shape_a,
                    loc,
                },
            );
        }
        out.views_b.insert(
            m.b,
            View {
                name: tb[m.b].name.clone(),
                shape: shape_b,
                loc: vb,
            },
        );
        transformed += 1;
    }
    for m in members.iter().filter(|m| m.place == Place::Gain) {
        let detail = if folded.contains(&m.name) {
            "a norm gain does not rotate; it is compared folded into the projections it feeds"
        } else {
            "a norm gain does not rotate (a rotated copy folds it into the next projections)"
        };
        out.withheld.push((
            m.name.clone(),
            crate::report::Reason::NotRotatable,
            detail.to_owned(),
        ));
    }
    out.report.tensors = transformed;
    out.report.withheld = out.withheld.len();
    Ok(())
}

/// Reads rows `rows` (each `d` wide) of a matrix tensor as f64, row-major.
fn read_rows(
    cmp: &CompareSpec,
    m: Model<'_>,
    index: usize,
    rows: impl Iterator<Item = usize>,
    d: usize,
) -> Result<Vec<f64>, Error> {
    let info = &m.source.tensors()[index];
    let mut buf = vec![0f32; d];
    let mut out = Vec::new();
    for r in rows {
        m.source
            .read_f32(index, r * d, &mut buf)
            .map_err(|source| Error::Measure {
                compare: cmp.name.clone(),
                tensor: info.name.clone(),
                source: Box::new(source),
            })?;
        out.extend(buf.iter().map(|&x| f64::from(x)));
    }
    Ok(out)
}

/// Sampled rows usable for fitting: finite, not all zero, and not bit-for-bit repeated in
/// either model.
fn usable_rows(xa: &[f64], da: usize, xb: &[f64], db: usize) -> Vec<usize> {
    let n = xa.len() / da.max(1);
    let key = |r: &[f64]| -> Vec<u64> { r.iter().map(|x| x.to_bits()).collect() };
    let mut count_a: BTreeMap<Vec<u64>, usize> = BTreeMap::new();
    let mut count_b: BTreeMap<Vec<u64>, usize> = BTreeMap::new();
    for r in 0..n {
        *count_a.entry(key(&xa[r * da..(r + 1) * da])).or_default() += 1;
        *count_b.entry(key(&xb[r * db..(r + 1) * db])).or_default() += 1;
    }
    let ok = |row: &[f64], counts: &BTreeMap<Vec<u64>, usize>| {
        row.iter().all(|x| x.is_finite())
            && row.iter().any(|&x| x != 0.0)
            && counts.get(&key(row)) == Some(&1)
    };
    (0..n)
        .filter(|&r| {
            let (ra, rb) = (&xa[r * da..(r + 1) * da], &xb[r * db..(r + 1) * db]);
            ok(ra, &count_a) && ok(rb, &count_b)
        })
        .collect()
}

fn col_means(x: &[f64], d: usize, rows: &[usize]) -> Vec<f64> {
    let mut m = vec![0f64; d];
    for &r in rows {
        for (s, v) in m.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *s += v;
        }
    }
    let n = rows.len().max(1) as f64;
    m.iter_mut().for_each(|s| *s /= n);
    m
}

fn centred(x: &[f64], d: usize, rows: &[usize], mean: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend(x[r * d..(r + 1) * d].iter().zip(mean).map(|(v, m)| v - m));
    }
    out
}

fn pearson_pairs(it: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut n, mut sx, mut sy, mut xx, mut yy, mut xy) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for (x, y) in it {
        n += 1.0;
        sx += x;
        sy += y;
        xx += x * x;
        yy += y * y;
        xy += x * y;
    }
    if n < 2.0 {
        return 0.0;
    }
    let cov = xy - sx * sy / n;
    let (vx, vy) = (xx - sx * sx / n, yy - sy * sy / n);
    if vx > 0.0 && vy > 0.0 {
        cov / (vx * vy).sqrt()
    } else {
        0.0
    }
}

/// The polar factor `U Vᵀ` of `m` (`d_A × d_B`, thin SVD), row-major; `None` if the SVD
/// does not converge.
fn procrustes(m: faer::MatRef<'_, f64>) -> Option<Vec<f64>> {
    let svd = m.thin_svd().ok()?;
    let (u, v) = (svd.U(), svd.V());
    let mut q = faer::Mat::<f64>::zeros(m.nrows(), m.ncols());
    faer::linalg::matmul::matmul(
        q.as_mut(),
        faer::Accum::Replace,
        u,
        v.transpose(),
        1.0f64,
        faer::Par::Seq,
    );
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.push(q[(i, j)]);
        }
    }
    out.iter().all(|x| x.is_finite()).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn procrustes_recovers_a_rotation() {
        // A 3 × 3 rotation about z by 30°, applied to random rows.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let r = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
        let mut rng = weightkin_core::rng::Rng::new(7);
        let n = 50;
        let x: Vec<f64> = (0..n * 3).map(|_| rng.normal()).collect();
        let mut y = vec![0f64; n * 3];
        for i in 0..n {
            for j in 0..3 {
                y[i * 3 + j] = (0..3).map(|k| x[i * 3 + k] * r[k * 3 + j]).sum();
            }
        }
        let xm = faer::MatRef::from_row_major_slice(&x, n, 3);
        let ym = faer::MatRef::from_row_major_slice(&y, n, 3);
        let m = xm.transpose() * ym;
        let q = procrustes(m.as_ref()).unwrap();
        for (got, want) in q.iter().zip(r) {
            assert!((got - want).abs() < 1e-9, "{q:?}");
        }
    }

    #[test]
    fn pearson_pairs_is_one_for_a_scaled_copy_and_zero_for_constants() {
        let v: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((pearson_pairs(v.into_iter()) - 1.0).abs() < 1e-12);
        assert_eq!(pearson_pairs((0..5).map(|_| (1.0, 2.0))), 0.0);
    }

    #[test]
    fn usable_rows_drop_zero_repeated_and_non_finite_rows() {
        // Rows: ok, zero in A, repeated in B (rows 2 and 3), NaN in A, ok.
        let xa = [
            1.0,
            2.0,
            0.0,
            0.0,
            3.0,
            4.0,
            5.0,
            6.0,
            f64::NAN,
            1.0,
            7.0,
            8.0,
        ];
        let xb = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0];
        assert_eq!(usable_rows(&xa, 2, &xb, 2), vec![0, 5]);
    }
}
