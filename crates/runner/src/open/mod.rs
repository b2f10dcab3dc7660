//! Open: each model of the recipe opened by its format (headers only; tensor bytes stay
//! lazy), described for the report, its tensor names normalised by the recipe's rename
//! rules, and its files' BLAKE3 hashes taken from the [`crate::HashCache`] or collected by the
//! comparisons' passes and completed afterwards ([`FileHashes`]).
//!
//! An `hf://` model is located by `weightkin-hub` (the Hugging Face cache, else a sparse
//! copy holding only the headers) and opened by its format like any local file; a remote
//! one is wrapped so that its tensors' bytes are fetched before they are read: all the
//! pairs' at once ([`prefetch`], right after pairing), any other one when first read. Its
//! files are not hashed whole unless every byte is present; [`FileHashes::finish`] records
//! its provenance instead ([`HubReport`]).

pub mod stamp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use weightkin_core::{FetchProgress, FileHashers, MappedFile, Registry, WeightSource};
use weightkin_hub::{Handle, Hub, HubEnv, HubOptions, Origin};

use crate::hashcache::{Lookup, Pending};
use crate::plan;
use crate::recipe::{CompareSpec, ModelSpec, Recipe};
use crate::report::{FileReport, HubReport, Identity, ModelReport};
use crate::{Error, RunOptions};

/// An opened model.
pub struct Opened {
    /// The weights.
    pub source: Box<dyn WeightSource>,
    /// Its entry in the report (file hashes filled in by [`FileHashes::finish`]).
    pub report: ModelReport,
    /// Renamed tensor name → tensor index (the recipe's rename rules applied).
    pub names: BTreeMap<String, usize>,
    /// For an `hf://` model: where its bytes come from (its provenance is recorded by
    /// [`FileHashes::finish`]).
    pub hub: Option<Handle>,
}

impl Opened {
    /// Whether the model's files may be only partly present (a remote `hf://` model): they
    /// are then never hashed whole by reading them.
    fn remote(&self) -> bool {
        self.hub.as_ref().is_some_and(|h| h.origin() == Origin::Hub)
    }
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
        let mut hub = opts.hub.clone();
        for (name, spec) in &recipe.models {
            let open_error = |source| Error::OpenModel {
                model: name.clone(),
                path: spec.path_as_given.clone(),
                source: Box::new(source),
            };
            let opened = match &spec.hub {
                None => Source {
                    source: registry
                        .open(&spec.path, spec.format.as_deref(), &opts.limits)
                        .map_err(open_error)?,
                    path: spec.path.clone(),
                    hub: None,
                },
                Some(reference) => {
                    let hub = hub.get_or_insert_with(|| {
                        Arc::new(Hub::new(HubEnv::from_env(), HubOptions::default()))
                    });
                    open_hub(name, spec, reference, hub, registry, opts)?
                }
            };
            let report = describe(
                name,
                &spec.path_as_given,
                &opened.path,
                opened.source.as_ref(),
            );
            models.insert(name.clone(), (opened.source, report, opened.hub));
        }
        // Renamed after all are open, so that an unopenable model is reported first.
        let mut out = BTreeMap::new();
        for (name, (source, report, hub)) in models {
            let rules = recipe.models.get(&name).map_or(&[][..], |s| &s.rename[..]);
            let names = plan::renamed(&name, source.as_ref(), rules)?;
            out.insert(
                name,
                Opened {
                    source,
                    report,
                    names,
                    hub,
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
            if m.remote() {
                continue; // provenance recorded by `finish`, from the hub crate
            }
            for (f, report) in m.source.files().iter().zip(&mut m.report.files) {
                let miss = match &opts.hash_cache {
                    Some(cache) => match cache.begin(&f.path) {
                        Lookup::Hit(blake3) => {
                            hashers.known(&f.path, &blake3);
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
        finish_hashes(models, &self.hashers, self.pending, opts)?;
        record_hub(models)
    }
}

/// A model's source as opened, before its names are renamed.
struct Source {
    source: Box<dyn WeightSource>,
    /// The path opened (the one its files' report paths are relative to).
    path: PathBuf,
    hub: Option<Handle>,
}

/// Locates an `hf://` model, opens it with its format and wraps it for remote reads.
fn open_hub(
    name: &str,
    spec: &ModelSpec,
    reference: &weightkin_hub::HfRef,
    hub: &Hub,
    registry: &Registry,
    opts: &RunOptions<'_>,
) -> Result<Source, Error> {
    let (source, handle, path) = locate_and_open(
        name,
        &spec.path_as_given,
        spec.format.as_deref(),
        reference,
        hub,
        registry,
        &opts.limits,
    )?;
    Ok(Source {
        source,
        path,
        hub: Some(handle),
    })
}

/// What an `hf://` model opens to: the source wrapped for remote reads, its hub handle
/// (provenance), and the local path it was opened at (in the HF cache or the project's store).
pub(crate) type HubOpened = (Box<dyn WeightSource>, Handle, PathBuf);

/// Locates `reference` (the HF cache first, then the hub), opens it with its format (`format`,
/// or detected) and wraps it for remote reads: the one sequence an audit and a sketch share.
/// Errors name `model` and the path `given`.
pub(crate) fn locate_and_open(
    model: &str,
    given: &str,
    format: Option<&str>,
    reference: &weightkin_hub::HfRef,
    hub: &Hub,
    registry: &Registry,
    limits: &weightkin_core::Limits,
) -> Result<HubOpened, Error> {
    let hub_error = |source| Error::Hub {
        model: model.to_owned(),
        path: given.to_owned(),
        source: Box::new(source),
    };
    let located = hub.locate(reference).map_err(hub_error)?;
    let path = located.path.clone();
    let inner = registry
        .open(&path, format, limits)
        .map_err(|source| Error::OpenModel {
            model: model.to_owned(),
            path: given.to_owned(),
            source: Box::new(source),
        })?;
    let (source, handle) = located.wrap(inner).map_err(hub_error)?;
    Ok((source, handle, path))
}

/// Writes each `hf://` model's provenance into its report: the repository, resolved commit
/// and origin, each file's repository path and hub SHA-256, the whole-file BLAKE3 of a
/// remote file that is wholly present, and otherwise the BLAKE3 of each tensor read.
fn record_hub(models: &mut Models) -> Result<(), Error> {
    for (name, m) in models.0.iter_mut() {
        let Some(handle) = &m.hub else { continue };
        let p = handle
            .provenance(m.source.files())
            .map_err(|source| Error::Hub {
                model: name.clone(),
                path: m.report.path.clone(),
                source: Box::new(source),
            })?;
        for (report, file) in m.report.files.iter_mut().zip(&p.files) {
            report.path.clone_from(&file.path);
            report.sha256.clone_from(&file.sha256);
            if let Some(b) = &file.blake3 {
                report.blake3.clone_from(b);
            }
        }
        let whole = m.report.files.iter().all(|f| !f.blake3.is_empty());
        m.report.hub = Some(HubReport {
            repo: p.repo,
            revision: p.revision,
            commit: p.commit,
            origin: p.origin,
            identified_by: if whole {
                Identity::FileBlake3
            } else {
                Identity::TensorBlake3
            },
            tensors: if whole { BTreeMap::new() } else { p.tensors },
        });
    }
    Ok(())
}

/// Fetches the byte ranges of every tensor `pairs` reads, for each side that is a remote
/// model, before the pairs are measured: coalesced and in parallel, with the bytes shown on
/// the progress bar. A local model does nothing here.
pub fn prefetch(
    cmp: &CompareSpec,
    a: plan::Model<'_>,
    b: plan::Model<'_>,
    pairs: &[plan::Pair],
    opts: &RunOptions<'_>,
) -> Result<(), Error> {
    prefetch_side(cmp, &cmp.a, a, pairs.iter().map(|p| p.a).collect(), opts)?;
    prefetch_side(cmp, &cmp.b, b, pairs.iter().map(|p| p.b).collect(), opts)
}

/// [`prefetch`] for one side: model `model` (its recipe name) and its tensors `tensors`.
fn prefetch_side(
    cmp: &CompareSpec,
    model: &str,
    m: plan::Model<'_>,
    mut tensors: Vec<usize>,
    opts: &RunOptions<'_>,
) -> Result<(), Error> {
    tensors.sort_unstable();
    tensors.dedup();
    let bar = FetchBar {
        phase: format!("fetching {model}"),
        opts,
        started: AtomicBool::new(false),
    };
    let done = m.source.prefetch(&tensors, &bar);
    if bar.started.load(Ordering::Relaxed) {
        opts.progress.finish();
    }
    done.map_err(|source| Error::Fetch {
        compare: cmp.name.clone(),
        model: model.to_owned(),
        source: Box::new(source),
    })
}

/// A prefetch's bytes on the run's progress bar.
struct FetchBar<'a> {
    phase: String,
    opts: &'a RunOptions<'a>,
    started: AtomicBool,
}

impl FetchProgress for FetchBar<'_> {
    fn planned(&self, bytes: u64) {
        if !self.started.swap(true, Ordering::Relaxed) {
            self.opts.progress.start(&self.phase, bytes, "bytes");
        }
    }
    fn fetched(&self, bytes: u64) {
        self.opts.progress.advance(bytes);
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
                sha256: None,
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
        hub: None,
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
            opts.checkpoint()?;
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
            let blake3 = hasher.finish_with(&map, opts.direct).ok_or_else(|| {
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
