//! The recipe of an ad-hoc `weightkin compare A B` (and of the Python package's
//! `weightkin.compare`: both fronts describe the comparison as an [`Adhoc`]).

/// An ad-hoc comparison of two models, as `weightkin compare A B` and `weightkin.compare(a,
/// b)` take it: model paths as given (relative to the current directory), the metrics and the
/// selection. [`crate::compare`] runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adhoc {
    /// Model A: a file, a directory or an `hf://` reference.
    pub a: String,
    /// Model B.
    pub b: String,
    /// Metrics to compute (empty: the recipe default).
    pub metrics: Vec<String>,
    /// Include globs (empty: every tensor).
    pub include: Vec<String>,
    /// Exclude globs.
    pub exclude: Vec<String>,
    /// Align B's MLP hidden units to A's first (`permutation = "auto"`).
    pub align_units: bool,
}

impl Adhoc {
    /// The recipe this comparison stands for ([`adhoc_recipe_with`]).
    pub fn recipe(&self) -> String {
        adhoc_recipe_with(
            &self.a,
            &self.b,
            &self.metrics,
            &self.include,
            &self.exclude,
            self.align_units,
        )
    }
}

/// The recipe `weightkin compare A B` runs: two models named `a` and `b` and one comparison.
/// Built as TOML text so that ad-hoc comparisons go through exactly the same validation as
/// recipes (and their report carries a recipe hash like any other).
pub fn adhoc_recipe(
    a: &str,
    b: &str,
    metrics: &[String],
    include: &[String],
    exclude: &[String],
) -> String {
    adhoc_recipe_with(a, b, metrics, include, exclude, false)
}

/// [`adhoc_recipe`], with `permutation = "auto"` when `align_units` (`compare
/// --align-units`).
pub fn adhoc_recipe_with(
    a: &str,
    b: &str,
    metrics: &[String],
    include: &[String],
    exclude: &[String],
    align_units: bool,
) -> String {
    let mut root = toml::Table::new();
    let mut audit = toml::Table::new();
    audit.insert("name".into(), format!("compare {a} {b}").into());
    root.insert("audit".into(), audit.into());
    let mut models = toml::Table::new();
    for (name, path) in [("a", a), ("b", b)] {
        let mut m = toml::Table::new();
        m.insert("path".into(), path.into());
        models.insert(name.into(), m.into());
    }
    root.insert("models".into(), models.into());
    let mut cmp = toml::Table::new();
    cmp.insert("a".into(), "a".into());
    cmp.insert("b".into(), "b".into());
    let list = |v: &[String]| toml::Value::Array(v.iter().map(|s| s.as_str().into()).collect());
    if !metrics.is_empty() {
        cmp.insert("metrics".into(), list(metrics));
    }
    if !include.is_empty() {
        cmp.insert("include".into(), list(include));
    }
    if !exclude.is_empty() {
        cmp.insert("exclude".into(), list(exclude));
    }
    if align_units {
        cmp.insert("permutation".into(), "auto".into());
    }
    root.insert(
        "compare".into(),
        toml::Value::Array(vec![toml::Value::Table(cmp)]),
    );
    toml::to_string(&root).unwrap_or_default()
}
