//! Which models the zoo holds, and how each one is made.
//!
//! Per architecture, `bases` independent bases (each its own initialisation and its own data
//! stream, both derived from its name), and for each base the family whose truth the
//! manifest records:
//!
//! | model | made by |
//! |---|---|
//! | `base-K` | training from scratch on the base data |
//! | `base-K-ft-A-light/medium/strong` | fine-tuning on data set A at three strengths |
//! | `base-K-ft-B-medium` | fine-tuning on data set B |
//! | `base-K-continued` | half as many steps again on fresh base data, at 1/3 the rate |
//! | `base-K-f16`, `base-K-bf16` | casting |
//! | `base-K-layers-0-2` | keeping layers 0 and 2 (Llama and MLP) |
//! | `base-K-merge-A-B` | the average of the two medium fine-tunes |
//!
//! The small subset is a few of these (same names, same bytes as in the full zoo), chosen to
//! cover every architecture, an unrelated pair of each, and each kind of transform.

use crate::arch::{Architecture, Dataset};
use crate::manifest::{Strength, Subset, Transform};
use crate::nn::Schedule;
use crate::weights::Dtype;

/// How a model is made.
#[derive(Debug, Clone, PartialEq)]
pub enum Make {
    /// Trained from scratch (base number `seed`).
    Train {
        /// Base number.
        seed: u64,
    },
    /// Fine-tuned on `data` at `strength`.
    Tune {
        /// Data set.
        data: Dataset,
        /// Strength.
        strength: Strength,
    },
    /// Trained further on the base data.
    Continue,
    /// Cast to `dtype`.
    Cast(Dtype),
    /// Layers kept.
    Subset(Vec<usize>),
    /// Average of the parents.
    Merge,
}

impl Make {
    /// Build level: a model's parents all have a lower level (bases 0, models trained from
    /// them 1, casts and layer subsets 2, merges of trained models 3).
    pub fn level(&self) -> u8 {
        match self {
            Make::Train { .. } => 0,
            Make::Tune { .. } | Make::Continue => 1,
            Make::Cast(_) | Make::Subset(_) => 2,
            Make::Merge => 3,
        }
    }
}

/// One planned model.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Unique name (also the file stem).
    pub name: String,
    /// Architecture.
    pub architecture: Architecture,
    /// Parents' names.
    pub parents: Vec<String>,
    /// Independent bases it descends from.
    pub roots: Vec<String>,
    /// How it is made.
    pub make: Make,
    /// Whether the small subset holds it.
    pub small: bool,
}

impl Spec {
    /// The training schedule, for trained models.
    pub fn schedule(&self) -> Option<Schedule> {
        let base = self.architecture.base_schedule();
        match &self.make {
            Make::Train { .. } => Some(base),
            Make::Tune { strength, .. } => Some(match strength {
                Strength::Light => Schedule {
                    steps: base.steps / 16,
                    lr: base.lr / 10.0,
                    batch: base.batch,
                },
                Strength::Medium => Schedule {
                    steps: base.steps / 4,
                    lr: base.lr / 3.0,
                    batch: base.batch,
                },
                Strength::Strong => base,
            }),
            Make::Continue => Some(Schedule {
                steps: base.steps / 2,
                lr: base.lr / 3.0,
                batch: base.batch,
            }),
            Make::Cast(_) | Make::Subset(_) | Make::Merge => None,
        }
    }

    /// The data set it trains on, for trained models.
    pub fn dataset(&self) -> Option<Dataset> {
        match &self.make {
            Make::Train { .. } | Make::Continue => Some(Dataset::Base),
            Make::Tune { data, .. } => Some(*data),
            Make::Cast(_) | Make::Subset(_) | Make::Merge => None,
        }
    }

    /// How its float tensors are stored.
    pub fn dtype(&self) -> Dtype {
        match &self.make {
            Make::Cast(d) => *d,
            _ => Dtype::F32,
        }
    }

    /// The file, relative to the zoo directory.
    pub fn path(&self) -> String {
        format!("{}.safetensors", self.name)
    }

    /// Its transform, as the manifest records it.
    pub fn transform(&self) -> Transform {
        let a = self.architecture;
        let sched = self.schedule();
        let data = self.dataset().map(|d| a.data_name(d)).unwrap_or_default();
        let (steps, lr, batch) = sched.map_or((0, 0.0, 0), |s| (s.steps, s.lr, s.batch));
        match &self.make {
            Make::Train { seed } => Transform::Train {
                seed: *seed,
                data,
                steps,
                lr,
                batch,
            },
            Make::Tune { strength, .. } => Transform::FineTune {
                strength: *strength,
                data,
                steps,
                lr,
                batch,
            },
            Make::Continue => Transform::ContinueTraining {
                data,
                steps,
                lr,
                batch,
            },
            Make::Cast(d) => Transform::Cast { dtype: *d },
            Make::Subset(keep) => Transform::LayerSubset { keep: keep.clone() },
            Make::Merge => Transform::Merge {
                weights: vec![1.0 / self.parents.len().max(1) as f64; self.parents.len()],
            },
        }
    }
}

/// Independent bases per architecture in the full zoo.
pub fn bases(a: Architecture) -> u64 {
    match a {
        Architecture::Llama => 8,
        Architecture::Resnet => 8,
        Architecture::Mlp => 16,
    }
}

/// Independent bases per architecture in the small subset.
fn small_bases(a: Architecture) -> u64 {
    match a {
        Architecture::Llama => 2,
        Architecture::Resnet => 2,
        Architecture::Mlp => 3,
    }
}

/// Every model of `subset`, parents before children.
pub fn plan(subset: Subset) -> Vec<Spec> {
    let all = full();
    match subset {
        Subset::Full => all,
        Subset::Small => all.into_iter().filter(|s| s.small).collect(),
    }
}

fn full() -> Vec<Spec> {
    let mut out = Vec::new();
    for a in Architecture::ALL {
        for k in 0..bases(a) {
            out.extend(family(a, k));
        }
    }
    // Parents first: bases, then models trained from them, then casts, subsets and merges.
    out.sort_by_key(|s| s.make.level());
    out
}

/// Whether the small subset holds a model: the first bases of each architecture, and of
/// base 0 its light fine-tune, casts and layer subset; for the MLP, whose training takes
/// seconds, every transform of base 0.
fn in_small(a: Architecture, k: u64, make: &Make) -> bool {
    let cheap = a == Architecture::Mlp;
    match make {
        Make::Train { .. } => k < small_bases(a),
        Make::Tune {
            strength: Strength::Light,
            ..
        }
        | Make::Cast(_)
        | Make::Subset(_) => k == 0,
        Make::Tune { .. } | Make::Continue | Make::Merge => k == 0 && cheap,
    }
}

fn family(a: Architecture, k: u64) -> Vec<Spec> {
    let base = format!("{}/base-{k}", a.name());
    let spec = |suffix: &str, parents: Vec<String>, make: Make| Spec {
        name: if suffix.is_empty() {
            base.clone()
        } else {
            format!("{base}-{suffix}")
        },
        architecture: a,
        parents,
        roots: vec![base.clone()],
        small: in_small(a, k, &make),
        make,
    };
    let data_a = a.data_name(Dataset::TuneA);
    let data_b = a.data_name(Dataset::TuneB);
    let tuned = |d: &str, s: Strength| format!("ft-{d}-{}", s.name());
    let mut v = vec![spec("", vec![], Make::Train { seed: k })];
    for s in Strength::ALL {
        v.push(spec(
            &tuned(&data_a, s),
            vec![base.clone()],
            Make::Tune {
                data: Dataset::TuneA,
                strength: s,
            },
        ));
    }
    v.push(spec(
        &tuned(&data_b, Strength::Medium),
        vec![base.clone()],
        Make::Tune {
            data: Dataset::TuneB,
            strength: Strength::Medium,
        },
    ));
    v.push(spec("continued", vec![base.clone()], Make::Continue));
    v.push(spec("f16", vec![base.clone()], Make::Cast(Dtype::F16)));
    v.push(spec("bf16", vec![base.clone()], Make::Cast(Dtype::BF16)));
    if let Some(layers) = a.layers() {
        let keep: Vec<usize> = (0..layers).step_by(2).collect();
        let label = keep
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-");
        v.push(spec(
            &format!("layers-{label}"),
            vec![base.clone()],
            Make::Subset(keep),
        ));
    }
    v.push(spec(
        &format!("merge-{data_a}-{data_b}"),
        vec![
            format!("{base}-{}", tuned(&data_a, Strength::Medium)),
            format!("{base}-{}", tuned(&data_b, Strength::Medium)),
        ],
        Make::Merge,
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_names_are_unique() {
        for subset in [Subset::Small, Subset::Full] {
            let p = plan(subset);
            let mut seen = std::collections::BTreeSet::new();
            for s in &p {
                for parent in &s.parents {
                    assert!(seen.contains(parent), "{} before {parent}", s.name);
                }
                assert!(seen.insert(s.name.clone()), "{} twice", s.name);
            }
        }
    }

    #[test]
    fn small_subset_is_closed_under_parents() {
        let small: Vec<String> = plan(Subset::Small).into_iter().map(|s| s.name).collect();
        for s in plan(Subset::Small) {
            for p in &s.parents {
                assert!(small.contains(p), "{} needs {p}", s.name);
            }
        }
    }

    #[test]
    fn small_is_a_subset_of_full() {
        let full: Vec<String> = plan(Subset::Full).into_iter().map(|s| s.name).collect();
        for s in plan(Subset::Small) {
            assert!(full.contains(&s.name));
        }
    }
}
