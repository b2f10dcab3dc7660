//! The HTML report: one self-contained file (no network, no JavaScript, no external CSS).
//!
//! Heatmaps of layer grids and per-layer line plots are inline SVG generated here; every
//! number is formatted with fixed precision, so the bytes are as deterministic as the JSON.
//!
//! Each section of the page is one function, called in page order by [`render`] (the report's
//! sections) and `comparison` (one comparison's), so a section can be read or changed alone.

use std::fmt::Write;

use crate::report::fixed as num;
use crate::report::{
    z_text, Alignment, ClassSummary, Comparison, Grid, Method, ModelReport, Report, TensorRow,
};

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escapes `s` and renders its `backtick` spans (as the verdict sentences use them) as code.
fn prose(s: &str) -> String {
    let escaped = esc(s);
    let mut out = String::with_capacity(escaped.len());
    for (i, part) in escaped.split('`').enumerate() {
        // An unmatched final backtick leaves the tail as code; harmless for our sentences.
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Diverging colour for a value in [-1, 1]: blue (−1) – white (0) – red (+1).
fn colour(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "#bbbbbb".to_owned();
    };
    let t = v.clamp(-1.0, 1.0);
    let (r, g, b) = if t >= 0.0 {
        // white → #b2182b
        (
            255.0 - t * (255.0 - 178.0),
            255.0 - t * (255.0 - 24.0),
            255.0 - t * (255.0 - 43.0),
        )
    } else {
        let t = -t;
        // white → #2166ac
        (
            255.0 - t * (255.0 - 33.0),
            255.0 - t * (255.0 - 102.0),
            255.0 - t * (255.0 - 172.0),
        )
    };
    format!(
        "#{:02x}{:02x}{:02x}",
        r.round() as u8,
        g.round() as u8,
        b.round() as u8
    )
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;\
max-width:1200px;padding:0 1rem;color:#222}h1{font-size:1.6rem}h2{margin-top:2.5rem;\
border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}\
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:left}td.n{text-align:right;\
font-variant-numeric:tabular-nums}code{font-size:.85em}.muted{color:#666}figure{display:inline-block;\
margin:0 1.5rem 1.5rem 0;vertical-align:top}figcaption{font-size:.8rem;max-width:420px}\
svg text{font-family:system-ui,sans-serif}details{margin:.5rem 0}.v-derived{color:#b2182b}\
.v-independent{color:#2166ac}.v-inconclusive{color:#8a6d00}";

/// Renders the whole report: the page head, then its sections in page order.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    head(&mut o, r);
    verdicts(&mut o, r);
    summary(&mut o, r);
    models(&mut o, r);
    for c in &r.comparisons {
        comparison(&mut o, c);
    }
    // `write!` into a String cannot fail (here and in every function below).
    let _ = writeln!(o, "</body>\n</html>");
    o
}

/// The document head, the page title, the audit's description and what produced the report.
fn head(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>weightkin audit: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.audit.name)
    );
    let _ = writeln!(o, "<h1>weightkin audit: {}</h1>", esc(&r.audit.name));
    if let Some(d) = &r.audit.description {
        let _ = writeln!(o, "<p>{}</p>", esc(d));
    }
    let _ = writeln!(
        o,
        "<p class=\"muted\">{} {} · report schema {} · recipe BLAKE3 <code>{}</code></p>",
        r.tool.name, r.tool.version, r.schema_version, r.audit.recipe_blake3
    );
}

/// The verdict section: first on the page, each comparison's verdict in sentences with its
/// caveats, then how the verdicts were reached.
fn verdicts(o: &mut String, r: &Report) {
    let _ = writeln!(o, "<h2>Verdicts</h2>");
    for c in &r.comparisons {
        verdict(o, c);
    }
    if let Some(c) = r.comparisons.first() {
        method(o, &c.verdicts.method);
    }
}

/// One comparison's verdict: the overall sentence, one per component, and the caveats.
fn verdict(o: &mut String, c: &Comparison) {
    let v = &c.verdicts;
    let _ = writeln!(
        o,
        "<p><b>{}: <span class=\"v-{}\">{}</span>.</b> {}</p>\n<ul>",
        esc(&c.name),
        v.overall.name(),
        v.overall.name(),
        prose(&v.sentence)
    );
    for comp in &v.components {
        let _ = writeln!(o, "<li>{}</li>", prose(&comp.sentence));
    }
    let _ = writeln!(
        o,
        "</ul>\n<details><summary>What this does not show</summary>\n<ul>"
    );
    for caveat in &v.caveats {
        let _ = writeln!(o, "<li>{}</li>", prose(caveat));
    }
    let _ = writeln!(o, "</ul>\n</details>");
}

/// How the verdicts were reached, shown once under them.
fn method(o: &mut String, m: &Method) {
    let _ = writeln!(
        o,
        "<p class=\"muted\">Method: {}; nulls: {}; {} (α = {}); support needs a Pearson \
         excess ≥ {} over the null mean; derived when ≥ {:.0} % of a component's evidence \
         tensors support it. {}.</p>",
        esc(m.statistic),
        esc(m.nulls),
        esc(m.correction),
        m.alpha,
        m.min_effect,
        m.min_support_fraction * 100.0,
        esc(m.combination)
    );
}

/// The summary table: a row per comparison.
fn summary(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "<h2>Summary</h2>\n<table>\n<tr><th>comparison</th><th>A</th><th>B</th>\
         <th>pairs compared</th><th>not compared</th><th>alignment</th></tr>"
    );
    for c in &r.comparisons {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td></tr>",
            esc(&c.name),
            esc(&c.a),
            esc(&c.b),
            c.summary.compared,
            c.summary.not_compared,
            alignments_cell(c)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// A comparison's layer alignments in one summary cell (escaped); "—" when it has none.
fn alignments_cell(c: &Comparison) -> String {
    if c.alignments.is_empty() {
        return "—".to_owned();
    }
    let align: Vec<String> = c
        .alignments
        .iter()
        .map(|a| {
            format!(
                "{}: {}{}",
                a.stack,
                mapping_text(a),
                if a.meaningful {
                    ""
                } else {
                    " (no layer correspondence)"
                }
            )
        })
        .collect();
    esc(&align.join("; "))
}

fn mapping_text(a: &Alignment) -> String {
    format!("B→A {}", a.mapping_text())
}

/// The models table: a row per model with its files, then a row per transform applied on load.
fn models(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "<h2>Models</h2>\n<table>\n<tr><th>model</th><th>path</th><th>format</th>\
         <th>tensors</th><th>parameters</th><th>files (BLAKE3)</th></tr>"
    );
    for m in &r.models {
        model_rows(o, m);
    }
    let _ = writeln!(o, "</table>");
}

/// One model's rows of the models table.
fn model_rows(o: &mut String, m: &ModelReport) {
    let files: Vec<String> = m
        .files
        .iter()
        .map(|f| {
            let hash = if f.blake3.is_empty() {
                "partly fetched".to_owned()
            } else {
                format!("<code>{}</code>", f.blake3)
            };
            format!("<code>{}</code> {} B {hash}", esc(&f.path), f.bytes)
        })
        .collect();
    let _ = writeln!(
        o,
        "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td>{}</td></tr>",
        esc(&m.name),
        esc(&m.path),
        m.format,
        m.tensors,
        m.parameters,
        files.join("<br>")
    );
    if let Some(h) = &m.hub {
        let _ = writeln!(
            o,
            "<tr><td></td><td colspan=\"5\">hub <code>{}</code> revision <code>{}</code> \
             commit <code>{}</code>; identified by {} ({} tensor hashes in the JSON report)\
             </td></tr>",
            esc(&h.repo),
            esc(&h.revision),
            h.commit,
            esc(h.identified_by.text()),
            h.tensors.len()
        );
    }
    for t in &m.transforms {
        let _ = writeln!(
            o,
            "<tr><td></td><td colspan=\"5\">transform <code>{}</code> ({} tensors): {}</td></tr>",
            esc(&t.name),
            t.tensors,
            esc(&t.detail)
        );
    }
}

/// The residual-stream alignment: one paragraph.
fn residual(o: &mut String, r: &crate::report::ResidualReport) {
    let _ = writeln!(o, "<h3>Residual-stream alignment</h3>");
    let _ = writeln!(o, "<p>{}</p>", esc(&crate::report::residual_text(r)));
    for why in &r.skipped {
        let _ = writeln!(o, "<p>Not aligned: {}</p>", esc(why));
    }
}

/// The unit alignment (MLP units, attention heads): the finding, then a row per layer.
fn units(o: &mut String, u: &crate::report::UnitsReport) {
    let _ = writeln!(o, "<h3>Unit alignment</h3>");
    if let Some(f) = &u.finding {
        let _ = writeln!(o, "<p><b>Finding:</b> {}</p>", esc(f));
    }
    for s in &u.stacks {
        let _ = writeln!(
            o,
            "<p><code>{}</code>, {}: matched cosine of the cross-layer alignments (null under \
             the same search): mean {:.4}, s.d. {:.4}, {} alignments.</p>",
            esc(&s.stack),
            esc(&s.what),
            s.null_similarity_mean,
            s.null_similarity_sd,
            s.null_alignments
        );
        let _ = writeln!(
            o,
            "<table><tr><th>layer</th><th>units A</th><th>units B</th><th>matched</th>\
             <th>moved</th><th>matched cosine</th><th>z</th><th>recovered</th></tr>"
        );
        for l in &s.layers {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td>\
                 <td>{:.1}</td><td>{}</td></tr>",
                l.layer,
                l.units_a,
                l.units_b,
                l.matched,
                l.moved,
                l.similarity,
                l.similarity_z,
                if l.recovered { "yes" } else { "no" }
            );
        }
        let _ = writeln!(o, "</table>");
    }
    for why in &u.skipped {
        let _ = writeln!(o, "<p>Not aligned: {}</p>", esc(why));
    }
}

/// One comparison's section, its parts in page order.
fn comparison(o: &mut String, c: &Comparison) {
    comparison_intro(o, c);
    evidence(o, c);
    not_evidence(o, c);
    class_table(o, c);
    if let Some(r) = &c.residual {
        residual(o, r);
    }
    if let Some(u) = &c.units {
        units(o, u);
    }
    for a in &c.alignments {
        alignment(o, a);
    }
    grids(o, c);
    line_plots(o, c);
    tensor_table(o, c);
    not_compared(o, c);
}

/// The comparison's heading: its models, metrics and counts.
fn comparison_intro(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "<h2>{}</h2>", esc(&c.name));
    let _ = writeln!(
        o,
        "<p>A = <code>{}</code>, B = <code>{}</code> · metrics: {} · compared <b>{}</b> tensor \
         pairs ({} elements per side); <b>{}</b> tensors not compared.</p>",
        esc(&c.a),
        esc(&c.b),
        esc(&c.metrics.join(", ")),
        c.summary.compared,
        c.summary.elements,
        c.summary.not_compared
    );
}

/// The evidence table: the numbers behind each component's verdict.
fn evidence(o: &mut String, c: &Comparison) {
    let _ = writeln!(
        o,
        "<h3>Evidence by component</h3>\n<table>\n<tr><th>component</th><th>verdict</th>\
         <th>tensors</th><th>evidence</th><th>init-prior</th><th>supporting</th>\
         <th>significant</th><th>identical</th><th>median Pearson</th><th>median z</th>\
         <th>Stouffer z</th></tr>"
    );
    for k in &c.verdicts.components {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"v-{}\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&k.name),
            k.verdict.name(),
            k.verdict.name(),
            k.tensors,
            k.evidence,
            k.init_prior,
            k.supporting,
            k.significant,
            k.identical,
            num(k.median_pearson),
            z_text(k.median_z),
            z_text(k.stouffer_z)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// Per component that has them, the tensors that are not evidence and why.
fn not_evidence(o: &mut String, c: &Comparison) {
    for k in c
        .verdicts
        .components
        .iter()
        .filter(|k| !k.not_evidence.is_empty())
    {
        let _ = writeln!(o, "<p>Not evidence in {}:</p>\n<ul>", esc(&k.name));
        for e in &k.not_evidence {
            let _ = writeln!(
                o,
                "<li><code>{}</code>: {}</li>",
                esc(&e.tensor),
                esc(&e.reason.text())
            );
        }
        let _ = writeln!(o, "</ul>");
    }
}

/// The class table: a row per tensor class, median, min and max of every metric.
fn class_table(o: &mut String, c: &Comparison) {
    let _ = writeln!(
        o,
        "<h3>By tensor class</h3>\n<table>\n<tr><th>class</th><th>kind</th><th>n</th>"
    );
    for m in &c.metrics {
        let _ = write!(o, "<th>{} median</th><th>min</th><th>max</th>", esc(m));
    }
    let _ = writeln!(o, "</tr>");
    for k in &c.classes {
        class_row(o, k, &c.metrics);
    }
    let _ = writeln!(o, "</table>");
}

/// One row of the class table.
fn class_row(o: &mut String, k: &ClassSummary, metrics: &[String]) {
    let kind = k.kind.name();
    let _ = write!(
        o,
        "<tr><td><code>{}</code></td><td>{kind}</td><td class=\"n\">{}</td>",
        esc(&k.class),
        k.count
    );
    for m in metrics {
        match k.stats.iter().find(|s| &s.metric == m) {
            Some(s) => {
                let _ = write!(
                    o,
                    "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                    num(s.median),
                    num(s.min),
                    num(s.max)
                );
            }
            None => o.push_str("<td></td><td></td><td></td>"),
        }
    }
    let _ = writeln!(o, "</tr>");
}

/// One layer alignment: what it was recovered from, whether it holds, and its mapping.
fn alignment(o: &mut String, a: &Alignment) {
    let _ = writeln!(
        o,
        "<h3>Layer alignment: <code>{}</code></h3>\n<p>From the {} grids of {} class(es). \
         Mean along the alignment {}, off it {}.{}</p>",
        esc(&a.stack),
        esc(&a.metric),
        a.classes.len(),
        num(a.score),
        num(a.off_mapping_mean),
        if a.applied {
            " Tensors were paired along this alignment (<code>align = \"auto\"</code>)."
        } else if a.meaningful {
            ""
        } else {
            " <b>No layer correspondence</b>: no better than any other pairing of layers; \
             not applied."
        }
    );
    let _ = writeln!(
        o,
        "<table>\n<tr><th>B layer</th><th>A layer (monotone)</th>\
         <th>score</th><th>best A layer (unconstrained)</th><th>score</th></tr>"
    );
    for (m, b) in a.mapping.iter().zip(&a.best_match) {
        let _ = writeln!(
            o,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            m.b,
            m.a,
            num(m.score),
            b.a,
            num(b.score)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// The layer × layer heatmaps, then the selected classes that got none.
fn grids(o: &mut String, c: &Comparison) {
    if !c.grids.is_empty() {
        let _ = writeln!(o, "<h3>Layer × layer grids</h3>");
        for g in &c.grids {
            heatmap(o, g);
        }
    }
    if !c.skipped_grids.is_empty() {
        let _ = writeln!(o, "<p>Classes without a grid:</p>\n<ul>");
        for s in &c.skipped_grids {
            let _ = writeln!(
                o,
                "<li><code>{}</code>: {}</li>",
                esc(&s.class),
                esc(&s.reason.to_string())
            );
        }
        let _ = writeln!(o, "</ul>");
    }
}

/// Every compared pair with its metric values, folded away (it is long).
fn tensor_table(o: &mut String, c: &Comparison) {
    let _ = writeln!(
        o,
        "<details><summary>Per tensor ({} pairs)</summary>\n<table>\n<tr><th>tensor</th>\
         <th>shape</th><th>dtypes</th>",
        c.tensors.len()
    );
    for m in &c.metrics {
        let _ = write!(o, "<th>{}</th>", esc(m));
    }
    let _ = writeln!(o, "</tr>");
    for t in &c.tensors {
        tensor_row(o, t, &c.metrics);
    }
    let _ = writeln!(o, "</table>\n</details>");
}

/// One row of the per-tensor table.
fn tensor_row(o: &mut String, t: &TensorRow, metrics: &[String]) {
    let _ = write!(
        o,
        "<tr><td><code>{}</code>{}</td><td>{:?}</td><td>{} / {}</td>",
        esc(&t.name),
        t.a_name
            .as_ref()
            .map(|n| format!(
                "<br><span class=\"muted\">A: <code>{}</code></span>",
                esc(n)
            ))
            .unwrap_or_default(),
        t.shape,
        t.dtype_a,
        t.dtype_b
    );
    for m in metrics {
        let _ = write!(o, "<td class=\"n\">{}</td>", tensor_cell(t, m));
    }
    let _ = writeln!(o, "</tr>");
}

/// A pair's value of metric `m`, with the subset of examples it was computed on, if any.
fn tensor_cell(t: &TensorRow, m: &str) -> String {
    let mut cell = esc(&t.value_text(m));
    if let Some(s) = t.subsampled.get(m) {
        let _ = write!(
            cell,
            "<br><span class=\"muted\">on {} (evenly strided; the pair exceeds \
             <code>max-elements</code>)</span>",
            esc(&s.text())
        );
    }
    cell
}

/// The tensors that were not compared, with the reason for each.
fn not_compared(o: &mut String, c: &Comparison) {
    let _ = writeln!(o, "<h3>Not compared ({})</h3>", c.not_compared.len());
    if c.not_compared.is_empty() {
        let _ = writeln!(o, "<p>Every tensor of both models was compared.</p>");
        return;
    }
    let _ = writeln!(
        o,
        "<table>\n<tr><th>tensor</th><th>reason</th><th>detail</th></tr>"
    );
    for u in &c.not_compared {
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&u.name),
            u.reason.text(),
            esc(&u.detail)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// Where a heatmap's cells lie: squares of `cell` pixels, the first at (`left`, `top`).
#[derive(Clone, Copy)]
struct HeatmapLayout {
    cell: usize,
    left: usize,
    top: usize,
}

/// An SVG heatmap of one grid: A's layers down, B's across, with a colour scale.
fn heatmap(o: &mut String, g: &Grid) {
    let (na, nb) = (g.layers_a.len(), g.layers_b.len());
    let at = HeatmapLayout {
        cell: (360 / na.max(nb).max(1)).clamp(8, 36),
        left: 48,
        top: 34,
    };
    let (w, h) = (at.left + nb * at.cell + 80, at.top + na * at.cell + 44);
    let _ = writeln!(
        o,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{} grid of {}\">",
        esc(&g.metric),
        esc(&g.class)
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"12\" font-size=\"11\" text-anchor=\"middle\">layer of B</text>",
        at.left + nb * at.cell / 2
    );
    let _ = writeln!(
        o,
        "<text x=\"12\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" \
         transform=\"rotate(-90 12 {})\">layer of A</text>",
        at.top + na * at.cell / 2,
        at.top + na * at.cell / 2
    );
    heatmap_cells(o, g, at);
    colour_scale(
        o,
        at.left + nb * at.cell + 24,
        at.top,
        (na * at.cell).max(60),
    );
    let _ = writeln!(
        o,
        "</svg><figcaption><code>{}</code> — {} · diagonal mean {} · off-diagonal mean {}{}\
         </figcaption></figure>",
        esc(&g.class),
        esc(&g.metric),
        num(g.diagonal_mean),
        num(g.off_diagonal_mean),
        g.subsampled.map_or_else(String::new, |s| format!(
            " · every cell on {} (evenly strided; the tensors exceed <code>max-elements</code>)",
            esc(&s.text())
        ))
    );
}

/// The heatmap's layer labels (thinned to at most 16 a side) and its coloured cells.
fn heatmap_cells(o: &mut String, g: &Grid, at: HeatmapLayout) {
    let (na, nb) = (g.layers_a.len(), g.layers_b.len());
    let HeatmapLayout { cell, left, top } = at;
    let label_every = na.max(nb).div_ceil(16).max(1);
    for (j, lb) in g.layers_b.iter().enumerate() {
        if j % label_every == 0 {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{lb}</text>",
                left + j * cell + cell / 2,
                top - 4
            );
        }
    }
    for (i, la) in g.layers_a.iter().enumerate() {
        if i % label_every == 0 {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">{la}</text>",
                left - 4,
                top + i * cell + cell / 2 + 3
            );
        }
        for j in 0..nb {
            let v = g.values.get(i).and_then(|r| r.get(j)).copied().flatten();
            let _ = writeln!(
                o,
                "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"{}\">\
                 <title>A {la} × B {}: {}</title></rect>",
                left + j * cell,
                top + i * cell,
                colour(v),
                g.layers_b[j],
                num(v)
            );
        }
    }
}

/// A heatmap's colour scale, `height` pixels from −1 (bottom) to +1 (top), at `x`, `top`.
fn colour_scale(o: &mut String, x: usize, top: usize, height: usize) {
    let steps = 20;
    for s in 0..steps {
        let v = 1.0 - 2.0 * (s as f64 + 0.5) / steps as f64;
        let _ = writeln!(
            o,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"{}\" fill=\"{}\"/>",
            top + s * height / steps,
            height / steps + 1,
            colour(Some(v))
        );
    }
    for (v, y) in [
        ("+1", top + 8),
        ("0", top + height / 2 + 3),
        ("−1", top + height),
    ] {
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{y}\" font-size=\"9\">{v}</text>",
            x + 18
        );
    }
}

/// Line colours of the per-layer plots, one per class (cycled).
const PALETTE: [&str; 10] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2df8a",
];

/// A metric's value at one layer.
struct Point {
    layer: u32,
    value: f64,
}

/// One line of a per-layer plot: a class's defined values, by layer.
struct Series<'a> {
    class: &'a str,
    points: Vec<Point>,
}

/// A line plot's drawing area and the layer and value ranges it spans.
struct PlotArea {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    max_layer: u32,
    lo: f64,
    hi: f64,
}

impl PlotArea {
    /// Horizontal position of layer `l`.
    fn x(&self, l: u32) -> f64 {
        self.left + self.width * f64::from(l) / f64::from(self.max_layer)
    }

    /// Vertical position of value `v`.
    fn y(&self, v: f64) -> f64 {
        self.top + self.height * (self.hi - v) / (self.hi - self.lo)
    }
}

/// One SVG line plot per metric: the metric against layer, one line per layered class.
fn line_plots(o: &mut String, c: &Comparison) {
    let layered: Vec<&ClassSummary> = c.classes.iter().filter(|k| k.layers.len() > 1).collect();
    if layered.is_empty() {
        return;
    }
    let max_layer = layered
        .iter()
        .filter_map(|k| k.layers.last())
        .max()
        .copied()
        .unwrap_or(0)
        .max(1);
    let _ = writeln!(o, "<h3>Per layer</h3>");
    for m in &c.metrics {
        line_plot(o, m, &series(&layered, m), max_layer);
    }
}

/// Each layered class's defined values of metric `m`.
fn series<'a>(layered: &[&'a ClassSummary], m: &str) -> Vec<Series<'a>> {
    layered
        .iter()
        .map(|k| Series {
            class: k.class.as_str(),
            points: k
                .layers
                .iter()
                .zip(k.per_layer.get(m).into_iter().flatten())
                .filter_map(|(l, v)| v.map(|value| Point { layer: *l, value }))
                .collect(),
        })
        .collect()
}

/// One metric's plot, autoscaled to its data; nothing when no class has a value.
fn line_plot(o: &mut String, m: &str, series: &[Series], max_layer: u32) {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value))
        .collect();
    if all.is_empty() {
        return;
    }
    // Autoscale to the data (with 5 % padding) so per-layer differences are visible.
    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
    let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((max - min) * 0.05).max(1e-4);
    let area = PlotArea {
        left: 56.0,
        top: 16.0,
        width: 420.0,
        height: 200.0,
        max_layer,
        lo: min - pad,
        hi: max + pad,
    };
    let _ = writeln!(
        o,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         role=\"img\" aria-label=\"{} per layer\">",
        area.left + area.width + 20.0,
        area.top + area.height + 40.0,
        esc(m)
    );
    plot_axes(o, &area);
    for (n, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", area.x(p.layer), area.y(p.value)))
            .collect();
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\">\
             <title>{}</title></polyline>",
            PALETTE[n % PALETTE.len()],
            path.join(" "),
            esc(s.class)
        );
    }
    let _ = writeln!(o, "</svg><figcaption><b>{}</b> per layer: ", esc(m));
    for (n, s) in series.iter().enumerate() {
        let _ = write!(
            o,
            "<span style=\"display:block\"><span style=\"color:{}\">■</span> <code>{}</code></span>",
            PALETTE[n % PALETTE.len()],
            esc(s.class)
        );
    }
    let _ = writeln!(o, "</figcaption></figure>");
}

/// A line plot's frame and its value and layer ticks.
fn plot_axes(o: &mut String, area: &PlotArea) {
    let PlotArea {
        left,
        top,
        width,
        height,
        max_layer,
        lo,
        hi,
    } = *area;
    let _ = writeln!(
        o,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{height}\" fill=\"none\" \
         stroke=\"#999\"/>"
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\">{v:.4}</text>",
            left - 4.0,
            area.y(v) + 3.0
        );
    }
    for l in [0, max_layer / 2, max_layer] {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{l}</text>",
            area.x(l),
            top + height + 12.0
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">layer</text>",
        left + width / 2.0,
        top + height + 28.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_escaping() {
        assert_eq!(colour(Some(0.0)), "#ffffff");
        assert_eq!(colour(Some(1.0)), "#b2182b");
        assert_eq!(colour(Some(-1.0)), "#2166ac");
        assert_eq!(colour(None), "#bbbbbb");
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(
            prose("`a<b` and `c`"),
            "<code>a&lt;b</code> and <code>c</code>"
        );
    }
}
