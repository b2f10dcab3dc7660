//! Open: each model of the recipe opened by its format (headers only; tensor bytes stay
//! lazy), described for the report, its tensor names normalised by the recipe's rename
//! rules, and its files' BLAKE3 hashes taken from the [`crate::HashCache`] or collected by the
//! comparisons' passes and completed afterwards ([`FileHashes`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weightkin_core::{FileHashers, MappedFile, Registry, WeightSource};

use crate::hashcache::{Lookup, Pending};
use crate::plan;
use crate::recipe::Recipe;
use crate::report::{FileReport, ModelReport};
use crate::{Error, RunOptions};

/// An opened model.
pub struct Opened {
    /// The weights.
    pub source: Box<dyn WeightSource>,
    /// Its entry in the report (file hashes filled in by [`FileHashes::finish`]).
    pub report: ModelReport,
    /// Renamed tensor name → tensor index (the recipe's rename rules applied).
    pub names: BTreeMap<String, usize>,
}

impl Opened {
    /// The model with its renamed names, as the plan stage takes it.
    pub fn named(&self) -> plan::Model<'_> {
        plan::Model {
            source: self.source.as_ref(),
            names: &self.names,
        }
    }
}

/// Every model of a recipe, by name.
pub struct Models(BTreeMap<String, Opened>);

impl Models {
    /// Opens every model of `recipe` and applies its rename rules.
    pub fn open(
        recipe: &Recipe,
        registry: &Registry,
        opts: &RunOptions<'_>,
    ) -> Result<Models, Error> {
        let mut models = BTreeMap::new();
        for (name, spec) in &recipe.models {
            let source = registry
                .open(&spec.path, spec.format.as_deref(), &opts.limits)
                .map_err(|source| Error::OpenModel {
                    model: name.clone(),
                    path: spec.path_as_given.clone(),
                    source: Box::new(source),
                })?;
            let report = describe(name, &spec.path_as_given, &spec.path, source.as_ref());
            models.insert(name.clone(), (source, report));
        }
        // Renamed after all are open, so that an unopenable model is reported first.
        let mut out = BTreeMap::new();
        for (name, (source, report)) in models {
            let rules = recipe.models.get(&name).map_or(&[][..], |s| &s.rename[..]);
            let names = plan::renamed(&name, source.as_ref(), rules)?;
            out.insert(
                name,
                Opened {
                    source,
                    report,
                    names,
                },
            );
        }
        Ok(Models(out))
    }

    /// The model called `name` (validation guarantees every name a compare uses exists).
    pub fn get(&self, name: &str) -> Result<&Opened, Error> {
        self.0.get(name).ok_or(Error::Internal(
            "a compare names a model that was not opened",
        ))
    }

    /// The report entries, sorted by name.
    pub fn into_reports(self) -> Vec<ModelReport> {
        self.0.into_values().map(|m| m.report).collect()
    }
}

/// The files whose hashes are still to be computed: collected piecewise by the comparisons'
/// passes ([`FileHashers`]) and completed by [`FileHashes::finish`].
pub struct FileHashes {
    /// Hashers of the files the cache did not have.
    pub hashers: FileHashers,
    pending: BTreeMap<PathBuf, Pending>,
}

impl FileHashes {
    /// Takes each file's hash from the cache where it has it (writing it into the model's
    /// report) and prepares a hasher for every other file.
    pub fn begin(models: &mut Models, opts: &RunOptions<'_>) -> FileHashes {
        let mut hashers = FileHashers::new();
        let mut pending = BTreeMap::new();
        for m in models.0.values_mut() {
            for (f, report) in m.source.files().iter().zip(&mut m.report.files) {
                let miss = match &opts.hash_cache {
                    Some(cache) => match cache.begin(&f.path) {
                        Lookup::Hit(blake3) => {
                            report.blake3 = blake3;
                            continue;
                        }
                        Lookup::Miss(p) => Some(p),
                    },
                    None => None,
                };
                hashers.add(&f.path, f.size);
                if let Some(p) = miss {
                    pending.insert(f.path.clone(), p);
                }
            }
        }
        FileHashes { hashers, pending }
    }

    /// Completes every file hash the cache did not have: hashes what the comparisons'
    /// passes did not read ([`weightkin_core::FileHasher::finish`]), stores the results in the
    /// cache, and writes them into the model reports.
    pub fn finish(self, models: &mut Models, opts: &RunOptions<'_>) -> Result<(), Error> {
        finish_hashes(models, &self.hashers, self.pending, opts)
    }
}

/// Builds a model's report entry; file hashes are filled in by [`FileHashes::finish`].
fn describe(name: &str, given: &str, path: &Path, source: &dyn WeightSource) -> ModelReport {
    let files = source
        .files()
        .iter()
        .map(|f| {
            let rel = f
                .path
                .strip_prefix(path)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .or_else(|| f.path.file_name().map(Path::new))
                .unwrap_or(&f.path);
            FileReport {
                path: rel.to_string_lossy().replace('\\', "/"),
                bytes: f.size,
                blake3: String::new(),
            }
        })
        .collect();
    let mut dtypes = BTreeMap::new();
    for t in source.tensors() {
        *dtypes.entry(t.dtype.to_string()).or_insert(0) += 1;
    }
    ModelReport {
        name: name.to_owned(),
        path: given.to_owned(),
        format: source.format(),
        files,
        tensors: source.tensors().len(),
        parameters: source.tensors().iter().map(|t| t.numel as u64).sum(),
        dtypes,
        transforms: source.transforms().to_vec(),
    }
}

/// [`FileHashes::finish`].
fn finish_hashes(
    models: &mut Models,
    hashers: &FileHashers,
    mut pending: BTreeMap<PathBuf, Pending>,
    opts: &RunOptions<'_>,
) -> Result<(), Error> {
    let mut done: BTreeMap<PathBuf, String> = BTreeMap::new();
    let total: u64 = models
        .0
        .values()
        .flat_map(|m| m.source.files())
        .filter(|f| hashers.get(&f.path).is_some())
        .map(|f| f.size)
        .sum();
    opts.progress.start("hashing", total, "bytes");
    for (name, m) in models.0.iter_mut() {
        for (f, report) in m.source.files().iter().zip(&mut m.report.files) {
            let Some(hasher) = hashers.get(&f.path) else {
                continue; // from the cache
            };
            if let Some(blake3) = done.get(&f.path) {
                report.blake3.clone_from(blake3);
                continue;
            }
            let open_error = |source| Error::OpenModel {
                model: name.clone(),
                path: m.report.path.clone(),
                source: Box::new(source),
            };
            let map = MappedFile::open(&f.path).map_err(open_error)?;
            let blake3 = hasher.finish(&map).ok_or_else(|| {
                open_error(weightkin_core::Error::Io {
                    path: f.path.clone(),
                    action: "hash (its size changed while it was audited)",
                    source: std::io::ErrorKind::InvalidData.into(),
                })
            })?;
            opts.progress.advance(f.size);
            if let (Some(cache), Some(p)) = (&opts.hash_cache, pending.remove(&f.path)) {
                cache.complete(p, &blake3);
            }
            report.blake3.clone_from(&blake3);
            done.insert(f.path.clone(), blake3);
        }
    }
    opts.progress.finish();
    Ok(())
}
