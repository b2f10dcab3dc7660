//! `weightkin verify REPORT.json`: run a report's audit again and say whether it reproduces.
//!
//! A provenance report is evidence a third party must be able to check (issue 18). Every
//! `report.json` embeds the recipe it ran (`audit.recipe`, model paths as written; for
//! `weightkin compare`, the recipe its command line stands for) beside that recipe's BLAKE3,
//! the tool version, and each model file's BLAKE3. No command-line option changes what a
//! report says (`--threads` and the hash cache are proven not to by the determinism tests), so
//! the recipe and the files are everything a re-run needs.
//!
//! [`verify`] works in this order:
//!
//! 1. reads the report and takes the embedded recipe, checking it against
//!    `audit.recipe_blake3`;
//! 2. finds the models: relative paths resolve against `--base`, else against the report's
//!    directory, else against the current directory — the first where every local model
//!    path exists (`weightkin demo --keep DIR` keeps the models beside the report;
//!    `weightkin compare` names them relative to where it ran);
//! 3. hashes every local model file the report lists (never from the hash cache) and compares
//!    each with its recorded BLAKE3, so a different file is named before anything else;
//! 4. pins each `hf://` model to the commit the report recorded (and reports the revision
//!    as it was asked for), runs the recipe, renders the canonical JSON and compares it byte
//!    for byte with the report;
//! 5. when the bytes differ, compares the two JSON documents value by value and names every
//!    field that differs — array elements by their `name`, `path`, `class` or `stack`, so a
//!    tensor is named, not numbered — with its cause: a model file that is not the one
//!    audited, another tool version, or an edit.
//!
//! The outcome ([`Outcome`]) is what the CLI turns into an exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use weightkin_core::Registry;

use crate::recipe::{self, Recipe};
use crate::report::Report;
use crate::{Error, RunOptions, VerifyProblem};

/// The version of this tool, as reports record it (`tool.version`).
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Differences listed one by one in [`Verification::text`]; the rest are counted.
const LISTED: usize = 40;

/// Characters of a value shown in a difference line.
const SHOWN: usize = 72;

/// What verification concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The re-run wrote the same bytes.
    Identical,
    /// A model file is not the one audited (its BLAKE3 differs).
    FileChanged,
    /// Every file is the one audited, but the report was written by another version of
    /// weightkin and the re-run differs.
    ToolVersion,
    /// Every file is the one audited and the tool version is the same, yet the report does
    /// not reproduce: it was edited (or, a bug, the audit is not deterministic).
    Edited,
}

/// One model file, checked against its recorded hash.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// The model.
    pub model: String,
    /// The file as the report names it (relative to the model path).
    pub file: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Its BLAKE3 in the report.
    pub recorded: String,
    /// Its BLAKE3 now.
    pub now: String,
}

impl FileCheck {
    /// Whether the file is the one audited.
    pub fn same(&self) -> bool {
        self.recorded == self.now
    }
}

/// Why a value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A file of this model is not the one audited.
    ChangedFile {
        /// The model.
        model: String,
        /// The file (as the report names it).
        file: String,
    },
    /// The report was written by another version of weightkin.
    ToolVersion,
    /// The report (or its embedded recipe) was edited.
    Edited,
}

impl Cause {
    /// In words, for the text output.
    pub fn text(&self, recorded_version: &str) -> String {
        match self {
            Cause::ChangedFile { model, file } => {
                format!("{file} (model `{model}`) is not the file audited")
            }
            Cause::ToolVersion => {
                format!("written by weightkin {recorded_version}, re-run by {TOOL_VERSION}")
            }
            Cause::Edited => "the report was edited".to_owned(),
        }
    }
}

/// One field whose value differs between the report and the re-run.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The field: a dotted path, array elements by name (`comparisons[base ↔ ft].tensors[w]`).
    pub field: String,
    /// Its value in the report (compact JSON); `None` if the report lacks it.
    pub recorded: Option<String>,
    /// Its value in the re-run; `None` if the re-run lacks it.
    pub now: Option<String>,
    /// The tensor it belongs to, when it is under a comparison's `tensors`.
    pub tensor: Option<TensorField>,
    /// Why it differs.
    pub cause: Cause,
}

/// A difference in one tensor's row of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorField {
    /// The comparison.
    pub comparison: String,
    /// The tensor (its name in the report).
    pub tensor: String,
    /// Whether the field is one of the tensor's own metric values (`values.*`), not
    /// evidence it shares with others through a null.
    pub measured: bool,
}

/// The result of [`verify`].
#[derive(Debug)]
pub struct Verification {
    /// The report verified.
    pub report: PathBuf,
    /// The directory relative model paths were resolved against.
    pub base: PathBuf,
    /// `tool.version` in the report.
    pub recorded_version: String,
    /// Whether the embedded recipe hashes to `audit.recipe_blake3`.
    pub recipe_intact: bool,
    /// Every local model file the report hashes, in report order.
    pub files: Vec<FileCheck>,
    /// Models whose files are not the ones audited, with the first such file: by the hash
    /// check for local files, by the re-run's hashes and commit for `hf://` models.
    pub changed: BTreeMap<String, String>,
    /// Fields that differ, in document order (empty when identical).
    pub differences: Vec<Difference>,
    /// The conclusion.
    pub outcome: Outcome,
}

/// What the report says about one model.
struct RecordedModel {
    name: String,
    /// (file as named, recorded BLAKE3) for every file with a whole-file hash.
    files: Vec<(String, String)>,
    /// `hub.commit` and `hub.revision`, for an `hf://` model.
    hub: Option<(String, String)>,
}

/// Runs the audit `report` records again and compares (see the module docs). `base`
/// overrides where relative model paths resolve. The hash cache in `opts` is not used.
pub fn verify(
    report: &Path,
    base: Option<&Path>,
    registry: &Registry,
    opts: &RunOptions<'_>,
) -> Result<Verification, Error> {
    let fail = |problem| Error::Verify {
        report: report.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(report).map_err(|e| fail(VerifyProblem::Read(e)))?;
    let recorded: Value = serde_json::from_str(&text).map_err(|e| fail(VerifyProblem::Json(e)))?;
    let recipe_text = string_at(&recorded, "audit.recipe").map_err(fail)?;
    let recipe_blake3 = string_at(&recorded, "audit.recipe_blake3").map_err(fail)?;
    let recorded_version = string_at(&recorded, "tool.version").map_err(fail)?;
    let recipe_intact = blake3::hash(recipe_text.as_bytes()).to_hex().as_str() == recipe_blake3;
    let models = recorded_models(&recorded).map_err(fail)?;

    let (base, mut recipe) = locate(report, base, recipe_text, registry).map_err(|e| match e {
        Located::Recipe(e) => e,
        Located::Problem(p) => fail(p),
    })?;
    let mut files = Vec::new();
    for m in &models {
        let spec = recipe
            .models
            .get_mut(&m.name)
            .ok_or_else(|| fail(VerifyProblem::UnknownModel(m.name.clone())))?;
        if let (Some(reference), Some((commit, _))) = (spec.hub.as_mut(), &m.hub) {
            reference.revision = Some(commit.clone());
            continue;
        }
        if spec.hub.is_some() {
            continue;
        }
        for (file, blake3) in &m.files {
            let path = if spec.path.is_dir() {
                spec.path.join(file)
            } else {
                spec.path
                    .parent()
                    .map_or_else(|| PathBuf::from(file), |d| d.join(file))
            };
            let now = hash_file(&path).map_err(|source| {
                fail(VerifyProblem::File {
                    model: m.name.clone(),
                    path: path.clone(),
                    source,
                })
            })?;
            files.push(FileCheck {
                model: m.name.clone(),
                file: file.clone(),
                path,
                recorded: blake3.clone(),
                now,
            });
        }
    }

    let opts = RunOptions {
        limits: opts.limits.clone(),
        progress: opts.progress,
        hash_cache: None,
        hub: opts.hub.clone(),
        direct: opts.direct,
    };
    let mut rerun: Report = crate::run(&recipe, registry, &opts)?;
    // The commit was pinned; the report states the revision as it was asked for.
    for m in &mut rerun.models {
        let asked = models
            .iter()
            .find(|r| r.name == m.name)
            .and_then(|r| r.hub.as_ref());
        if let (Some(hub), Some((_, revision))) = (m.hub.as_mut(), asked) {
            hub.revision = revision.clone();
        }
    }
    let rerun_text = rerun.to_json();
    let mut raw = Vec::new();
    if rerun_text != text {
        let now: Value = serde_json::from_str(&rerun_text)
            .map_err(|_| Error::Internal("the re-run's report is not JSON"))?;
        diff(&recorded, &now, &mut Vec::new(), &mut raw);
    }
    let mut changed: BTreeMap<String, String> = files
        .iter()
        .filter(|f| !f.same())
        .map(|f| (f.model.clone(), f.file.clone()))
        .collect();
    // An `hf://` model's files are not hashed first: what identifies them (hashes, commit)
    // differing in the re-run means other bytes.
    for d in &raw {
        if let [Step::Key(k), Step::Named(m), Step::Key(part), rest @ ..] = d.path.as_slice() {
            let hub = models.iter().any(|r| &r.name == m && r.hub.is_some());
            if k == "models" && hub && (part == "files" || part == "hub") {
                let file = match rest.first() {
                    Some(Step::Named(f)) if part == "files" => f.clone(),
                    _ => format!("hf:// model `{m}`"),
                };
                changed.entry(m.clone()).or_insert(file);
            }
        }
    }
    let outcome = if rerun_text == text {
        Outcome::Identical
    } else if !changed.is_empty() {
        Outcome::FileChanged
    } else if recorded_version != TOOL_VERSION {
        Outcome::ToolVersion
    } else {
        Outcome::Edited
    };
    let mut differences = Vec::new();
    if outcome != Outcome::Identical {
        let sides = comparison_sides(&recorded);
        let by_model: BTreeMap<&str, &str> = changed
            .iter()
            .map(|(m, f)| (m.as_str(), f.as_str()))
            .collect();
        for d in raw {
            let cause = cause_of(&d.path, &by_model, &sides, outcome);
            differences.push(Difference {
                field: field_text(&d.path),
                recorded: d.recorded.as_ref().map(shown),
                now: d.now.as_ref().map(shown),
                tensor: tensor_of(&d.path),
                cause,
            });
        }
        if differences.is_empty() {
            // Same values, different bytes (whitespace, key order, number spelling): the file
            // is not the canonical rendering, so it was edited.
            differences.push(Difference {
                field: "(formatting)".to_owned(),
                recorded: None,
                now: None,
                tensor: None,
                cause: Cause::Edited,
            });
        }
    }
    Ok(Verification {
        report: report.to_owned(),
        base,
        recorded_version: recorded_version.to_owned(),
        recipe_intact,
        files,
        changed,
        differences,
        outcome,
    })
}

impl Verification {
    /// The plain-text account `weightkin verify` prints.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "verify {} (written by weightkin {}, re-run by {TOOL_VERSION}; model paths \
             relative to {})",
            self.report.display(),
            self.recorded_version,
            self.base.display()
        );
        if !self.recipe_intact {
            let _ = writeln!(
                t,
                "embedded recipe: EDITED (audit.recipe does not hash to audit.recipe_blake3)"
            );
        }
        if !self.files.is_empty() {
            let _ = writeln!(t, "files:");
        }
        for f in &self.files {
            if f.same() {
                let _ = writeln!(t, "  same     {}: {}", f.model, f.file);
            } else {
                let _ = writeln!(
                    t,
                    "  CHANGED  {}: {} (BLAKE3 in the report {}, now {})",
                    f.model,
                    f.file,
                    short(&f.recorded),
                    short(&f.now)
                );
            }
        }
        if self.outcome == Outcome::Identical {
            let _ = writeln!(t, "result: reproduced, byte for byte");
            return t;
        }
        let _ = writeln!(t, "differences ({}):", self.differences.len());
        for d in self.differences.iter().take(LISTED) {
            let _ = writeln!(
                t,
                "  {}: {} → {}  ({})",
                d.field,
                d.recorded.as_deref().unwrap_or("(absent)"),
                d.now.as_deref().unwrap_or("(absent)"),
                d.cause.text(&self.recorded_version)
            );
        }
        if self.differences.len() > LISTED {
            let _ = writeln!(t, "  … and {} more", self.differences.len() - LISTED);
        }
        let mut tensors: BTreeMap<(bool, &str), BTreeSet<&str>> = BTreeMap::new();
        for f in self.differences.iter().filter_map(|d| d.tensor.as_ref()) {
            tensors
                .entry((!f.measured, &f.comparison))
                .or_default()
                .insert(&f.tensor);
        }
        for ((shared, c), names) in &tensors {
            let names: Vec<&str> = names.iter().copied().collect();
            let what = if *shared {
                "tensors whose evidence differs (through a null they share)"
            } else {
                "tensors whose measured values differ"
            };
            let _ = writeln!(t, "{what} in `{c}` ({}): {}", names.len(), names.join(", "));
        }
        let why = match self.outcome {
            Outcome::Identical => String::new(),
            Outcome::FileChanged => {
                let changed: Vec<String> = self
                    .changed
                    .iter()
                    .map(|(model, file)| format!("{file} (model `{model}`)"))
                    .collect();
                format!("{} not the file(s) audited", changed.join(", "))
            }
            Outcome::ToolVersion => format!(
                "the files are the ones audited; the report was written by weightkin {}, \
                 this is {TOOL_VERSION}",
                self.recorded_version
            ),
            Outcome::Edited => {
                let fields: Vec<&str> = self
                    .differences
                    .iter()
                    .take(LISTED)
                    .map(|d| d.field.as_str())
                    .collect();
                format!(
                    "the files and the tool version are the ones recorded; the report was \
                     edited: {}",
                    fields.join(", ")
                )
            }
        };
        let _ = writeln!(t, "result: NOT reproduced: {why}");
        t
    }
}

/// The string at a dotted path of object keys.
fn string_at<'v>(v: &'v Value, field: &str) -> Result<&'v str, VerifyProblem> {
    let mut at = v;
    for key in field.split('.') {
        at = at.get(key).unwrap_or(&Value::Null);
    }
    at.as_str().ok_or_else(|| VerifyProblem::Field {
        field: field.to_owned(),
        expected: "a string (reports written before `weightkin verify` existed do not embed \
                   their recipe and cannot be verified)",
    })
}

/// The models the report lists, with their recorded file hashes and hub commits.
fn recorded_models(v: &Value) -> Result<Vec<RecordedModel>, VerifyProblem> {
    let bad = |field: &str, expected| VerifyProblem::Field {
        field: field.to_owned(),
        expected,
    };
    let list = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("models", "a list of models"))?;
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("models[{i}].name"), "a string"))?
            .to_owned();
        let mut files = Vec::new();
        for (j, f) in m
            .get("files")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&format!("models[{name}].files"), "a list of files"))?
            .iter()
            .enumerate()
        {
            let path = f
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("models[{name}].files[{j}].path"), "a string"))?;
            if let Some(h) = f.get("blake3").and_then(Value::as_str) {
                files.push((path.to_owned(), h.to_owned()));
            }
        }
        let hub = match m.get("hub") {
            None => None,
            Some(h) => {
                let s = |k: &str| {
                    h.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| bad(&format!("models[{name}].hub.{k}"), "a string"))
                };
                Some((s("commit")?, s("revision")?))
            }
        };
        out.push(RecordedModel { name, files, hub });
    }
    Ok(out)
}

/// Why [`locate`] failed.
enum Located {
    Recipe(Error),
    Problem(VerifyProblem),
}

/// Parses the embedded recipe against the first base directory under which every local
/// model path exists: `base` if given, else the report's directory, else the current one.
fn locate(
    report: &Path,
    base: Option<&Path>,
    text: &str,
    registry: &Registry,
) -> Result<(PathBuf, Recipe), Located> {
    let report_dir = match report.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let tried: Vec<PathBuf> = match base {
        Some(b) => vec![b.to_owned()],
        None if report_dir == Path::new(".") => vec![report_dir],
        None => vec![report_dir, PathBuf::from(".")],
    };
    let name = format!(
        "{}#audit.recipe",
        report
            .file_name()
            .map_or_else(|| "report".into(), |n| n.to_string_lossy())
    );
    let mut first_missing = None;
    for dir in &tried {
        let recipe = recipe::parse(&dir.join(&name), text, registry)
            .map_err(|e| Located::Recipe(e.into()))?;
        let missing = recipe
            .models
            .iter()
            .find(|(_, s)| s.hub.is_none() && !s.path.exists());
        match missing {
            None => return Ok((dir.clone(), recipe)),
            Some((model, spec)) => {
                first_missing.get_or_insert_with(|| (model.clone(), spec.path_as_given.clone()));
            }
        }
    }
    let (model, path) = first_missing.unwrap_or_default();
    Err(Located::Problem(VerifyProblem::ModelNotFound {
        model,
        path,
        tried,
    }))
}

/// BLAKE3 of a file, read (not mapped: a file that shrinks gives an error, not a fault).
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update_rayon(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    /// An array element by its identifying field (`name`, `path`, `class`, `stack`).
    Named(String),
    Index(usize),
}

/// A raw difference.
struct RawDiff {
    path: Vec<Step>,
    recorded: Option<Value>,
    now: Option<Value>,
}

/// Fields that identify an array element, in the order tried.
const IDENTIFIERS: &[&str] = &["name", "path", "class", "stack", "metric"];

/// The identifying field under which every element of both arrays has a distinct string.
fn identifier(a: &[Value], b: &[Value]) -> Option<&'static str> {
    IDENTIFIERS.iter().copied().find(|key| {
        [a, b].iter().all(|list| {
            let mut seen = BTreeSet::new();
            list.iter().all(|e| {
                e.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| seen.insert(s))
            })
        })
    })
}

/// Appends every leaf where `a` and `b` differ.
fn diff(a: &Value, b: &Value, path: &mut Vec<Step>, out: &mut Vec<RawDiff>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                path.push(Step::Key(k.clone()));
                match y.get(k) {
                    Some(vb) => diff(va, vb, path, out),
                    None => out.push(RawDiff {
                        path: path.clone(),
                        recorded: Some(va.clone()),
                        now: None,
                    }),
                }
                path.pop();
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                path.push(Step::Key(k.clone()));
                out.push(RawDiff {
                    path: path.clone(),
                    recorded: None,
                    now: Some(vb.clone()),
                });
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) => match identifier(x, y) {
            Some(key) => {
                let id = |e: &Value| e.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
                let by_id: BTreeMap<String, &Value> = y.iter().map(|e| (id(e), e)).collect();
                let ids_a: BTreeSet<String> = x.iter().map(id).collect();
                for ea in x {
                    path.push(Step::Named(id(ea)));
                    match by_id.get(&id(ea)) {
                        Some(eb) => diff(ea, eb, path, out),
                        None => out.push(RawDiff {
                            path: path.clone(),
                            recorded: Some(ea.clone()),
                            now: None,
                        }),
                    }
                    path.pop();
                }
                for eb in y.iter().filter(|e| !ids_a.contains(&id(e))) {
                    path.push(Step::Named(id(eb)));
                    out.push(RawDiff {
                        path: path.clone(),
                        recorded: None,
                        now: Some(eb.clone()),
                    });
                    path.pop();
                }
            }
            None => {
                for i in 0..x.len().max(y.len()) {
                    path.push(Step::Index(i));
                    match (x.get(i), y.get(i)) {
                        (Some(ea), Some(eb)) => diff(ea, eb, path, out),
                        (ea, eb) => out.push(RawDiff {
                            path: path.clone(),
                            recorded: ea.cloned(),
                            now: eb.cloned(),
                        }),
                    }
                    path.pop();
                }
            }
        },
        _ if a == b => {}
        _ => out.push(RawDiff {
            path: path.clone(),
            recorded: Some(a.clone()),
            now: Some(b.clone()),
        }),
    }
}

/// `models[base].files[base.safetensors].blake3`.
fn field_text(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Named(n) => {
                let _ = write!(s, "[{n}]");
            }
            Step::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// The tensor row a path under `comparisons[C].tensors[T]` is in.
fn tensor_of(path: &[Step]) -> Option<TensorField> {
    match path {
        [Step::Key(c), Step::Named(cmp), Step::Key(t), Step::Named(tensor), rest @ ..]
            if c == "comparisons" && t == "tensors" =>
        {
            Some(TensorField {
                comparison: cmp.clone(),
                tensor: tensor.clone(),
                measured: matches!(rest.first(), Some(Step::Key(k)) if k == "values"),
            })
        }
        _ => None,
    }
}

/// Comparison name → its models (A, B), from the report.
fn comparison_sides(v: &Value) -> BTreeMap<String, (String, String)> {
    let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    v.get("comparisons")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (s(c, "name"), (s(c, "a"), s(c, "b"))))
        .collect()
}

/// The cause of a difference at `path`: a changed file of the model it is about (a
/// comparison is about its two models), else the outcome's cause.
fn cause_of(
    path: &[Step],
    changed: &BTreeMap<&str, &str>,
    sides: &BTreeMap<String, (String, String)>,
    outcome: Outcome,
) -> Cause {
    let models: Vec<&str> = match path {
        [Step::Key(k), Step::Named(m), ..] if k == "models" => vec![m.as_str()],
        [Step::Key(k), Step::Named(c), ..] if k == "comparisons" => sides
            .get(c)
            .map_or_else(Vec::new, |(a, b)| vec![a.as_str(), b.as_str()]),
        _ => Vec::new(),
    };
    let file_cause = models
        .iter()
        .chain(changed.keys())
        .find_map(|m| changed.get_key_value(m));
    match (outcome, file_cause) {
        (_, Some((model, file))) => Cause::ChangedFile {
            model: (*model).to_owned(),
            file: (*file).to_owned(),
        },
        (Outcome::ToolVersion, None) => Cause::ToolVersion,
        _ => Cause::Edited,
    }
}

/// A value as one line, cut to [`SHOWN`] characters.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= SHOWN {
        return s;
    }
    let cut: String = s.chars().take(SHOWN).collect();
    format!("{cut}…")
}

/// The first 12 hex digits of a hash.
fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn diffs(a: &str, b: &str) -> Vec<String> {
        let (a, b): (Value, Value) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        let mut out = Vec::new();
        diff(&a, &b, &mut Vec::new(), &mut out);
        out.iter().map(|d| field_text(&d.path)).collect()
    }

    #[test]
    fn differences_name_array_elements_by_their_name() {
        let a =
            r#"{"comparisons":[{"name":"x","tensors":[{"name":"w1","v":1},{"name":"w2","v":2}]}]}"#;
        let b =
            r#"{"comparisons":[{"name":"x","tensors":[{"name":"w2","v":3},{"name":"w1","v":1}]}]}"#;
        assert_eq!(diffs(a, b), ["comparisons[x].tensors[w2].v"]);
        let steps = vec![
            Step::Key("comparisons".into()),
            Step::Named("x".into()),
            Step::Key("tensors".into()),
            Step::Named("w2".into()),
            Step::Key("v".into()),
        ];
        let f = tensor_of(&steps).unwrap();
        assert_eq!((f.comparison.as_str(), f.tensor.as_str()), ("x", "w2"));
        assert!(!f.measured);
    }

    #[test]
    fn missing_extra_and_unnamed_elements() {
        assert_eq!(diffs(r#"{"a":1}"#, r#"{"b":1}"#), ["a", "b"]);
        assert_eq!(diffs("[1,2]", "[1,3,4]"), ["[1]", "[2]"]);
        // Duplicate names: elements are matched by position.
        let a = r#"[{"name":"n","v":1},{"name":"n","v":2}]"#;
        let b = r#"[{"name":"n","v":1},{"name":"n","v":5}]"#;
        assert_eq!(diffs(a, b), ["[1].v"]);
        assert!(diffs(r#"{"x":[1,{"y":null}]}"#, r#"{"x":[1,{"y":null}]}"#).is_empty());
    }

    #[test]
    fn causes_follow_the_comparison_models() {
        let changed = BTreeMap::from([("ft", "ft.safetensors")]);
        let sides = BTreeMap::from([
            ("c1".to_owned(), ("base".to_owned(), "ft".to_owned())),
            ("c2".to_owned(), ("base".to_owned(), "other".to_owned())),
        ]);
        let at = |c: &str| vec![Step::Key("comparisons".into()), Step::Named(c.into())];
        assert_eq!(
            cause_of(&at("c1"), &changed, &sides, Outcome::FileChanged),
            Cause::ChangedFile {
                model: "ft".into(),
                file: "ft.safetensors".into()
            }
        );
        let none = BTreeMap::new();
        assert_eq!(
            cause_of(&at("c2"), &none, &sides, Outcome::Edited),
            Cause::Edited
        );
        assert_eq!(
            cause_of(&at("c2"), &none, &sides, Outcome::ToolVersion),
            Cause::ToolVersion
        );
    }
}
