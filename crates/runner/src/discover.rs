//! `weightkin match`: the correspondence automatic pairing finds, shown without measuring
//! anything, and kept as a recipe (`--emit-recipe`) whose rename, split and transpose rules
//! reproduce it under `pairing = "names"` — so an audit can be re-run and reviewed without
//! the search. Each rule records how its pairs were found (`paired-by`, `candidates`), so a
//! pair content chose keeps its search's null when the recipe is re-run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use weightkin_core::WeightSource;

use crate::correspond::stack_layer_role as stack_and_layer;
use crate::open::Models;
use crate::plan;
use crate::recipe::{CompareSpec, PairingMode, Recipe};
use crate::report::{markdown, CorrespondenceReport, PairMethod, PairedBy, Unpaired};
use crate::run::prepare;
use crate::{Error, RunOptions};

/// One discovered pair.
#[derive(Debug, Clone, Serialize)]
pub struct MatchedPair {
    /// A's tensor (a fused part is `NAME#q`).
    pub a: String,
    /// B's tensor (`NAME#T` when presented transposed).
    pub b: String,
    /// Shape (A's).
    pub shape: Vec<usize>,
    /// How it was found; absent for equal names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_by: Option<PairedBy>,
}

/// What `weightkin match` reports for one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct MatchReport {
    /// The comparison's name.
    pub name: String,
    /// Model A's path as given.
    pub a: String,
    /// Model B's path as given.
    pub b: String,
    /// The correspondence beyond equal names (absent when names settled everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correspondence: Option<CorrespondenceReport>,
    /// Every pair, sorted by A's name.
    pub pairs: Vec<MatchedPair>,
    /// Every tensor not paired, with its reason.
    pub not_paired: Vec<Unpaired>,
    /// The recipe that reproduces the pairing (`--emit-recipe`).
    #[serde(skip)]
    pub recipe: String,
}

/// Runs automatic pairing (whatever the recipe's `pairing`) for every comparison of
/// `recipe`, measuring nothing.
pub fn discover(
    recipe: &Recipe,
    registry: &weightkin_core::Registry,
    opts: &RunOptions<'_>,
) -> Result<Vec<MatchReport>, Error> {
    let models = Models::open(recipe, registry, opts)?;
    let mut out = Vec::new();
    for cmp in &recipe.compares {
        if cmp.pairing != PairingMode::Auto {
            return Err(Error::Internal(
                "`match` runs automatic pairing: its recipe must not rename",
            ));
        }
        let prepared = prepare(recipe, cmp, &models)?;
        let pairing = plan::pair(cmp, prepared.a(), prepared.b(), &|_| None);
        let b_views = &prepared.b;
        let a_views = &prepared.a;
        let pairs: Vec<MatchedPair> = pairing
            .pairs
            .iter()
            .map(|p| MatchedPair {
                a: a_views.tensors()[p.a].name.clone(),
                b: b_views.tensors()[p.b].name.clone(),
                shape: a_views.tensors()[p.a].shape.clone(),
                paired_by: prepared.paired_by.get(&p.name).cloned(),
            })
            .collect();
        let mut not_paired = pairing.unpaired;
        not_paired.extend(prepared.notes.iter().cloned());
        not_paired.sort_by(|x, y| (&x.name, x.reason).cmp(&(&y.name, y.reason)));
        let path = |m: &str| {
            recipe
                .models
                .get(m)
                .map_or_else(String::new, |s| s.path.display().to_string())
        };
        let text = emit_recipe(recipe, cmp, &path(&cmp.a), &path(&cmp.b), &prepared, &pairs)?;
        out.push(MatchReport {
            name: cmp.name.clone(),
            a: path(&cmp.a),
            b: path(&cmp.b),
            correspondence: prepared.correspondence.clone(),
            pairs,
            not_paired,
            recipe: text,
        });
    }
    Ok(out)
}

/// A tensor name as a glob that matches exactly it.
fn glob_literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '!' | '\\' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// A literal as the replacement side of a rename rule (`$` doubled).
fn replacement_literal(name: &str) -> String {
    name.replace('$', "$$")
}

/// One emitted rename rule.
struct Rule {
    from: String,
    to: String,
    by: Option<PairedBy>,
}

/// The rename rules mapping B's paired tensors to A's names: one rule per class of layered
/// pairs whose layer numbers agree on both sides and who were found the same way, one rule
/// per pair otherwise.
fn rename_rules(pairs: &[MatchedPair]) -> Vec<Rule> {
    type Key = (String, String, Option<String>);
    let mut classes: BTreeMap<Key, Vec<&MatchedPair>> = BTreeMap::new();
    let mut single = Vec::new();
    for p in pairs.iter().filter(|p| p.a != p.b) {
        let by = p
            .paired_by
            .as_ref()
            .map(|b| format!("{:?}/{}", b.method, b.candidates));
        match (stack_and_layer(&p.a), stack_and_layer(&p.b)) {
            (Some((sa, la, ra)), Some((sb, lb, rb))) if la == lb => {
                classes
                    .entry((format!("{sa}\u{0}{ra}"), format!("{sb}\u{0}{rb}"), by))
                    .or_default()
                    .push(p);
            }
            _ => single.push(p),
        }
    }
    let mut rules = Vec::new();
    for ((a, b, _), members) in classes {
        let (Some((sa, ra)), Some((sb, rb))) = (a.split_once('\u{0}'), b.split_once('\u{0}'))
        else {
            continue;
        };
        if members.len() == 1 {
            single.extend(members);
            continue;
        }
        rules.push(Rule {
            from: format!("^{}\\.(\\d+)\\.{}$", regex::escape(sb), regex::escape(rb)),
            to: format!(
                "{}.${{1}}.{}",
                replacement_literal(sa),
                replacement_literal(ra)
            ),
            by: members[0].paired_by.clone(),
        });
    }
    single.sort_by(|x, y| x.a.cmp(&y.a));
    for p in single {
        rules.push(Rule {
            from: format!("^{}$", regex::escape(&p.b)),
            to: replacement_literal(&p.a),
            by: p.paired_by.clone(),
        });
    }
    rules
}

/// The recipe that reproduces the discovered pairing with `pairing = "names"`. Checked by
/// applying its rules to B's names: if they do not give exactly the discovered pairs (a rule
/// renaming another rule's result), an error, never a recipe that pairs differently.
fn emit_recipe(
    recipe: &Recipe,
    cmp: &CompareSpec,
    path_a: &str,
    path_b: &str,
    prepared: &crate::run::Prepared<'_>,
    pairs: &[MatchedPair],
) -> Result<String, Error> {
    let rules = rename_rules(pairs);
    // Check: B's presented names through the rules give A's names for exactly the pairs.
    let compiled: Vec<crate::recipe::RenameRule> = rules
        .iter()
        .filter_map(|r| {
            regex::Regex::new(&r.from)
                .ok()
                .map(|from| crate::recipe::RenameRule {
                    from,
                    to: r.to.clone(),
                    found: None,
                })
        })
        .collect();
    let (split_a, split_b, transposed) = &prepared.presented;
    let b_names: Vec<&str> = prepared
        .b
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !(split_b.contains(*n) || transposed.contains(*n)))
        .collect();
    let renamed = plan::renamed_names(&cmp.b, b_names.iter().map(|n| (*n, 0)), &compiled)
        .ok()
        .map(|(m, _)| m.into_keys().collect::<BTreeSet<String>>());
    let wanted: BTreeSet<&str> = pairs.iter().map(|p| p.a.as_str()).collect();
    let ok = renamed.is_some_and(|r| wanted.iter().all(|w| r.contains(*w)))
        && rules.len() == compiled.len();
    if !ok {
        return Err(Error::Internal(
            "the discovered pairing cannot be written as rename rules (a rule would rename \
             another rule's result)",
        ));
    }
    let mut o = String::new();
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let _ = writeln!(
        o,
        "# Written by `weightkin match`: the pairing it discovered, as rules. Re-run with\n\
         # `weightkin audit THIS_FILE`; review or edit the rules first if you like. Each rule\n\
         # records how its pairs were found: a pair chosen by content among `candidates`\n\
         # keeps that search's null (its p-value is multiplied by `candidates`)."
    );
    let _ = writeln!(
        o,
        "[audit]\nname = {}\n",
        q(&format!("{} (discovered pairing)", recipe.name))
    );
    let list = |v: &BTreeSet<String>| {
        v.iter()
            .map(|n| q(&glob_literal(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (model, path, split, transpose, renames) in [
        ("a", path_a, split_a, &BTreeSet::new(), &[][..]),
        ("b", path_b, split_b, transposed, &rules[..]),
    ] {
        let _ = writeln!(o, "[models.{model}]\npath = {}", q(path));
        if !split.is_empty() {
            let _ = writeln!(o, "split = [{}]", list(split));
        }
        if !transpose.is_empty() {
            let _ = writeln!(o, "transpose = [{}]", list(transpose));
        }
        if !renames.is_empty() {
            let _ = writeln!(o, "rename = [");
            for r in renames {
                let found = match &r.by {
                    Some(by) if by.method != PairMethod::Name => {
                        let method = match by.method {
                            PairMethod::Content => "content",
                            PairMethod::Structure => "structure",
                            _ => "normalised",
                        };
                        format!(", paired-by = \"{method}\", candidates = {}", by.candidates)
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    o,
                    "  {{ from = {}, to = {}{found} }},",
                    q(&r.from),
                    q(&r.to)
                );
            }
            let _ = writeln!(o, "]");
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "[[compare]]\nname = {}\na = \"a\"\nb = \"b\"\npairing = \"names\"",
        q(&cmp.name)
    );
    let globs = |v: &[String]| v.iter().map(|g| q(g)).collect::<Vec<_>>().join(", ");
    if !cmp.include.is_empty() {
        let _ = writeln!(o, "include = [{}]", globs(&cmp.include));
    }
    if !cmp.exclude.is_empty() {
        let _ = writeln!(o, "exclude = [{}]", globs(&cmp.exclude));
    }
    Ok(o)
}

impl MatchReport {
    /// The report as Markdown: the correspondence, every pair, every tensor not paired.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# weightkin match: {}\n", self.name);
        let _ = writeln!(o, "A = `{}`\n\nB = `{}`\n", self.a, self.b);
        match &self.correspondence {
            Some(k) => markdown::correspondence(&mut o, k),
            None => {
                let _ = writeln!(o, "Every pair was found by equal names.\n");
            }
        }
        let _ = writeln!(o, "### Pairs ({})\n", self.pairs.len());
        let _ = writeln!(o, "| A | B | shape | paired by | score |");
        let _ = writeln!(o, "|---|---|---|---|---:|");
        for p in &self.pairs {
            let (how, score) = match &p.paired_by {
                None => ("equal names".to_owned(), "—".to_owned()),
                Some(b) => (
                    b.rule.clone(),
                    b.score.map_or("—".to_owned(), |s| format!("{s:.4}")),
                ),
            };
            let _ = writeln!(
                o,
                "| `{}` | `{}` | {:?} | {} | {} |",
                p.a, p.b, p.shape, how, score
            );
        }
        let _ = writeln!(o, "\n### Not paired ({})\n", self.not_paired.len());
        let _ = writeln!(o, "| tensor | reason | detail |");
        let _ = writeln!(o, "|---|---|---|");
        for u in &self.not_paired {
            let _ = writeln!(o, "| `{}` | {} | {} |", u.name, u.reason.text(), u.detail);
        }
        o
    }
}
