//! Plan: which tensor of B is compared with which of A, and why anything is not compared.
//!
//! Names are normalised by the recipe's rename rules (applied in order, `replace_all`), then
//! filtered by the compare's include/exclude globs, then matched by equal name. A matched pair
//! is compared only if shapes agree and both dtypes are floating point; every other tensor is
//! returned in [`Pairing::unpaired`] with its [`Reason`], so nothing is dropped silently.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use weightkin_core::{TensorInfo, WeightSource};

use crate::recipe::{CompareSpec, Found, RenameRule};
pub use crate::report::{Kind, PairedBy, Reason, Unpaired};
use crate::Error;

/// A model as the plan sees it: its tensors under their renamed names.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    /// The weights.
    pub source: &'a dyn WeightSource,
    /// Renamed tensor name → tensor index.
    pub names: &'a BTreeMap<String, usize>,
}

/// A tensor pair that will be compared.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Normalised (renamed) name, shared by both sides.
    pub name: String,
    /// Index of the tensor in model A.
    pub a: usize,
    /// Index of the tensor in model B.
    pub b: usize,
    /// Layer index, if the name has one.
    pub layer: Option<u32>,
    /// Class: the name with its layer index replaced by `*`.
    pub class: String,
    /// How the pair was found, when not by equal names.
    pub paired_by: Option<PairedBy>,
}

/// The outcome of pairing two models for one comparison.
#[derive(Debug, Default)]
pub struct Pairing {
    /// Pairs to compare, sorted by name.
    pub pairs: Vec<Pair>,
    /// Everything else, sorted by name then reason.
    pub unpaired: Vec<Unpaired>,
}

/// Applies rename rules to every tensor of a model: renamed name → tensor index.
pub fn renamed(
    model: &str,
    source: &dyn WeightSource,
    rules: &[RenameRule],
) -> Result<BTreeMap<String, usize>, Error> {
    let names = source
        .tensors()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i));
    Ok(renamed_names(model, names, rules)?.0)
}

/// Renamed name → tensor index, and renamed name → how a search found it (when a rule says).
pub type Renamed = (BTreeMap<String, usize>, BTreeMap<String, Found>);

/// Applies rename rules to `names` (name → tensor index): renamed name → tensor index, and
/// for each renamed name the [`Found`] of the last rule that renamed it and carries one.
/// Two names becoming one is [`Error::RenameCollision`].
pub fn renamed_names<'n>(
    model: &str,
    names: impl IntoIterator<Item = (&'n str, usize)>,
    rules: &[RenameRule],
) -> Result<Renamed, Error> {
    let mut out = BTreeMap::new();
    let mut found = BTreeMap::new();
    let mut original: BTreeMap<String, &str> = BTreeMap::new();
    for (stored, i) in names {
        let mut name = stored.to_owned();
        let mut by = None;
        for r in rules {
            let next = r.from.replace_all(&name, r.to.as_str()).into_owned();
            if next != name {
                by = r.found.clone().or(by);
            }
            name = next;
        }
        if let Some(first) = original.insert(name.clone(), stored) {
            return Err(Error::RenameCollision {
                model: model.to_owned(),
                renamed: name,
                first: first.to_owned(),
                second: stored.to_owned(),
            });
        }
        if let Some(by) = by {
            found.insert(name.clone(), by);
        }
        out.insert(name, i);
    }
    Ok((out, found))
}

fn shape_dtype(t: &TensorInfo) -> String {
    format!("{:?} {}", t.shape, t.dtype)
}

/// Pairs the renamed tensors of A and B for `spec`. `target` maps a B name to the A name it
/// pairs with when that differs (layer alignment); `None` pairs equal names.
pub fn pair(
    spec: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    target: &dyn Fn(&str) -> Option<String>,
) -> Pairing {
    let mut out = Pairing::default();
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    let (names_a, names_b) = (a.names, b.names);
    let mut push = |name: &str, reason, detail: String| {
        out.unpaired.push(Unpaired {
            name: name.to_owned(),
            reason,
            detail,
        })
    };
    let mut paired_a = BTreeSet::new();
    for (name, &ib) in names_b {
        let u = &tb[ib];
        let name_a = target(name).unwrap_or_else(|| name.clone());
        if !spec.selects(name) {
            // An excluded name both models have is reported once, from A's side below.
            if !names_a.contains_key(name) {
                push(name, Reason::Excluded, format!("B: {}", shape_dtype(u)));
            }
            continue;
        }
        let Some(&ia) = names_a.get(&name_a) else {
            push(name, Reason::OnlyInB, shape_dtype(u));
            continue;
        };
        paired_a.insert(name_a.clone());
        let t = &ta[ia];
        let detail = || {
            let a_name = if name_a == *name {
                String::new()
            } else {
                format!(" ({name_a})")
            };
            format!("A{a_name}: {} · B: {}", shape_dtype(t), shape_dtype(u))
        };
        if squeezed(&t.shape) != squeezed(&u.shape) {
            push(name, Reason::ShapeMismatch, detail());
        } else if !t.dtype.is_float() || !u.dtype.is_float() {
            push(name, Reason::NonFloatDtype, detail());
        } else {
            let (layer, class) = layer_and_class(name);
            out.pairs.push(Pair {
                name: name.clone(),
                a: ia,
                b: ib,
                layer,
                class,
                paired_by: None,
            });
        }
    }
    for (name, &ia) in names_a {
        if paired_a.contains(name) {
            continue;
        }
        let t = &ta[ia];
        if !spec.selects(name) {
            let detail = match names_b.get(name) {
                Some(&ib) if !spec.selects(name) => {
                    format!("A: {} · B: {}", shape_dtype(t), shape_dtype(&tb[ib]))
                }
                _ => format!("A: {}", shape_dtype(t)),
            };
            push(name, Reason::Excluded, detail);
        } else {
            push(name, Reason::OnlyInA, shape_dtype(t));
        }
    }
    out.unpaired
        .sort_by(|x, y| (&x.name, x.reason).cmp(&(&y.name, y.reason)));
    out
}

/// A shape without its dimensions of size one: two tensors whose squeezed shapes agree hold
/// their elements in the same row-major order (`[1, 128]` and `[1, 128, 1]`), so they compare
/// element by element.
pub fn squeezed(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// Words that introduce a layer index in common checkpoint layouts: HF (`layers.N`,
/// `layer.N`), timm/CLIP/Qwen-VL (`blocks.N`), GGUF (`blk.N`), GPT-2 (`h.N`).
const LAYER_WORDS: &str = "layers|layer|blocks|blk|h";

fn layer_regex() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    // A constant pattern, compiled by every test that touches pairing: it cannot fail at
    // run time, whatever the input.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| {
        Regex::new(&format!(r"(?:^|\.)(?:{LAYER_WORDS})\.(\d+)(?:\.|$)"))
            .expect("constant layer regex compiles")
    })
}

/// The layer index in a tensor name (first `layers.N`-style segment) and the tensor's class:
/// the name with that index replaced by `*`. Names without a layer index are their own class.
pub fn layer_and_class(name: &str) -> (Option<u32>, String) {
    let Some(caps) = layer_regex().captures(name) else {
        return (None, name.to_owned());
    };
    let Some(digits) = caps.get(1) else {
        return (None, name.to_owned());
    };
    match digits.as_str().parse::<u32>() {
        Ok(layer) => {
            let mut class = String::with_capacity(name.len());
            class.push_str(&name[..digits.start()]);
            class.push('*');
            class.push_str(&name[digits.end()..]);
            (Some(layer), class)
        }
        Err(_) => (None, name.to_owned()),
    }
}

/// One class's tensors in one model by layer: layer → (name, tensor index).
pub type LayerTensors = BTreeMap<u32, (String, usize)>;

/// Tensors of one model by class, then by layer.
pub type Layered = BTreeMap<String, LayerTensors>;

/// Groups a model's (renamed, selected) tensors by class and layer.
pub fn layered<'a>(names: impl IntoIterator<Item = (&'a String, &'a usize)>) -> Layered {
    let mut out: Layered = BTreeMap::new();
    for (name, &index) in names {
        if let (Some(layer), class) = layer_and_class(name) {
            out.entry(class)
                .or_default()
                .insert(layer, (name.clone(), index));
        }
    }
    out
}

/// The layer stack a class belongs to: the part of the class before `.*` (`model.layers`).
pub fn stack_of(class: &str) -> &str {
    class.split_once(".*").map_or(class, |(stack, _)| stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_classes() {
        for (name, layer, class) in [
            (
                "model.layers.12.mlp.up_proj.weight",
                Some(12),
                "model.layers.*.mlp.up_proj.weight",
            ),
            (
                "encoder.layer.0.attention.self.query.weight",
                Some(0),
                "encoder.layer.*.attention.self.query.weight",
            ),
            (
                "visual.blocks.3.attn.qkv.bias",
                Some(3),
                "visual.blocks.*.attn.qkv.bias",
            ),
            ("blk.7.attn_q.weight", Some(7), "blk.*.attn_q.weight"),
            (
                "transformer.h.11.ln_1.weight",
                Some(11),
                "transformer.h.*.ln_1.weight",
            ),
            (
                "model.embed_tokens.weight",
                None,
                "model.embed_tokens.weight",
            ),
            (
                "layers.99999999999999999999.w",
                None,
                "layers.99999999999999999999.w",
            ),
            ("player.3.weight", None, "player.3.weight"),
        ] {
            assert_eq!(layer_and_class(name), (layer, class.to_owned()), "{name}");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            Kind::of("model.layers.0.input_layernorm.weight"),
            Kind::Norm
        );
        assert_eq!(
            Kind::of("encoder.layer.0.attention.output.LayerNorm.bias"),
            Kind::Norm
        );
        assert_eq!(Kind::of("transformer.h.0.ln_1.weight"), Kind::Norm);
        assert_eq!(
            Kind::of("embeddings.word_embeddings.weight"),
            Kind::Embedding
        );
        assert_eq!(
            Kind::of("model.layers.0.self_attn.q_proj.weight"),
            Kind::Attention
        );
        assert_eq!(Kind::of("model.layers.0.mlp.up_proj.weight"), Kind::Mlp);
        assert_eq!(
            Kind::of("encoder.layer.0.intermediate.dense.weight"),
            Kind::Mlp
        );
        assert_eq!(Kind::of("lm_head.weight"), Kind::Head);
        assert_eq!(Kind::of("pooler.dense.weight"), Kind::Other);
    }

    #[test]
    fn stacks() {
        assert_eq!(
            stack_of("model.layers.*.mlp.up_proj.weight"),
            "model.layers"
        );
        assert_eq!(stack_of("visual.blocks.*.attn.qkv.weight"), "visual.blocks");
    }
}
