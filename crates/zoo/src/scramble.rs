//! Function-preserving scrambles, to validate alignment (`permutation = "auto"`) on trained
//! models whose true permutation is known.
//!
//! A Llama decoder layer computes the same function under two kinds of relabelling, applied
//! here in every layer independently:
//!
//! - **KV groups.** With grouped-query attention, key/value head `g` serves the
//!   `heads / kv_heads` query heads `g·r … g·r + r − 1` (`r = heads / kv_heads`). One
//!   permutation π of the `kv_heads` groups moves the rows of `k_proj` and `v_proj` in
//!   blocks of `head_dim`, the rows of `q_proj` in blocks of `r · head_dim`, and the columns
//!   of `o_proj` in blocks of `r · head_dim`, all by the same π, so every query head stays
//!   with its key/value head. Dimensions inside a head are never moved: RoPE rotates them in
//!   pairs `(j, j + head_dim/2)`, so only whole heads may be relabelled.
//! - **MLP units.** One permutation of the `intermediate` units moves the rows of
//!   `gate_proj` and `up_proj` and the columns of `down_proj`.
//!
//! - **The residual stream.** One signed permutation (ρ, s) of the `hidden` dimensions for the
//!   whole model: column `i` of the embedding, of `lm_head` and of every input projection
//!   (`q`, `k`, `v`, `gate`, `up`) becomes `s_i ·` old column `ρ(i)`; row `i` of every output
//!   projection (`o`, `down`) becomes `s_i ·` old row `ρ(i)`; every RMSNorm gain moves to
//!   `ρ` without its sign. RMSNorm divides by a norm the signs do not change and multiplies
//!   element-wise, so the sign passes through it to the next projection's column.
//!
//! The new block (or unit) `i` is the old block `π(i)`. Permutations are drawn from a
//! [`Stream`] seeded by the model's name, the layer and the purpose, uniformly among the
//! permutations that move something (a scramble that happened to be the identity would test
//! nothing): with two KV groups, the groups are always swapped. The ResNet and MLP
//! architectures are not scrambled ([`scramble`] returns `None`).

use crate::arch::llama::Config;
use crate::arch::Architecture;
use crate::rng::Stream;
use crate::weights::{Tensor, Weights};
use crate::Error;

/// A uniformly random permutation of `0..n` other than the identity (the identity when
/// `n < 2`), drawn from `s`.
pub fn permutation(n: usize, s: &mut Stream) -> Vec<usize> {
    loop {
        let mut p: Vec<usize> = (0..n).collect();
        // Fisher-Yates.
        for i in (1..n).rev() {
            p.swap(i, s.below(i + 1));
        }
        if n < 2 || p.iter().enumerate().any(|(i, &x)| i != x) {
            return p;
        }
    }
}

/// The permutations [`scramble`] applies to layer `layer` of `model`: of the KV groups
/// (`kv_heads` of them) and of the MLP units (`intermediate`).
pub fn permutations(model: &str, layer: usize, config: &Config) -> (Vec<usize>, Vec<usize>) {
    let l = layer.to_string();
    let groups = permutation(
        config.kv_heads,
        &mut Stream::new(&[model, "scramble", &l, "kv groups"]),
    );
    let units = permutation(
        config.intermediate,
        &mut Stream::new(&[model, "scramble", &l, "mlp units"]),
    );
    (groups, units)
}

/// How many elements `p` moves (not at their own index).
pub fn moved(p: &[usize]) -> usize {
    p.iter().enumerate().filter(|(i, x)| i != *x).count()
}

/// `w` with every Llama layer's KV groups and MLP units permuted (see the module docs), or
/// `None` for an architecture this module does not scramble. `model` (the manifest name)
/// seeds the permutations; `config` gives the head counts. Layers are found by their
/// `model.layers.N.` tensors, so a model with layers dropped is scrambled in the layers it
/// has. An error names the tensor whose shape is not the configuration's.
pub fn scramble(
    w: &Weights,
    arch: Architecture,
    model: &str,
    config: &Config,
) -> Result<Option<Weights>, Error> {
    if arch != Architecture::Llama {
        return Ok(None);
    }
    let mut out = w.clone();
    let layers: std::collections::BTreeSet<usize> = w
        .keys()
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let hd = config.hidden / config.heads.max(1);
    let group = (config.heads / config.kv_heads.max(1)) * hd;
    for l in layers {
        let p = format!("model.layers.{l}");
        let (pi, sigma) = permutations(model, l, config);
        // (tensor, axis, block, permutation): heads move with their KV group, units alone.
        let moves: [(&str, usize, usize, &[usize]); 7] = [
            ("self_attn.q_proj", 0, group, &pi),
            ("self_attn.k_proj", 0, hd, &pi),
            ("self_attn.v_proj", 0, hd, &pi),
            ("self_attn.o_proj", 1, group, &pi),
            ("mlp.gate_proj", 0, 1, &sigma),
            ("mlp.up_proj", 0, 1, &sigma),
            ("mlp.down_proj", 1, 1, &sigma),
        ];
        for (tensor, axis, block, perm) in moves {
            relabel(
                &mut out,
                model,
                &format!("{p}.{tensor}.weight"),
                axis,
                block,
                perm,
                None,
            )?;
        }
    }
    let (rho, signs) = residual_permutation(model, config);
    for (name, t) in w {
        let (sign, axis) = if name == "model.embed_tokens.weight"
            || name == "lm_head.weight"
            || ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
                .iter()
                .any(|r| name.ends_with(&format!(".{r}.weight")))
        {
            (true, 1)
        } else if ["o_proj", "down_proj"]
            .iter()
            .any(|r| name.ends_with(&format!(".{r}.weight")))
        {
            (true, 0)
        } else if name.ends_with("norm.weight") && t.shape == [config.hidden] {
            (false, 0)
        } else {
            continue;
        };
        relabel(
            &mut out,
            model,
            name,
            axis,
            1,
            &rho,
            sign.then_some(signs.as_slice()),
        )?;
    }
    Ok(Some(out))
}

/// The residual stream's signed permutation [`scramble`] applies to `model`: ρ (moving
/// something) and a sign per dimension.
pub fn residual_permutation(model: &str, config: &Config) -> (Vec<usize>, Vec<f32>) {
    let rho = permutation(
        config.hidden,
        &mut Stream::new(&[model, "scramble", "residual"]),
    );
    let mut s = Stream::new(&[model, "scramble", "residual signs"]);
    let signs = (0..config.hidden)
        .map(|_| if s.below(2) == 0 { -1.0 } else { 1.0 })
        .collect();
    (rho, signs)
}

/// Relabels blocks of `block` rows (`axis` 0; a vector's elements) or columns (`axis` 1) of
/// `name`: new block `i` is old block `pi[i]`, times `signs[i]` when given.
fn relabel(
    w: &mut Weights,
    model: &str,
    name: &str,
    axis: usize,
    block: usize,
    pi: &[usize],
    signs: Option<&[f32]>,
) -> Result<(), Error> {
    let bad = |what: String| Error::Scramble {
        model: model.to_owned(),
        tensor: name.to_owned(),
        reason: what,
    };
    let t = w
        .get(name)
        .ok_or_else(|| bad("the tensor is missing".into()))?;
    let (rows, cols) = match t.shape.as_slice() {
        [n] if axis == 0 => (*n, 1),
        [r, c] => (*r, *c),
        s => return Err(bad(format!("shape {s:?} is not a matrix"))),
    };
    let along = if axis == 0 { rows } else { cols };
    if along != block * pi.len() {
        return Err(bad(format!(
            "shape {:?}: axis {axis} is not {} blocks of {block}",
            t.shape,
            pi.len()
        )));
    }
    let v = t
        .floats()
        .ok_or_else(|| bad("the tensor is not floating-point".into()))?;
    let mut new = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            let at = if axis == 0 { r } else { c };
            let from = pi[at / block] * block + at % block;
            let (sr, sc) = if axis == 0 { (from, c) } else { (r, from) };
            let sign = signs.map_or(1.0, |s| s[at / block]);
            new[r * cols + c] = v[sr * cols + sc] * sign;
        }
    }
    let shape = t.shape.clone();
    w.insert(name.to_owned(), Tensor::f32(shape, new));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::arch::llama::{Job, CONFIG};
    use crate::data::TextDomain;

    /// A base model: the zoo's cached one when it is there, else fresh initial weights
    /// (function preservation does not depend on training).
    fn base() -> Weights {
        let cached = dirs_home().map(|h| h.join(".cache/weightkin/zoo/1/llama/base-0.safetensors"));
        match cached {
            Some(p) if p.exists() => crate::weights::read(&p).unwrap(),
            _ => CONFIG.init(&mut Stream::new(&["scramble test", "init"])),
        }
    }

    fn dirs_home() -> Option<std::path::PathBuf> {
        std::env::var_os("HOME").map(std::path::PathBuf::from)
    }

    #[test]
    fn permutations_move_something_and_are_permutations() {
        for n in [2usize, 3, 176] {
            for seed in 0..20 {
                let p = permutation(n, &mut Stream::new(&["perm", &seed.to_string()]));
                let mut sorted = p.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
                assert!(p.iter().enumerate().any(|(i, &x)| i != x));
            }
        }
        assert_eq!(permutation(1, &mut Stream::new(&["one"])), vec![0]);
    }

    #[test]
    fn scramble_preserves_the_llama_function() {
        let w = base();
        let s = scramble(&w, Architecture::Llama, "llama/base-0", &CONFIG)
            .unwrap()
            .unwrap();
        // Every tensor moved: heads, units and the residual stream touch them all.
        for (name, t) in &w {
            assert_eq!(s[name].shape, t.shape, "{name}");
            assert_ne!(s[name], *t, "{name} was not scrambled");
        }
        let job = Job::new(CONFIG, TextDomain::Story).unwrap();
        let tokens: Vec<u32> = (0..CONFIG.context as u32)
            .map(|i| (i * 7 + 3) % CONFIG.vocab as u32)
            .collect();
        let a = job.logits(&w, &tokens).unwrap();
        let b = job.logits(&s, &tokens).unwrap();
        assert_eq!(a.len(), CONFIG.context * CONFIG.vocab);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "logits differ by {diff}");
        // The logits are not trivially equal (e.g. all zero).
        let spread = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
        assert!(spread > 1e-2, "logits are degenerate ({spread})");
    }

    #[test]
    fn a_wrong_scramble_changes_the_function() {
        // Moving q's heads without their KV heads is not function-preserving: the test's
        // forward pass can tell (so the test above could fail).
        let w = base();
        let mut s = w.clone();
        relabel(
            &mut s,
            "m",
            "model.layers.0.self_attn.q_proj.weight",
            0,
            16,
            &[1, 0, 2, 3],
            None,
        )
        .unwrap();
        let job = Job::new(CONFIG, TextDomain::Story).unwrap();
        let tokens: Vec<u32> = (0..CONFIG.context as u32).map(|i| i % 11).collect();
        let a = job.logits(&w, &tokens).unwrap();
        let b = job.logits(&s, &tokens).unwrap();
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff > 1e-3, "logits differ by only {diff}");
    }

    #[test]
    fn other_architectures_are_not_scrambled_and_bad_shapes_are_errors() {
        let w = base();
        assert!(scramble(&w, Architecture::Mlp, "m", &CONFIG)
            .unwrap()
            .is_none());
        let mut bad = w.clone();
        bad.insert(
            "model.layers.1.mlp.up_proj.weight".into(),
            Tensor::f32(vec![10, 64], vec![0.0; 640]),
        );
        let e = scramble(&bad, Architecture::Llama, "m", &CONFIG).unwrap_err();
        assert!(
            e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
            "{e}"
        );
    }
}
