//! The zoo's manifest: `manifest.json` at the root of a built zoo, the single source of truth
//! about every model's lineage.
//!
//! Schema (`schema_version` 1; README "The model zoo" documents it for readers):
//!
//! ```text
//! schema_version      1
//! generator           { name: "weightkin-zoo", version }      version = the cache key
//! subset              "small" | "full" | null: the largest subset this directory holds
//!                     completely (null while a build is incomplete)
//! architectures[]     { name, family, config, parameters }
//! models[]            in build order (parents before children)
//!   name              "llama/base-0-ft-recipe-light"; the file is `path`
//!   path              relative to the manifest, "llama/base-0-ft-recipe-light.safetensors"
//!   architecture      "llama" | "resnet" | "mlp"
//!   parents[]         names of the models it was made from (empty for a base)
//!   roots[]           the independently initialised bases it descends from; two models
//!                     share ancestry exactly when their roots intersect
//!   transform         { kind, … }: how it was made from its parents
//!     train           { seed, data, steps, lr, batch }           a base, from scratch
//!     fine-tune       { strength, data, steps, lr, batch }       on other data
//!     continue-training { data, steps, lr, batch }              more of the base's data
//!     cast            { dtype }                                  F16 / BF16 copy
//!     layer-subset    { keep[] }                                 layers kept, renumbered
//!     merge           { weights[] }                              weighted average of parents
//!   dtype             "F32" | "F16" | "BF16" (float tensors; counters are I64)
//!   subsets[]         the subsets that contain it ("small", "full")
//!   tensors, parameters, bytes
//!   blake3            of the file
//!   loss?             { start, end }: mean training loss over the first and last 10 % of
//!                     steps, for trained models
//! ```
//!
//! Later transforms (permutations, pruning, renaming) add new `kind`s and bump
//! `schema_version` only if an existing field changes meaning.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::weights::Dtype;
use crate::{Error, GENERATOR_VERSION};

/// The manifest's schema version.
pub const SCHEMA_VERSION: u32 = 1;
/// The manifest's file name in a zoo directory.
pub const FILE: &str = "manifest.json";

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Who wrote it.
    pub generator: Generator,
    /// The largest subset the directory holds completely (`None` while a build is
    /// incomplete).
    pub subset: Option<Subset>,
    /// The architectures, with their sizes.
    pub architectures: Vec<ArchitectureEntry>,
    /// Every model, parents first.
    pub models: Vec<Model>,
}

/// The generator that wrote a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Always `weightkin-zoo`.
    pub name: String,
    /// [`GENERATOR_VERSION`].
    pub version: String,
}

/// Which models a zoo directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subset {
    /// The few models the test command uses.
    Small,
    /// Every model.
    Full,
}

impl Subset {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Subset::Small => "small",
            Subset::Full => "full",
        }
    }
}

/// One architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureEntry {
    /// Its name.
    pub name: Architecture,
    /// The model family whose tensor names it uses.
    pub family: String,
    /// Its sizes.
    pub config: serde_json::Value,
    /// Elements per model (all tensors).
    pub parameters: u64,
}

/// How a model was made from its parents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Transform {
    /// Trained from a fresh initialisation: an independent base.
    Train {
        /// Which base (the initialisation and data streams derive from the model's name).
        seed: u64,
        /// Training data set.
        data: String,
        /// Optimizer steps.
        steps: usize,
        /// Peak learning rate.
        lr: f64,
        /// Batch size.
        batch: usize,
    },
    /// Fine-tuned on another data set.
    FineTune {
        /// How much it moved: light, medium, strong.
        strength: Strength,
        /// Fine-tuning data set.
        data: String,
        /// Optimizer steps.
        steps: usize,
        /// Peak learning rate.
        lr: f64,
        /// Batch size.
        batch: usize,
    },
    /// Trained further on fresh samples of the parent's own data.
    ContinueTraining {
        /// Data set.
        data: String,
        /// Optimizer steps.
        steps: usize,
        /// Peak learning rate.
        lr: f64,
        /// Batch size.
        batch: usize,
    },
    /// Stored in another dtype (round to nearest even).
    Cast {
        /// The new dtype.
        dtype: Dtype,
    },
    /// Kept some layers of `model.layers`, renumbered from 0.
    LayerSubset {
        /// The parent's layer indices kept, in order.
        keep: Vec<usize>,
    },
    /// Element-wise weighted average of the parents (in `parents` order).
    Merge {
        /// One weight per parent.
        weights: Vec<f64>,
    },
}

impl Transform {
    /// A short label for tables: the kind, plus strength or dtype where it has one.
    pub fn label(&self) -> String {
        match self {
            Transform::Train { .. } => "train".into(),
            Transform::FineTune { strength, .. } => format!("fine-tune {}", strength.name()),
            Transform::ContinueTraining { .. } => "continue-training".into(),
            Transform::Cast { dtype } => format!("cast {dtype:?}").to_lowercase(),
            Transform::LayerSubset { .. } => "layer-subset".into(),
            Transform::Merge { .. } => "merge".into(),
        }
    }
}

/// Fine-tuning strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strength {
    /// 1/16 of the base's steps at 1/10 of its learning rate.
    Light,
    /// 1/4 of the base's steps at 1/3 of its learning rate.
    Medium,
    /// As many steps as the base, at its learning rate.
    Strong,
}

impl Strength {
    /// Every strength, weakest first.
    pub const ALL: [Strength; 3] = [Strength::Light, Strength::Medium, Strength::Strong];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Strength::Light => "light",
            Strength::Medium => "medium",
            Strength::Strong => "strong",
        }
    }
}

/// Training losses of a trained model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// Mean over the first 10 % of steps.
    pub start: f64,
    /// Mean over the last 10 % of steps.
    pub end: f64,
}

/// One model of the zoo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Unique name, `<architecture>/<…>`.
    pub name: String,
    /// File, relative to the manifest.
    pub path: String,
    /// Its architecture.
    pub architecture: Architecture,
    /// What it was made from.
    pub parents: Vec<String>,
    /// The independent bases it descends from.
    pub roots: Vec<String>,
    /// How it was made.
    pub transform: Transform,
    /// How its float tensors are stored.
    pub dtype: Dtype,
    /// Subsets containing it.
    pub subsets: Vec<Subset>,
    /// Tensors in the file.
    pub tensors: usize,
    /// Elements in the file.
    pub parameters: u64,
    /// File size.
    pub bytes: u64,
    /// BLAKE3 of the file, hex.
    pub blake3: String,
    /// Training losses (trained models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
}

impl Model {
    /// Whether `self` and `other` share ancestry (their roots intersect): the truth a
    /// `derived` verdict should find.
    pub fn related(&self, other: &Model) -> bool {
        let mine: BTreeSet<&String> = self.roots.iter().collect();
        other.roots.iter().any(|r| mine.contains(r))
    }
}

impl Manifest {
    /// Reads `dir/manifest.json`; `None` if there is none. A manifest of another generator
    /// version is an error (the cache path is keyed by version, so it means a wrong DIR).
    pub fn read(dir: &Path) -> Result<Option<Manifest>, Error> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|source| Error::Manifest {
            path: path.clone(),
            source,
        })?;
        if m.generator.version != GENERATOR_VERSION {
            return Err(Error::ManifestVersion {
                path,
                found: m.generator.version,
                expected: GENERATOR_VERSION,
            });
        }
        Ok(Some(m))
    }

    /// Writes `dir/manifest.json` atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|source| Error::Manifest {
            path: path.clone(),
            source,
        })?;
        text.push('\n');
        crate::build::write_atomic(&path, text.as_bytes())
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
}
