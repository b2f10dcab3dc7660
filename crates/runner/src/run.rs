//! The pipeline: a validated recipe through every stage to its report.
//!
//! ```text
//! open ─▶ (align units) ─▶ plan ─▶ (grids ─▶ align ─▶ plan again along the alignment) ─▶ measure ⇄ calibrate ─▶ judge ─▶ report
//! ```
//!
//! With `permutation = "auto"`, unit alignment ([`units`]) comes first: it recovers B's MLP
//! hidden-unit order (and, for a width-pruned B, the subset of A's units it kept), and every
//! later stage sees both models through its permuted and cut views; the aligned classes'
//! nulls come from the same alignment across layers and replace the calibrated ones.
//!
//! Measure and calibrate interleave batch by batch: the measure stage keeps each layered
//! pair's calibration subsample while the data is in cache, and the cross-layer null of a
//! class is computed as soon as its batch is done, so the subsamples held at once stay within
//! [`calibrate::SAMPLE_MEMORY`].
//!
//! Parallelism: tensor pairs run on the current rayon pool, and each pair's chunks run in
//! parallel within it ([`weightkin_core::pair_moments`]); rayon's work stealing keeps both
//! levels on one set of threads without oversubscription. Results are collected in pair order
//! and chunks merge in chunk order, so the report does not depend on the thread count.

use std::collections::{BTreeMap, BTreeSet};

use weightkin_core::{FileHashers, Registry, Samples};

use crate::align::{self, units, LayerRemap};
use crate::calibrate::{self, Class};
use crate::correspond::{self, Views};
use crate::judge;
use crate::measure::grid::{self, LayeredModel};
use crate::measure::pairs::{self, Job, Measured};
use crate::open::stamp::Stamps;
use crate::open::{FileHashes, Models};
use crate::plan::{self, Model, Pairing};
use crate::recipe::{Align, CompareSpec, PairingMode, Permutation, Recipe};
use crate::report::{
    class_summaries, AuditInfo, Comparison, CorrespondenceReport, PairedBy, Report, Summary,
    TensorRow, Tool, Unpaired, SCHEMA_VERSION,
};
use crate::{Error, RunOptions};

/// Runs `recipe` and returns its report.
pub fn run(recipe: &Recipe, registry: &Registry, opts: &RunOptions<'_>) -> Result<Report, Error> {
    let mut models = Models::open(recipe, registry, opts)?;
    // Any model file that changes from here to the end voids the audit.
    let stamps = Stamps::take(&models)?;
    // Files' hashes: from the cache where it has them, else collected piecewise by the
    // comparisons' passes and completed after them.
    let hashes = FileHashes::begin(&mut models, opts);
    let mut comparisons = Vec::new();
    for cmp in &recipe.compares {
        opts.checkpoint()?;
        let references = cmp
            .references
            .iter()
            .map(|r| Ok(models.get(r)?.named()))
            .collect::<Result<Vec<_>, Error>>()?;
        let prepared = prepare(recipe, cmp, &models)?;
        comparisons.push(compare(cmp, &prepared, &references, &hashes.hashers, opts)?);
    }
    // Before the hash pass maps files again, and after it.
    stamps.check()?;
    hashes.finish(&mut models, opts)?;
    stamps.check()?;
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "weightkin",
            version: env!("CARGO_PKG_VERSION"),
        },
        audit: AuditInfo {
            name: recipe.name.clone(),
            description: recipe.description.clone(),
            recipe_blake3: recipe.blake3.clone(),
            recipe: recipe.source.clone(),
        },
        models: models.into_reports(),
        comparisons,
    })
}

/// The two models of a comparison as the plan pairs them: presented (fused tensors split,
/// some transposed) and named — by the recipe's rename rules, or, under automatic pairing,
/// with each of B's tensors that corresponds to one of A's under A's name.
pub struct Prepared<'a> {
    pub(crate) a: Views<'a>,
    pub(crate) a_names: BTreeMap<String, usize>,
    pub(crate) b: Views<'a>,
    pub(crate) b_names: BTreeMap<String, usize>,
    /// How each pair not paired by equal stored names was found, by (A's) name.
    pub(crate) paired_by: BTreeMap<String, PairedBy>,
    /// Tensors replaced by views, fused tensors not split.
    pub(crate) notes: Vec<Unpaired>,
    /// What automatic pairing found.
    pub(crate) correspondence: Option<CorrespondenceReport>,
    /// Tensors split into parts (A, B) and B's tensors transposed, by stored name.
    pub(crate) presented: (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>),
    /// Head counts the recipe states for A and B (`heads`, `kv-heads`).
    pub(crate) heads: units::Heads,
}

impl Prepared<'_> {
    pub(crate) fn a(&self) -> Model<'_> {
        Model {
            source: &self.a,
            names: &self.a_names,
        }
    }

    pub(crate) fn b(&self) -> Model<'_> {
        Model {
            source: &self.b,
            names: &self.b_names,
        }
    }
}

/// Presents and names the two models of `cmp` for its pairing mode.
pub fn prepare<'a>(
    recipe: &Recipe,
    cmp: &CompareSpec,
    models: &'a Models,
) -> Result<Prepared<'a>, Error> {
    let (a, b) = (models.get(&cmp.a)?, models.get(&cmp.b)?);
    let heads = units::Heads {
        a: recipe.models.get(&cmp.a).and_then(|s| s.heads),
        b: recipe.models.get(&cmp.b).and_then(|s| s.heads),
    };
    fn side(which: &'static str, notes: Vec<Unpaired>) -> impl Iterator<Item = Unpaired> {
        notes.into_iter().map(move |mut u| {
            u.detail = format!("{which}: {}", u.detail);
            u
        })
    }
    if cmp.pairing == PairingMode::Auto {
        let auto = correspond::auto(
            cmp,
            (&cmp.a, a.source.as_ref()),
            (&cmp.b, b.source.as_ref()),
        )?;
        let mut paired_by = BTreeMap::new();
        let mut b_names: BTreeMap<String, usize> = auto.b.names.clone();
        let mut any = false;
        for f in &auto.found {
            if f.by.method != crate::report::PairMethod::Name {
                any = true;
                if let Some(i) = b_names.remove(&f.b) {
                    b_names.insert(f.a.clone(), i);
                }
                paired_by.insert(f.a.clone(), f.by.clone());
            }
        }
        let notes = side("A", auto.a.notes)
            .chain(side("B", auto.b.notes))
            .collect();
        return Ok(Prepared {
            a: auto.a.views,
            a_names: auto.a.names,
            b: auto.b.views,
            b_names,
            paired_by,
            notes,
            correspondence: any.then_some(auto.report),
            presented: (auto.split_a, auto.split_b, auto.transposed),
            heads,
        });
    }
    let named = |name: &str, m: &'a crate::open::Opened| -> Result<_, Error> {
        let spec = recipe.models.get(name);
        let p = correspond::present(
            name,
            m.source.as_ref(),
            &|n| spec.is_some_and(|s| s.splits(n)),
            &|n| spec.is_some_and(|s| s.transposes(n)),
        )?;
        let rules = spec.map_or(&[][..], |s| &s.rename[..]);
        let (names, found) =
            plan::renamed_names(name, p.names.iter().map(|(n, &i)| (n.as_str(), i)), rules)?;
        Ok((p, names, found))
    };
    let (pa, a_names, fa) = named(&cmp.a, a)?;
    let (pb, b_names, fb) = named(&cmp.b, b)?;
    let paired_by = fa
        .into_iter()
        .chain(fb)
        .map(|(name, f)| {
            let by = PairedBy {
                method: f.method,
                rule: format!("recipe rename rule (found by {})", f.method.name()),
                score: None,
                candidates: f.candidates,
            };
            (name, by)
        })
        .collect();
    let notes = side("A", pa.notes).chain(side("B", pb.notes)).collect();
    Ok(Prepared {
        a: pa.views,
        a_names,
        b: pb.views,
        b_names,
        paired_by,
        notes,
        correspondence: None,
        presented: Default::default(),
        heads,
    })
}

/// One comparison through plan, measure, calibrate and judge.
fn compare(
    cmp: &CompareSpec,
    prepared: &Prepared<'_>,
    references: &[Model<'_>],
    hashers: &FileHashers,
    opts: &RunOptions<'_>,
) -> Result<Comparison, Error> {
    // The residual basis first, then units and heads on top of it: everything after them
    // sees B in A's basis and unit order.
    let residual = match cmp.permutation {
        Permutation::Auto => {
            let rows = residual_rows(prepared)?;
            align::residual::align(cmp, prepared.a(), prepared.b(), &rows)?
        }
        Permutation::Off => None,
    };
    let in_basis = residual
        .as_ref()
        .map(|r| r.present(&cmp.a, &prepared.a, &cmp.b, &prepared.b))
        .transpose()?;
    let (a0, b0) = match &in_basis {
        Some((va, vb)) => (
            Model {
                source: va,
                names: &prepared.a_names,
            },
            Model {
                source: vb,
                names: &prepared.b_names,
            },
        ),
        None => (prepared.a(), prepared.b()),
    };
    let units = match cmp.permutation {
        Permutation::Auto => Some(units::align(cmp, a0, b0, head_counts(prepared)?)?),
        Permutation::Off => None,
    };
    let gathered = units
        .as_ref()
        .map(|u| u.present(&cmp.a, a0.source, &cmp.b, b0.source))
        .transpose()?;
    let (a, b) = match &gathered {
        Some((ga, gb)) => (
            Model {
                source: ga,
                names: &prepared.a_names,
            },
            Model {
                source: gb,
                names: &prepared.b_names,
            },
        ),
        None => (a0, b0),
    };
    let aligned = grids_and_alignment(cmp, a, b, opts)?;
    let mut pairing = plan::pair(cmp, a, b, &|name| aligned.remap.target(name));
    if let Some(r) = &residual {
        withhold(&mut pairing, &r.withheld);
    }
    crate::open::prefetch(cmp, a, b, &pairing.pairs, opts)?;
    for p in &mut pairing.pairs {
        p.paired_by = prepared.paired_by.get(&p.name).cloned();
    }
    for note in &prepared.notes {
        if note.reason != crate::report::Reason::FusedNotSplit {
            pairing.unpaired.push(note.clone());
            continue;
        }
        // A fused tensor that could not be split was offered whole: listed once, with why it
        // was not split, if it found no counterpart whole; not listed if it did.
        let only_in = |u: &Unpaired| {
            u.name == note.name
                && matches!(
                    u.reason,
                    crate::report::Reason::OnlyInA | crate::report::Reason::OnlyInB
                )
        };
        if let Some(u) = pairing.unpaired.iter_mut().find(|u| only_in(u)) {
            u.detail = format!("{}; no counterpart found for it whole", note.detail);
            u.reason = note.reason;
        }
    }
    pairing
        .unpaired
        .sort_by(|x, y| (&x.name, x.reason).cmp(&(&y.name, y.reason)));
    let ta = a.source.tensors();
    let elements: u64 = pairing.pairs.iter().map(|p| ta[p.a].numel as u64).sum();
    opts.progress
        .start(&format!("comparing {}", cmp.name), elements, "elements");
    let MeasuredPairs {
        measured,
        cross_layer,
    } = measure_and_calibrate(cmp, a, b, &pairing, hashers, opts)?;
    opts.progress.finish();

    let mut nulls = calibrate::nulls(cmp, a, cross_layer, references, opts)?;
    // An aligned class is judged against the same alignment across layers, whatever null it
    // had: the others were measured without the search.
    for (class, samples) in units.iter().flat_map(|u| &u.nulls) {
        let null = calibrate::Null {
            kind: crate::report::NullKind::AlignedCrossLayer,
            samples: samples.clone(),
            trimmed: BTreeMap::new(),
        };
        nulls.insert(class.clone(), null);
    }
    calibrate::shift_nulls(cmp, a, b, &pairing.pairs, &mut nulls)?;
    let judged: Vec<judge::Measured<'_>> = pairing
        .pairs
        .iter()
        .zip(&measured)
        .map(|(pair, m)| judge::Measured {
            pair,
            moments: m.moments,
            ulp: m.ulp,
            magnitudes: m.magnitudes,
        })
        .collect();
    let sources = judge::Sources {
        a: a.source,
        b: b.source,
    };
    let (evidence, mut verdicts) = judge::judge(cmp, &judged, sources, &nulls, &pairing.unpaired);
    if let Some(finding) = residual.as_ref().and_then(|r| r.finding.as_ref()) {
        verdicts.sentence.push(' ');
        verdicts.sentence.push_str(finding);
    }
    if let Some(finding) = units.as_ref().and_then(|u| u.report.finding.as_ref()) {
        verdicts.sentence.push(' ');
        verdicts.sentence.push_str(finding);
    }
    let mut rows: Vec<TensorRow> = measured.into_iter().map(|m| m.row).collect();
    for (row, e) in rows.iter_mut().zip(evidence) {
        row.evidence = Some(e);
    }

    let metric_names: Vec<String> = cmp.metrics.iter().map(|m| m.spec.name.to_owned()).collect();
    let mut by_reason = BTreeMap::new();
    for u in &pairing.unpaired {
        *by_reason.entry(u.reason).or_insert(0) += 1;
    }
    Ok(Comparison {
        name: cmp.name.clone(),
        a: cmp.a.clone(),
        b: cmp.b.clone(),
        include: cmp.include.clone(),
        exclude: cmp.exclude.clone(),
        summary: Summary {
            compared: rows.len(),
            elements,
            not_compared: pairing.unpaired.len(),
            not_compared_by_reason: by_reason,
        },
        classes: class_summaries(&rows, &metric_names),
        metrics: metric_names,
        tensors: rows,
        not_compared: pairing.unpaired,
        grids: aligned.grids,
        skipped_grids: aligned.skipped_grids,
        alignments: aligned.alignments,
        correspondence: prepared.correspondence.clone(),
        residual: residual.map(|r| r.report),
        units: units.map(|u| u.report),
        verdicts,
    })
}

/// Which embedding rows of A and B hold the same token: by token strings where both models
/// have a vocabulary ([`align::vocab`]), else in row order.
fn residual_rows(prepared: &Prepared<'_>) -> Result<align::residual::Rows, Error> {
    let va = align::vocab::vocabulary(&prepared.a)?;
    let vb = align::vocab::vocabulary(&prepared.b)?;
    Ok(match (va, vb) {
        (Some(va), Some(vb)) => align::residual::Rows::Shared {
            pairs: align::vocab::shared(&va, &vb).rows,
            source_a: format!("A: {}", va.source),
            source_b: format!("B: {}", vb.source),
        },
        (None, None) => align::residual::Rows::Order("no token strings for A or B".to_owned()),
        (None, Some(_)) => align::residual::Rows::Order("no token strings for A".to_owned()),
        (Some(_), None) => align::residual::Rows::Order("no token strings for B".to_owned()),
    })
}

/// Attention head counts of both models, where their metadata or `config.json` gives them.
fn head_counts(prepared: &Prepared<'_>) -> Result<units::Heads, Error> {
    let of = |stated: Option<(usize, usize)>, m: &Views<'_>| -> Result<_, Error> {
        if stated.is_some() {
            return Ok(stated);
        }
        Ok(align::facts::head_counts(m)?.map(|h| (h.heads, h.kv_heads)))
    };
    Ok(units::Heads {
        a: of(prepared.heads.a, &prepared.a)?,
        b: of(prepared.heads.b, &prepared.b)?,
    })
}

/// Takes the pairs the residual alignment withholds out of the comparison and lists them.
fn withhold(pairing: &mut plan::Pairing, withheld: &[(String, crate::report::Reason, String)]) {
    let by_name: BTreeMap<&str, (&crate::report::Reason, &String)> = withheld
        .iter()
        .map(|(n, r, d)| (n.as_str(), (r, d)))
        .collect();
    let (kept, out): (Vec<plan::Pair>, Vec<plan::Pair>) = std::mem::take(&mut pairing.pairs)
        .into_iter()
        .partition(|p| !by_name.contains_key(p.name.as_str()));
    pairing.pairs = kept;
    for p in out {
        if let Some((reason, detail)) = by_name.get(p.name.as_str()) {
            pairing.unpaired.push(crate::report::Unpaired {
                name: p.name,
                reason: **reason,
                detail: (*detail).clone(),
            });
        }
    }
}

/// What the grids and the layer alignment give a comparison.
#[derive(Default)]
struct Aligned {
    grids: Vec<crate::report::Grid>,
    skipped_grids: Vec<crate::report::SkippedGrid>,
    alignments: Vec<crate::report::Alignment>,
    /// Where B's layers pair in A (empty unless `align = "auto"` found a meaningful
    /// alignment).
    remap: LayerRemap,
}

/// Layer grids and alignment come first: `align = "auto"` pairs along the alignment.
fn grids_and_alignment(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    opts: &RunOptions<'_>,
) -> Result<Aligned, Error> {
    let Some(spec) = &cmp.grid else {
        return Ok(Aligned::default());
    };
    let selected = |m: Model<'_>| plan::layered(m.names.iter().filter(|(n, _)| cmp.selects(n)));
    let (la, lb) = (selected(a), selected(b));
    let (grids, skipped_grids) = grid::grids(
        cmp,
        spec,
        LayeredModel {
            source: a.source,
            layered: &la,
        },
        LayeredModel {
            source: b.source,
            layered: &lb,
        },
        opts,
    )?;
    let mut alignments = align::from_grids(&grids);
    let remap = if cmp.align == Align::Auto {
        LayerRemap::apply(&mut alignments)
    } else {
        LayerRemap::default()
    };
    Ok(Aligned {
        grids,
        skipped_grids,
        alignments,
        remap,
    })
}

/// Measures every pair (in pair order) and computes each class's cross-layer null from the
/// subsamples its batch kept.
///
/// One pass per pair measures it, keeps its calibration subsample and histograms its ULP
/// distances while the data is in cache. Pairs run in batches of whole classes (all of a
/// batch's pairs in parallel) holding at most [`calibrate::SAMPLE_MEMORY`] bytes of
/// subsamples: each class's cross-layer null is computed when its batch is done, and the
/// subsamples dropped, so memory stays bounded however many tensors a model has.
fn measure_and_calibrate(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    pairing: &Pairing,
    hashers: &FileHashers,
    opts: &RunOptions<'_>,
) -> Result<MeasuredPairs, Error> {
    let pairs = &pairing.pairs;
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    let mut classes_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        classes_of.entry(&p.class).or_default().push(i);
    }
    let classes: Vec<Class<'_>> = calibrate::classes(&classes_of, pairs);
    let models = pairs::Models {
        a: a.source,
        b: b.source,
    };
    let mut slots: Vec<Option<Measured>> = (0..pairs.len()).map(|_| None).collect();
    let mut cross_layer: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for batch in calibrate::batches(&classes, pairs, ta) {
        let mut jobs: Vec<Job> = batch
            .iter()
            .flat_map(|&c| {
                let class = &classes[c];
                class.members.iter().map(move |&i| {
                    let p = &pairs[i];
                    let (x, y) = (a.source.tensors().get(p.a), b.source.tensors().get(p.b));
                    Job {
                        pair: i,
                        samples: class.sample_budget(pairs, i),
                        magnitudes: [x, y]
                            .into_iter()
                            .flatten()
                            .any(judge::generated::wants_magnitudes),
                    }
                })
            })
            .collect();
        // In the order A stores them (pairs whose A has no known place first, in their order):
        // each thread then reads its share of the file front to back, and the huge pages it
        // hands back are whole (`MappedFile::release`), where class by class left a partly
        // read block at every tensor's edge until the neighbouring class came. Each pair's
        // result is its own, so the order changes no report byte.
        jobs.sort_by_key(|j| {
            let t = pairs[j.pair].a;
            a.source
                .stored_range(t)
                .map(|r| (r.file, r.start))
                .or_else(|| {
                    let raw = a.source.raw(t)?;
                    Some((0, raw.file.offset_of(raw.bytes)? as u64))
                })
        });
        let done = pairs::measure_batch(cmp, models, pairs, &jobs, hashers, opts)?;
        let mut samples: BTreeMap<usize, Samples> = BTreeMap::new();
        for mut m in done {
            if let Some(kept) = m.samples.take() {
                samples.insert(m.pair, kept);
            }
            let i = m.pair;
            slots[i] = Some(m);
        }
        for &c in &batch {
            let class = &classes[c];
            if class.cross_layer {
                let values = calibrate::cross_layer_null(&class.layered, pairs, ta, tb, &samples)?;
                if !values.is_empty() {
                    cross_layer.insert(class.name.to_owned(), values);
                }
            }
        }
    }
    let measured = slots
        .into_iter()
        .map(|s| s.ok_or(Error::Internal("a tensor pair was not measured")))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(MeasuredPairs {
        measured,
        cross_layer,
    })
}

/// Every pair measured, and the cross-layer null samples by class.
struct MeasuredPairs {
    /// In pair order.
    measured: Vec<Measured>,
    /// Class → Pearson values of A's layer i against B's layer j ≠ i.
    cross_layer: BTreeMap<String, Vec<f64>>,
}
