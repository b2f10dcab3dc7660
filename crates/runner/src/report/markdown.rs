//! Markdown rendering of a [`Report`], for people and pull requests.
//!
//! Reads only the report model, so it cannot show anything the JSON does not hold. Each
//! section of the document is one function, called in document order by [`render`] (the
//! report's sections) and `comparison` (one comparison's).

use std::fmt::Write;

use std::collections::BTreeMap;

use crate::report::{
    z_text, Alignment, Comparison, CorrespondenceReport, Grid, Method, PairMethod, Report, Role,
    Stats, TensorRow, UnitsReport,
};

/// Formats a metric value with fixed precision.
use crate::report::fixed as num;

/// Integer with thousands separators.
use crate::report::thousands as count;

/// Escapes text for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn code(s: &str) -> String {
    format!("`{}`", cell(s))
}

/// Renders the whole report: the title, then its sections in document order.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    head(&mut o, r);
    verdicts(&mut o, r);
    models(&mut o, r);
    for c in &r.comparisons {
        comparison(&mut o, c);
    }
    o
}

/// The title, the audit's description and what produced the report.
fn head(o: &mut String, r: &Report) {
    // `write!` into a String cannot fail (here and in every function below).
    let _ = writeln!(o, "# weightkin audit: {}\n", r.audit.name);
    if let Some(d) = &r.audit.description {
        let _ = writeln!(o, "{d}\n");
    }
    let _ = writeln!(
        o,
        "{} {} · report schema {} · recipe BLAKE3 `{}`\n",
        r.tool.name, r.tool.version, r.schema_version, r.audit.recipe_blake3
    );
}

/// The verdict section: first in the report, in plain sentences, then the caveats.
fn verdicts(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Verdicts\n");
    for c in &r.comparisons {
        let v = &c.verdicts;
        let _ = writeln!(o, "**{}: {}.** {}\n", c.name, v.overall.name(), v.sentence);
        for comp in &v.components {
            let _ = writeln!(o, "- {}", comp.sentence);
        }
        let _ = writeln!(o, "\nWhat this does not show:\n");
        for caveat in &v.caveats {
            let _ = writeln!(o, "- {caveat}");
        }
        o.push('\n');
    }
    if let Some(c) = r.comparisons.first() {
        method(o, &c.verdicts.method);
    }
}

/// How the verdicts were reached, stated once under them.
fn method(o: &mut String, m: &Method) {
    let _ = writeln!(
        o,
        "\nMethod: {}; nulls: {}; {} (α = {}); a tensor supports derivation when its \
         adjusted p < α and Pearson exceeds the null mean by ≥ {}; a component is derived \
         when ≥ {:.0} % of its evidence tensors do, independent when none is significant. \
         {}.\n",
        m.statistic,
        m.nulls,
        m.correction,
        m.alpha,
        m.min_effect,
        m.min_support_fraction * 100.0,
        m.combination
    );
}

/// Writes a table's header row and its alignment rule: the fixed columns (`head`, `rule`),
/// then one group of columns per item of `groups` (` item |`), each ruled by `group_rule`.
fn table_head(
    o: &mut String,
    head: &str,
    rule: &str,
    groups: impl IntoIterator<Item = String>,
    group_rule: &str,
) {
    let mut head = head.to_owned();
    let mut rule = rule.to_owned();
    for g in groups {
        let _ = write!(head, " {g} |");
        rule.push_str(group_rule);
    }
    let _ = writeln!(o, "{head}\n{rule}");
}

/// The models section: the models, their files, and the transforms applied on load.
fn models(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Models\n");
    model_table(o, r);
    file_table(o, r);
    hub_table(o, r);
    transform_table(o, r);
}

/// A row per model: where it is, its format and size, and its tensors' dtypes.
fn model_table(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "| model | path | format | tensors | parameters | dtypes |"
    );
    let _ = writeln!(o, "|---|---|---|---:|---:|---|");
    for m in &r.models {
        let dtypes: Vec<String> = m.dtypes.iter().map(|(d, n)| format!("{d}×{n}")).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&m.name),
            code(&m.path),
            m.format,
            m.tensors,
            count(m.parameters),
            dtypes.join(" ")
        );
    }
}

/// A row per model file, with its size and hash.
fn file_table(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n| model | file | bytes | BLAKE3 |");
    let _ = writeln!(o, "|---|---|---:|---|");
    for m in &r.models {
        for f in &m.files {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&m.name),
                code(&f.path),
                count(f.bytes),
                file_hash(f)
            );
        }
    }
}

/// A file's BLAKE3, or what stands in for it when the file was only partly fetched.
fn file_hash(f: &super::FileReport) -> String {
    match (&*f.blake3, &f.sha256) {
        ("", Some(sha)) => format!("partly fetched (hub SHA-256 `{sha}`)"),
        ("", None) => "partly fetched".to_owned(),
        (b3, _) => format!("`{b3}`"),
    }
}

/// A row per `hf://` model: repository, resolved commit, origin, and what identifies the
/// bytes; nothing when no model is one.
fn hub_table(o: &mut String, r: &Report) {
    let hub: Vec<_> = r
        .models
        .iter()
        .filter_map(|m| Some((m, m.hub.as_ref()?)))
        .collect();
    if hub.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n| model | hub repository | revision | commit | from | identified by |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for (m, h) in hub {
        let tensors = if h.tensors.is_empty() {
            String::new()
        } else {
            format!(" ({} tensors, BLAKE3 in the JSON report)", h.tensors.len())
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | `{}` | {} | {}{} |",
            cell(&m.name),
            code(&h.repo),
            code(&h.revision),
            h.commit,
            match h.origin {
                weightkin_hub::Origin::HfCache => "Hugging Face cache",
                weightkin_hub::Origin::Hub => "hub (range requests)",
            },
            h.identified_by.text(),
            tensors
        );
    }
}

/// A row per transform a format applied on load; nothing when no model has one.
fn transform_table(o: &mut String, r: &Report) {
    let transformed: Vec<_> = r
        .models
        .iter()
        .filter(|m| !m.transforms.is_empty())
        .collect();
    if transformed.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n| model | transform applied on load | tensors | detail |"
    );
    let _ = writeln!(o, "|---|---|---:|---|");
    for m in transformed {
        for t in &m.transforms {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&m.name),
                code(&t.name),
                t.tensors,
                cell(&t.detail)
            );
        }
    }
}

/// One comparison's section, its parts in document order.
fn comparison(o: &mut String, c: &Comparison) {
    comparison_intro(o, c);
    if let Some(k) = &c.correspondence {
        correspondence(o, k);
    }
    evidence(o, c);
    class_table(o, c);
    per_layer(o, c);
    if let Some(r) = &c.residual {
        residual(o, r);
    }
    if let Some(u) = &c.units {
        units(o, u);
    }
    for a in &c.alignments {
        alignment(o, a);
    }
    for g in &c.grids {
        grid(o, g);
    }
    skipped_grids(o, c);
    tensor_table(o, c);
    not_compared(o, c);
}

/// The comparison's heading: its models, metrics, selection and counts.
fn comparison_intro(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "\n## {}\n", c.name);
    let _ = writeln!(
        o,
        "A = `{}`, B = `{}` · metrics: {} · include: {} · exclude: {}\n",
        c.a,
        c.b,
        c.metrics.join(", "),
        globs(&c.include, "everything"),
        globs(&c.exclude, "nothing"),
    );
    let _ = writeln!(
        o,
        "Compared **{}** tensor pairs ({} elements per side); **{}** tensors not compared.\n",
        c.summary.compared,
        count(c.summary.elements),
        c.summary.not_compared
    );
}

/// What automatic pairing found: prefix mappings, then how much of each component found a
/// counterpart.
pub fn correspondence(o: &mut String, k: &CorrespondenceReport) {
    let _ = writeln!(
        o,
        "### Correspondence (automatic pairing)
"
    );
    let methods = |m: &BTreeMap<PairMethod, usize>| {
        m.iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        o,
        "Pairs found: {}. A pair chosen by content among k candidates has its p-value \
         multiplied by k.\n",
        methods(&k.methods)
    );
    if !k.mappings.is_empty() {
        let _ = writeln!(o, "| A | ≙ B | layers | tensors | paired by |");
        let _ = writeln!(o, "|---|---|---:|---:|---|");
        for m in &k.mappings {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                code(&m.a),
                code(&m.b),
                if m.layers == 0 {
                    "—".to_owned()
                } else {
                    m.layers.to_string()
                },
                m.tensors,
                methods(&m.methods)
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "| model | component | tensors | with a counterpart |");
    let _ = writeln!(o, "|---|---|---:|---:|");
    for c in &k.coverage {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            c.model.to_uppercase(),
            cell(&c.component),
            c.tensors,
            c.paired
        );
    }
    let _ = writeln!(o);
}

/// Glob patterns as code, space-separated; `none` when there are none.
fn globs(patterns: &[String], none: &str) -> String {
    if patterns.is_empty() {
        return none.to_owned();
    }
    patterns
        .iter()
        .map(|g| code(g))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pvalue(p: Option<f64>) -> String {
    match p {
        None => "—".to_owned(),
        Some(p) if p < 1e-300 => "<1e-300".to_owned(),
        Some(p) => format!("{p:.1e}"),
    }
}

/// Per component: the numbers behind the verdict, and what is not evidence.
fn evidence(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "### Evidence by component\n");
    let _ = writeln!(
        o,
        "| component | verdict | tensors | evidence | init-prior | supporting | significant | \
         identical | median Pearson | median z | min adj. p | Stouffer z |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for k in &c.verdicts.components {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&k.name),
            k.verdict.name(),
            k.tensors,
            k.evidence,
            k.init_prior,
            k.supporting,
            k.significant,
            k.identical,
            num(k.median_pearson),
            z_text(k.median_z),
            pvalue(k.min_p_adjusted),
            z_text(k.stouffer_z),
        );
    }
    for k in &c.verdicts.components {
        if k.not_evidence.is_empty() {
            continue;
        }
        let _ = writeln!(o, "\nNot evidence in {}:\n", k.name);
        for e in &k.not_evidence {
            let _ = writeln!(o, "- {}: {}", code(&e.tensor), e.reason);
        }
    }
    o.push('\n');
}

/// The class table: a row per tensor class, median, min and max of every metric.
fn class_table(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "### By tensor class\n");
    table_head(
        o,
        "| class | kind | n | layers |",
        "|---|---|---:|---|",
        c.metrics.iter().map(|m| format!("{m} median | min | max")),
        "---:|---:|---:|",
    );
    for k in &c.classes {
        let mut row = format!(
            "| {} | {} | {} | {} |",
            code(&k.class),
            k.kind.name(),
            k.count,
            layer_range(&k.layers)
        );
        for m in &c.metrics {
            let _ = write!(
                row,
                " {} |",
                stat_cells(k.stats.iter().find(|s| &s.metric == m))
            );
        }
        let _ = writeln!(o, "{row}");
    }
}

/// A class's layers: `first–last`, the only one, or "—" for an unlayered class.
fn layer_range(layers: &[u32]) -> String {
    match (layers.first(), layers.last()) {
        (Some(first), Some(last)) if layers.len() > 1 => format!("{first}–{last}"),
        (Some(only), _) => only.to_string(),
        _ => "—".to_owned(),
    }
}

fn stat_cells(s: Option<&Stats>) -> String {
    match s {
        Some(s) => format!("{} | {} | {}", num(s.median), num(s.min), num(s.max)),
        None => "— | — | —".to_owned(),
    }
}

/// One table per metric: a row per layer, a column per layered class (its role, the part of
/// the class after the layer index), so depth profiles can be read down a column.
fn per_layer(o: &mut String, c: &Comparison) {
    let layered: Vec<_> = c.classes.iter().filter(|k| !k.layers.is_empty()).collect();
    let mut all_layers: Vec<u32> = layered
        .iter()
        .flat_map(|k| k.layers.iter().copied())
        .collect();
    all_layers.sort_unstable();
    all_layers.dedup();
    if all_layers.is_empty() {
        return;
    }
    let role = |class: &str| {
        class
            .split_once("*.")
            .map_or(class, |(_, rest)| rest)
            .to_owned()
    };
    for m in &c.metrics {
        let _ = writeln!(o, "\n### Per layer: {m}\n");
        table_head(
            o,
            "| layer |",
            "|---:|",
            layered.iter().map(|k| code(&role(&k.class))),
            "---:|",
        );
        for layer in &all_layers {
            let mut row = format!("| {layer} |");
            for k in &layered {
                let v = k
                    .layers
                    .iter()
                    .position(|l| l == layer)
                    .and_then(|i| k.per_layer.get(m).and_then(|s| s.get(i)).copied().flatten());
                let _ = write!(row, " {} |", num(v));
            }
            let _ = writeln!(o, "{row}");
        }
    }
}

/// One layer alignment: what it was recovered from, whether it holds, and its mapping.
fn alignment(o: &mut String, a: &Alignment) {
    let _ = writeln!(
        o,
        "\n### Layer alignment: `{}`\n\nFrom the {} grids of {} class(es); mean {} along \
         the alignment, {} off it.{}{}\n",
        a.stack,
        a.metric,
        a.classes.len(),
        num(a.score),
        num(a.off_mapping_mean),
        if a.meaningful {
            ""
        } else {
            " **No layer correspondence**: the alignment is no better than any other \
             pairing of layers, and is not applied."
        },
        if a.applied {
            " Tensors were paired along it (`align = \"auto\"`)."
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "| B layer | A layer (monotone) | score | best A layer | score |"
    );
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|");
    for (m, b) in a.mapping.iter().zip(&a.best_match) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            m.b,
            m.a,
            num(m.score),
            b.a,
            num(b.score)
        );
    }
}

/// The residual-stream alignment: what was fitted and chosen.
fn residual(o: &mut String, r: &crate::report::ResidualReport) {
    let _ = writeln!(
        o,
        "\n### Residual-stream alignment (`permutation = \"auto\"`)\n"
    );
    let _ = writeln!(o, "{}\n", crate::report::residual_text(r));
    for why in &r.skipped {
        let _ = writeln!(o, "- not aligned: {}", cell(why));
    }
}

/// The unit alignment (MLP units, attention heads): a line per stack saying what was found,
/// a row per layer.
fn units(o: &mut String, u: &UnitsReport) {
    let _ = writeln!(o, "\n### Unit alignment (`permutation = \"auto\"`)\n");
    if let Some(f) = &u.finding {
        let _ = writeln!(o, "**Finding:** {f}\n");
    }
    for s in &u.stacks {
        let recovered = s.layers.iter().filter(|l| l.recovered).count();
        let moved = s
            .layers
            .iter()
            .filter(|l| l.recovered && l.moved > 0)
            .count();
        let (ua, ub) = s.layers.first().map_or((0, 0), |l| (l.units_a, l.units_b));
        let what = if recovered == 0 {
            "no alignment stands out from the cross-layer alignments (units compared as matched, \
             judged against the same search)"
        } else if ub < ua {
            "subset (width-pruned)"
        } else if moved > 0 {
            "permutation"
        } else {
            "identity (B's units in A's order)"
        };
        let _ = writeln!(
            o,
            "`{}` — {}: {what}; {ub} of {ua} matched per layer, recovered in {recovered} \
             of {} layers. Matched cosine across layers (null under the same search, {} \
             alignments): mean {}, s.d. {}.\n",
            s.stack,
            s.what,
            s.layers.len(),
            s.null_alignments,
            num(Some(s.null_similarity_mean)),
            num(Some(s.null_similarity_sd)),
        );
        let _ = writeln!(
            o,
            "| layer | units A | units B | matched | moved | matched cosine | z | Pearson before | Pearson after |"
        );
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &s.layers {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
                l.layer,
                l.units_a,
                l.units_b,
                l.matched,
                l.moved,
                num(Some(l.similarity)),
                l.similarity_z,
                num(l.pearson_before),
                num(l.pearson_after),
            );
        }
    }
    for why in &u.skipped {
        let _ = writeln!(o, "- not aligned: {}", cell(why));
    }
}

/// One layer × layer grid as a table (rows: A's layers, columns: B's).
fn grid(o: &mut String, g: &Grid) {
    let _ = writeln!(
        o,
        "\n### Grid: `{}` ({})\n\nRows: layers of A; columns: layers of B. Diagonal mean \
         {}, off-diagonal mean {}.{}\n",
        cell(&g.class),
        g.metric,
        num(g.diagonal_mean),
        num(g.off_diagonal_mean),
        g.subsampled.map_or_else(String::new, |s| format!(
            " Every cell on an evenly strided subset of {} of each tensor (the tensors \
             are larger than the metric's `max-elements`).",
            s.text()
        ))
    );
    table_head(
        o,
        "| A \\ B |",
        "|---:|",
        g.layers_b.iter().map(u32::to_string),
        "---:|",
    );
    for (la, row) in g.layers_a.iter().zip(&g.values) {
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.map_or_else(|| "—".to_owned(), |x| format!("{x:.3}")))
            .collect();
        let _ = writeln!(o, "| {la} | {} |", cells.join(" | "));
    }
}

/// The classes the grid settings selected that got no grid, and why.
fn skipped_grids(o: &mut String, c: &Comparison) {
    if c.skipped_grids.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nClasses without a grid:\n");
    for s in &c.skipped_grids {
        let _ = writeln!(o, "- {}: {}", code(&s.class), s.reason);
    }
}

/// Every compared pair: its shape, dtypes, role in the verdict and metric values.
fn tensor_table(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "\n### Per tensor\n");
    table_head(
        o,
        "| tensor | shape | dtypes | role | z |",
        "|---|---|---|---|---:|",
        c.metrics.iter().cloned(),
        "---:|",
    );
    for t in &c.tensors {
        tensor_row(o, t, &c.metrics);
    }
    if c.tensors.iter().any(|t| !t.subsampled.is_empty()) {
        let _ = writeln!(
            o,
            "
A value marked \"on k of n rows\" (or columns) was computed on an evenly strided \
             subset of k whole examples of both tensors, because the pair is larger than the \
             metric's `max-elements`; cosine and Pearson always use every element."
        );
    }
}

/// One row of the per-tensor table.
fn tensor_row(o: &mut String, t: &TensorRow, metrics: &[String]) {
    let dtypes = if t.dtype_a == t.dtype_b {
        t.dtype_a.clone()
    } else {
        format!("{} / {}", t.dtype_a, t.dtype_b)
    };
    let name = match (&t.b_name, &t.paired_by) {
        (Some(b), Some(by)) => format!(
            "{} ≙ B {} ({}{})",
            code(&t.name),
            code(b),
            by.method.name(),
            if by.candidates > 1 {
                format!(", best of {}", by.candidates)
            } else {
                String::new()
            }
        ),
        (Some(b), None) => format!("{} ≙ B {}", code(&t.name), code(b)),
        _ => code(&t.name),
    };
    let mut row = format!(
        "| {} | {:?} | {} | {} | {} |",
        name,
        t.shape,
        dtypes,
        role(t),
        z_text(t.evidence.as_ref().and_then(|e| e.z))
    );
    for m in metrics {
        let mut v = t.value_text(m);
        if let Some(s) = t.subsampled.get(m) {
            let _ = write!(v, " (on {})", s.text());
        }
        let _ = write!(row, " {v} |");
    }
    let _ = writeln!(o, "{row}");
}

/// How a pair counts for the verdict; "—" when it has no evidence record.
fn role(t: &TensorRow) -> &'static str {
    match t.evidence.as_ref().map(|e| &e.role) {
        Some(Role::Evidence) => "evidence",
        Some(Role::InitPrior) => "init-prior",
        Some(Role::NotEvidence(_)) => "not evidence",
        None => "—",
    }
}

/// The tensors that were not compared, with the reason for each.
fn not_compared(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "\n### Not compared\n");
    if c.not_compared.is_empty() {
        let _ = writeln!(o, "Every tensor of both models was compared.");
        return;
    }
    let _ = writeln!(o, "| tensor | reason | detail |");
    let _ = writeln!(o, "|---|---|---|");
    for u in &c.not_compared {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            code(&u.name),
            u.reason.text(),
            cell(&u.detail)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
