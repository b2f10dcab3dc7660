//! Building a zoo directory: train or derive every planned model that is not already there,
//! write it, and record it in the manifest.
//!
//! A model already listed in the directory's manifest whose file still has the recorded
//! BLAKE3 is kept, so a second `build` of the same subset trains nothing, and building the
//! full zoo after the small subset only adds the missing models (a model's bytes do not
//! depend on which subset it was built in). Models are built level by level (bases, then
//! models trained from them, then casts and subsets, then merges), each level in parallel on
//! `jobs` threads; a child reads its parents from their files. The manifest is rewritten
//! after each level, so an interrupted build resumes where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::arch::{layer_subset, Dataset};
use crate::manifest::{ArchitectureEntry, Generator, Loss, Manifest, Model, Subset};
use crate::nn;
use crate::plan::{plan, Make, Spec};
use crate::rng::Stream;
use crate::weights::{self, Weights};
use crate::{Error, GENERATOR_VERSION};

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Models made now.
    pub built: Vec<String>,
    /// Models found already built and verified.
    pub kept: Vec<String>,
}

/// Checks that every model of `m` has its file with the recorded hash.
pub fn verify(dir: &Path, m: &Manifest) -> Result<(), Error> {
    m.models
        .par_iter()
        .try_for_each(|model| verify_model(dir, model))
}

fn verify_model(dir: &Path, model: &Model) -> Result<(), Error> {
    let path = dir.join(&model.path);
    if !path.exists() {
        return Err(Error::MissingFile {
            model: model.name.clone(),
            path,
        });
    }
    let found = hash_file(&path)?;
    if found != model.blake3 {
        return Err(Error::HashMismatch {
            model: model.name.clone(),
            path,
            expected: model.blake3.clone(),
            found,
        });
    }
    Ok(())
}

/// Builds `subset` into `dir` on `jobs` threads, reporting each model on `log`.
pub fn build(
    dir: &Path,
    subset: Subset,
    jobs: usize,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Summary, Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|source| Error::ThreadPool {
            threads: jobs,
            source,
        })?;
    let specs = plan(subset);
    let existing = Manifest::read(dir)?;
    let mut done: BTreeMap<String, Model> = BTreeMap::new();
    if let Some(m) = &existing {
        for model in &m.models {
            if verify_model(dir, model).is_ok() {
                done.insert(model.name.clone(), model.clone());
            }
        }
    }
    let mut summary = Summary {
        built: Vec::new(),
        kept: Vec::new(),
    };
    let mut levels: BTreeMap<u8, Vec<&Spec>> = BTreeMap::new();
    for s in &specs {
        if let Some(old) = done.get_mut(&s.name) {
            // Same bytes; the lineage fields are the plan's (subset membership may have
            // been recorded by a build of the other subset).
            *old = Model {
                loss: old.loss,
                ..entry(
                    s,
                    old.tensors,
                    old.parameters,
                    old.bytes,
                    old.blake3.clone(),
                )
            };
            summary.kept.push(s.name.clone());
        } else {
            levels.entry(s.make.level()).or_default().push(s);
        }
    }
    for todo in levels.values() {
        // Longest first, so the slowest trainings start early.
        let mut todo = todo.clone();
        todo.sort_by_key(|s| std::cmp::Reverse(cost(s)));
        let made: Vec<Result<Model, Error>> = pool.install(|| {
            todo.par_iter()
                .map(|s| {
                    let start = std::time::Instant::now();
                    let m = make(dir, s, &done)?;
                    log(&format!(
                        "{:<48} {:>6.1} s{}",
                        s.name,
                        start.elapsed().as_secs_f64(),
                        m.loss
                            .map(|l| format!("  loss {:.3} → {:.3}", l.start, l.end))
                            .unwrap_or_default()
                    ));
                    Ok(m)
                })
                .collect()
        });
        // Record every model that was made before reporting a failure, so that a rerun
        // (after, say, a full disk) does not train them again.
        let mut failure = None;
        for m in made {
            match m {
                Ok(m) => {
                    summary.built.push(m.name.clone());
                    done.insert(m.name.clone(), m);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        write_manifest(dir, &done)?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    write_manifest(dir, &done)?;
    Ok(summary)
}

/// A rough relative cost, to start long trainings first.
fn cost(s: &Spec) -> u64 {
    let per_step = match s.architecture {
        crate::arch::Architecture::Llama => 6,
        crate::arch::Architecture::Resnet => 4,
        crate::arch::Architecture::Mlp => 1,
    };
    s.schedule().map_or(0, |sc| per_step * sc.steps as u64)
}

/// Every model in `done`, in full-plan order (parents first), under the manifest.
fn write_manifest(dir: &Path, done: &BTreeMap<String, Model>) -> Result<(), Error> {
    let complete = |s: Subset| plan(s).iter().all(|x| done.contains_key(&x.name));
    let held = [Subset::Full, Subset::Small]
        .into_iter()
        .find(|s| complete(*s));
    let order = plan(Subset::Full);
    let models: Vec<Model> = order
        .iter()
        .filter_map(|s| done.get(&s.name).cloned())
        .collect();
    let architectures = crate::arch::Architecture::ALL
        .iter()
        .map(|a| ArchitectureEntry {
            name: *a,
            family: a.family().to_owned(),
            config: a.config(),
            parameters: weights::parameters(&a.init(&mut Stream::new(&["parameter count"]))),
        })
        .collect();
    Manifest {
        schema_version: crate::manifest::SCHEMA_VERSION,
        generator: Generator {
            name: "weightkin-zoo".into(),
            version: GENERATOR_VERSION.into(),
        },
        subset: held,
        architectures,
        models,
    }
    .write(dir)
}

fn parent(
    dir: &Path,
    spec: &Spec,
    name: &str,
    done: &BTreeMap<String, Model>,
) -> Result<Weights, Error> {
    let m = done.get(name).ok_or_else(|| Error::MissingParent {
        model: spec.name.clone(),
        parent: name.to_owned(),
    })?;
    weights::read(&dir.join(&m.path))
}

/// The first parent's weights (every transform but a merge has exactly one).
fn only_parent(dir: &Path, spec: &Spec, done: &BTreeMap<String, Model>) -> Result<Weights, Error> {
    let name = spec.parents.first().ok_or_else(|| Error::MissingParent {
        model: spec.name.clone(),
        parent: "(none in the plan)".into(),
    })?;
    parent(dir, spec, name, done)
}

/// Makes one model, writes its file, and returns its manifest entry.
fn make(dir: &Path, spec: &Spec, done: &BTreeMap<String, Model>) -> Result<Model, Error> {
    let a = spec.architecture;
    let mut loss = None;
    let w = match &spec.make {
        Make::Train { .. } => {
            let init = a.init(&mut Stream::new(&[&spec.name, "init"]));
            let t = train(spec, init, Dataset::Base)?;
            loss = Some(t.1);
            t.0
        }
        Make::Tune { data, .. } => {
            let t = train(spec, only_parent(dir, spec, done)?, *data)?;
            loss = Some(t.1);
            t.0
        }
        Make::Continue => {
            let t = train(spec, only_parent(dir, spec, done)?, Dataset::Base)?;
            loss = Some(t.1);
            t.0
        }
        Make::Cast(_) => only_parent(dir, spec, done)?,
        Make::Subset(keep) => layer_subset(&only_parent(dir, spec, done)?, keep),
        Make::Merge => {
            let ps = spec
                .parents
                .iter()
                .map(|p| parent(dir, spec, p, done))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&Weights> = ps.iter().collect();
            let share = 1.0 / refs.len().max(1) as f32;
            weights::average(&refs, &vec![share; refs.len()])
        }
    };
    let bytes = weights::serialize(&w, spec.dtype(), &spec.name)?;
    write_atomic(&dir.join(spec.path()), &bytes)?;
    Ok(Model {
        loss,
        ..entry(
            spec,
            w.len(),
            weights::parameters(&w),
            bytes.len() as u64,
            blake3::hash(&bytes).to_hex().to_string(),
        )
    })
}

/// The manifest entry of `spec`'s model, given what its file holds (no training losses).
fn entry(spec: &Spec, tensors: usize, parameters: u64, bytes: u64, blake3: String) -> Model {
    let mut subsets = vec![Subset::Full];
    if spec.small {
        subsets.insert(0, Subset::Small);
    }
    Model {
        name: spec.name.clone(),
        path: spec.path(),
        architecture: spec.architecture,
        parents: spec.parents.clone(),
        roots: spec.roots.clone(),
        transform: spec.transform(),
        dtype: spec.dtype(),
        subsets,
        tensors,
        parameters,
        bytes,
        blake3,
        loss: None,
    }
}

fn train(spec: &Spec, init: Weights, data: Dataset) -> Result<(Weights, Loss), Error> {
    let job = spec.architecture.job(data)?;
    let schedule = spec.schedule().unwrap_or(spec.architecture.base_schedule());
    let t = nn::train(
        job.as_ref(),
        init,
        &schedule,
        &mut Stream::new(&[&spec.name, "data"]),
    )?;
    // Rounded so the manifest's text does not depend on float formatting of the last digits.
    let r = |x: f64| (x * 1e4).round() / 1e4;
    Ok((
        t.weights,
        Loss {
            start: r(t.loss_start),
            end: r(t.loss_end),
        },
    ))
}
