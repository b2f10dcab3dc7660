//! The zoo's three architectures, their data and their training schedules.
//!
//! Each architecture has a base data set (what independent bases are trained on, and what
//! continued training reads more of) and two other data sets for fine-tuning ([`Dataset`]).
//! Schedules are sized so that the whole zoo trains in minutes on two cores, yet every base
//! is trained far from its initialisation: losses in the manifest show how far.

pub mod llama;
pub mod mlp;
pub mod resnet;

use serde::{Deserialize, Serialize};

use crate::data::{ImageDomain, MixtureDomain, TextDomain};
use crate::nn::{Schedule, Trainable};
use crate::rng::Stream;
use crate::weights::Weights;
use crate::Error;

/// A model architecture of the zoo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Llama-family character-level language model ([`llama`]).
    Llama,
    /// ResNet image classifier with BatchNorm ([`resnet`]).
    Resnet,
    /// Residual MLP classifier on a tabular task ([`mlp`]).
    Mlp,
}

/// Which of an architecture's data sets a training run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// The bases' data.
    Base,
    /// The first fine-tuning data set.
    TuneA,
    /// The second fine-tuning data set.
    TuneB,
}

impl Architecture {
    /// Every architecture, in manifest order.
    pub const ALL: [Architecture; 3] =
        [Architecture::Llama, Architecture::Resnet, Architecture::Mlp];

    /// Its name (manifest, model-name prefix).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Resnet => "resnet",
            Architecture::Mlp => "mlp",
        }
    }

    /// The model family whose tensor names it uses.
    pub fn family(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Resnet => "ResNetForImageClassification",
            Architecture::Mlp => "residual MLP (PyTorch nn.Linear/nn.LayerNorm names)",
        }
    }

    /// Its sizes, as JSON (for the manifest).
    pub fn config(self) -> serde_json::Value {
        let v = match self {
            Architecture::Llama => serde_json::to_value(llama::CONFIG),
            Architecture::Resnet => serde_json::to_value(resnet::CONFIG),
            Architecture::Mlp => serde_json::to_value(mlp::CONFIG),
        };
        v.unwrap_or(serde_json::Value::Null)
    }

    /// The schedule that trains a base from scratch.
    pub fn base_schedule(self) -> Schedule {
        match self {
            Architecture::Llama => Schedule {
                steps: 240,
                lr: 3e-3,
                batch: 16,
            },
            Architecture::Resnet => Schedule {
                steps: 160,
                lr: 3e-3,
                batch: 32,
            },
            Architecture::Mlp => Schedule {
                steps: 400,
                lr: 2e-3,
                batch: 64,
            },
        }
    }

    /// Fresh weights for a base.
    pub fn init(self, s: &mut Stream) -> Weights {
        match self {
            Architecture::Llama => llama::CONFIG.init(s),
            Architecture::Resnet => resnet::CONFIG.init(s),
            Architecture::Mlp => mlp::CONFIG.init(s),
        }
    }

    /// The name of a data set (manifest).
    pub fn data_name(self, d: Dataset) -> String {
        match self {
            Architecture::Llama => text_domain(d).name().to_owned(),
            Architecture::Resnet => image_domain(d).name().to_owned(),
            Architecture::Mlp => mixture_domain(d).name(),
        }
    }

    /// A training job on data set `d`.
    pub fn job(self, d: Dataset) -> Result<Box<dyn Trainable>, Error> {
        Ok(match self {
            Architecture::Llama => Box::new(llama::Job::new(llama::CONFIG, text_domain(d))?),
            Architecture::Resnet => Box::new(resnet::Job {
                config: resnet::CONFIG,
                domain: image_domain(d),
            }),
            Architecture::Mlp => Box::new(mlp::Job::new(mlp::CONFIG, mixture_domain(d))),
        })
    }

    /// Its layer stack's length, when layer subsets are meaningful (`model.layers.N`, every
    /// layer the same shape); `None` for the ResNet, whose blocks change width.
    pub fn layers(self) -> Option<usize> {
        match self {
            Architecture::Llama => Some(llama::CONFIG.layers),
            Architecture::Mlp => Some(mlp::CONFIG.layers),
            Architecture::Resnet => None,
        }
    }
}

fn text_domain(d: Dataset) -> TextDomain {
    match d {
        Dataset::Base => TextDomain::Story,
        Dataset::TuneA => TextDomain::Recipe,
        Dataset::TuneB => TextDomain::Arithmetic,
    }
}

fn image_domain(d: Dataset) -> ImageDomain {
    match d {
        Dataset::Base => ImageDomain::Digits,
        Dataset::TuneA => ImageDomain::Letters,
        Dataset::TuneB => ImageDomain::Flipped,
    }
}

fn mixture_domain(d: Dataset) -> MixtureDomain {
    MixtureDomain {
        task: match d {
            Dataset::Base => 0,
            Dataset::TuneA => 1,
            Dataset::TuneB => 2,
        },
    }
}

/// The model that keeps layers `keep` of `w`'s `model.layers` stack, renumbered 0, 1, …;
/// every tensor outside the stack is kept as it is.
pub fn layer_subset(w: &Weights, keep: &[usize]) -> Weights {
    let mut out = Weights::new();
    for (name, t) in w {
        match layer_of(name) {
            Some((layer, rest)) => {
                if let Some(new) = keep.iter().position(|k| *k == layer) {
                    out.insert(format!("model.layers.{new}.{rest}"), t.clone());
                }
            }
            None => {
                out.insert(name.clone(), t.clone());
            }
        }
    }
    out
}

/// `model.layers.N.rest` → (N, rest).
fn layer_of(name: &str) -> Option<(usize, &str)> {
    let tail = name.strip_prefix("model.layers.")?;
    let (n, rest) = tail.split_once('.')?;
    Some((n.parse().ok()?, rest))
}
