//! Sketch: a model condensed in one pass into what is needed to *estimate* the audit's own
//! statistic between two models without reading either again (issue 21, `weightkin sketch`).
//!
//! # What a sketch is
//!
//! For every float tensor of a model — seen through the same views the audit pairs (fused
//! `qkv` / `gate_up` split into their parts, [`crate::correspond::present`]) — a sketch keeps:
//!
//! * its **canonical key**: the tensor's name in the one vocabulary automatic pairing uses
//!   ([`crate::correspond::names::normalise_all`]: HF, GGUF, TorchScript and Megatron names all
//!   read as `text.layers.3.attn.q.weight`), its class (the layer index replaced by `*`), layer,
//!   component ([`crate::judge::Components::builtin`]) and shape;
//! * its **role**, decided by the audit's own checks on one model ([`crate::judge::single_role`]):
//!   evidence, init-prior (norm weights near a constant), or not evidence (known computed
//!   buffers, generated tables, structured tensors, constants);
//! * the exact mean and standard deviation of all its elements;
//! * its values at `k` **seeded pseudo-random coordinates** ([`coordinates`]), stored as IEEE
//!   binary16 after division by one f32 scale per tensor (the largest |value| sampled).
//!
//! The coordinates depend only on (the class of the canonical key, the shape, the seed): two
//! models of one architecture — whatever naming convention they were saved under, whichever
//! layers they kept — sample the same elements of corresponding tensors, and every layer of a
//! class samples the same elements, so a layer-subset model can be matched layer against layer.
//!
//! # What two sketches estimate
//!
//! The coordinates are a simple random sample without replacement of the tensor's elements, so
//! the Pearson of two sketches' values is the Pearson of the tensors over that sample: a
//! consistent estimator of the whole tensors' Pearson (the audit's statistic) whose bias is
//! O(1/k), and whose spread is known: for unrelated tensors, Fisher's z = atanh(r)·√(k − 3) is
//! ≈ N(0, 1) (exactly for bivariate normal values); for related ones the s.d. of r is ≈ (1 −
//! ρ²)/√k. Tensors with at most `k` elements are kept whole (the sketch's Pearson is then the
//! audit's, up to f16 rounding). Binary16 after scaling has a relative error of at most 2⁻¹¹,
//! which moves a Pearson by ~10⁻⁷ — far below the sampling s.d. 1/√k ≈ 0.03 at k = 1024 —
//! and halves the size against f32; f16 without the scale would flush weights below 6·10⁻⁵
//! to subnormals, hence the scale.
//!
//! # Size
//!
//! A Llama-7B-shaped checkpoint has 291 float tensors (q, k, v, o, gate, up, down and two
//! norms in 32 layers, embeddings, head, final norm): at the default k = 1024 that is
//! 291 × 2 KiB ≈ 0.6 MB of values plus names and statistics, under the 1 MB target.
//!
//! # What it is robust to, and what not
//!
//! * Robust: dtype casts and quantisation (the values at a coordinate move by the rounding
//!   error only), fine-tuning (Pearson falls as the audit's does), renamed conventions and
//!   fused projections (canonical keys), layer subsets (same coordinates in every layer).
//! * Not robust: a permuted or rotated residual stream, permuted heads or MLP units (the
//!   coordinates land on other elements; the audit's `permutation = "auto"` alignment has no
//!   sketch counterpart yet), width pruning or resized vocabularies (another shape is another
//!   key: the tensor is left out of the comparison), names no convention rule knows that
//!   differ between two exports (another key).
//!
//! # Cost
//!
//! One streaming pass per tensor ([`weightkin_core::CHUNK`]-sized reads, in parallel) gives
//! the exact moments and picks the sampled values; the model's files are hashed (BLAKE3)
//! first, through the hash cache when the caller gives one, which also brings the bytes into
//! the page cache the pass then reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use half::f16;
use rayon::prelude::*;
use serde::Serialize;
use weightkin_core::rng::Rng;
use weightkin_core::{
    FileHasher, MappedFile, NoFetchProgress, Registry, Side, WeightSource, CHUNK,
};
use weightkin_hub::{HfRef, Hub, HubEnv, HubOptions, Origin};

use crate::correspond::{self, names};
use crate::judge::{self, Exclusion, Role};
use crate::plan::layer_and_class;
use crate::{Error, RunOptions};

/// Version of the sketch's content: what is sampled, where, and how it is stored. A change
/// to [`coordinates`], the roles, or the value encoding bumps it; sketches of two versions are
/// never compared.
pub const SKETCH_VERSION: u32 = 1;

/// Default number of sampled values per tensor: 291 tensors of a 7B Llama at 2 bytes each is
/// ≈ 0.6 MB (module doc), and the unrelated null's s.d. of one tensor's Pearson is 1/√k ≈ 0.031.
pub const DEFAULT_SAMPLES: usize = 1024;

/// Most samples per tensor accepted (a sketch is meant to be small; 64 Ki values of every
/// tensor of a 7B model would be 38 MB).
pub const MAX_SAMPLES: usize = 1 << 16;

/// Default seed of the coordinates ("WEIGHTKN"). Sketches compare only when their seeds and
/// sample counts agree.
pub const DEFAULT_SEED: u64 = 0x5745_4947_4854_4b4e;

/// How a sketch is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SketchOptions {
    /// Values sampled per tensor (`k`); tensors with fewer elements are kept whole.
    pub samples: usize,
    /// Seed of the coordinates.
    pub seed: u64,
}

impl Default for SketchOptions {
    fn default() -> Self {
        SketchOptions {
            samples: DEFAULT_SAMPLES,
            seed: DEFAULT_SEED,
        }
    }
}

/// A tensor's role in a sketch: the audit's [`Role`] without the details a sketch does not
/// keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SketchRole {
    /// Evidence: judged by Pearson.
    Evidence,
    /// Near a constant (norm weights): Pearson only, never raw cosine.
    InitPrior,
    /// A known computed buffer, by name.
    DeterministicBuffer,
    /// A table a known formula reproduces.
    Generated,
    /// Takes few distinct values (a mask or an index table).
    Structured,
    /// Constant or zero.
    Constant,
}

impl SketchRole {
    /// Every role, in order.
    pub const ALL: [SketchRole; 6] = [
        SketchRole::Evidence,
        SketchRole::InitPrior,
        SketchRole::DeterministicBuffer,
        SketchRole::Generated,
        SketchRole::Structured,
        SketchRole::Constant,
    ];

    /// The role's name as stored (`evidence`, `init-prior`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SketchRole::Evidence => "evidence",
            SketchRole::InitPrior => "init-prior",
            SketchRole::DeterministicBuffer => "deterministic-buffer",
            SketchRole::Generated => "generated",
            SketchRole::Structured => "structured",
            SketchRole::Constant => "constant",
        }
    }

    /// The role named `s` ([`Self::as_str`]).
    pub fn parse(s: &str) -> Option<SketchRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the tensor is evidence (plain or init-prior) for the lineage search.
    pub fn is_evidence(self) -> bool {
        matches!(self, SketchRole::Evidence | SketchRole::InitPrior)
    }

    fn of(role: &Role) -> SketchRole {
        match role {
            Role::Evidence => SketchRole::Evidence,
            Role::InitPrior => SketchRole::InitPrior,
            Role::NotEvidence(e) => match e {
                Exclusion::Generated { .. } => SketchRole::Generated,
                Exclusion::StructuredIdentical => SketchRole::Structured,
                Exclusion::Constant | Exclusion::NonFloatBuffer | Exclusion::Declared => {
                    SketchRole::Constant
                }
                Exclusion::DeterministicBuffer => SketchRole::DeterministicBuffer,
            },
        }
    }
}

/// One model file as the sketch records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SketchFile {
    /// Path relative to the model's path (its file name for a single file).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole file, 64 hex digits.
    pub blake3: String,
}

/// One tensor's sketch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSketch {
    /// Name as presented (a fused tensor's part is `name#q`).
    pub name: String,
    /// Canonical name ([`names::normalise_all`]).
    pub canonical: String,
    /// The canonical name with its layer index replaced by `*`: the coordinates' key.
    pub class: String,
    /// Layer index, if the tensor is in a layer stack.
    pub layer: Option<u32>,
    /// Component ([`judge::Components::builtin`]).
    pub component: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Stored dtype.
    pub dtype: String,
    /// Role.
    pub role: SketchRole,
    /// Elements.
    pub numel: u64,
    /// Mean of all elements.
    pub mean: f64,
    /// Standard deviation of all elements (population).
    pub sd: f64,
    /// What the stored values were divided by (the largest |value| sampled; 1 when all are
    /// zero).
    pub scale: f32,
    /// Values at the coordinates ([`coordinates`] order), divided by `scale`, as binary16 bits.
    pub values: Vec<u16>,
}

impl TensorSketch {
    /// The sampled values as f32 (scale applied back).
    pub fn values_f32(&self) -> Vec<f32> {
        self.values
            .iter()
            .map(|&b| f16::from_bits(b).to_f32() * self.scale)
            .collect()
    }
}

/// A model's sketch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sketch {
    /// [`SKETCH_VERSION`].
    pub version: u32,
    /// The model's name in the store (its path as given, unless the caller names it).
    pub model: String,
    /// Its path as given (what the lineage search's audits open).
    pub path: String,
    /// Format that opened it.
    pub format: String,
    /// Parameters (elements of all tensors, as stored).
    pub parameters: u64,
    /// The float dtype holding most of its parameters (`F32`, `BF16`, `Q4_K`, …): the
    /// lineage graph's precision cue.
    pub dtype: String,
    /// Bits per parameter of [`Self::dtype`].
    pub bits: f64,
    /// Architecture key: BLAKE3 (16 hex digits) of the sorted distinct (class, shape) of its
    /// matrices (rank ≥ 2 after squeezing; computed buffers and generated tables left out).
    /// Layer counts are not part of it, so a layer subset shares its parent's key; another
    /// width or vocabulary does not; nor do content-based roles, which quantisation can flip.
    pub arch_key: String,
    /// Seed of the coordinates.
    pub seed: u64,
    /// Samples per tensor (`k`).
    pub samples: usize,
    /// Files with their hashes.
    pub files: Vec<SketchFile>,
    /// Tensors, in presented order (float tensors only; integer buffers are never evidence).
    pub tensors: Vec<TensorSketch>,
}

impl Sketch {
    /// Bytes of sampled values (the bulk of a stored sketch).
    pub fn value_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len() * 2).sum()
    }

    /// Layers per class (classes in a layer stack only).
    pub fn layer_counts(&self) -> BTreeMap<&str, usize> {
        let mut out: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for t in &self.tensors {
            if let Some(l) = t.layer {
                out.entry(t.class.as_str()).or_default().insert(l);
            }
        }
        out.into_iter().map(|(c, s)| (c, s.len())).collect()
    }
}

/// The coordinates sampled in a tensor of class `class` and `shape` (`numel` elements): every
/// element in order when `numel ≤ samples`, else `samples` distinct flat indices drawn
/// uniformly without replacement (rejection of repeats) from the seeded [`Rng`] whose seed is
/// the BLAKE3 of (`seed`, `class`, `shape`). Any prefix is itself a uniform sample.
pub fn coordinates(class: &str, shape: &[u64], numel: usize, opts: &SketchOptions) -> Vec<usize> {
    let k = opts.samples.min(MAX_SAMPLES);
    if numel <= k {
        return (0..numel).collect();
    }
    let mut h = blake3::Hasher::new();
    h.update(b"weightkin sketch coordinates v1\0");
    h.update(&opts.seed.to_le_bytes());
    h.update(class.as_bytes());
    h.update(b"\0");
    for d in shape {
        h.update(&d.to_le_bytes());
    }
    let digest = h.finalize();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest.as_bytes()[..8]);
    let mut rng = Rng::new(u64::from_le_bytes(seed));
    let mut seen = std::collections::HashSet::with_capacity(k * 2);
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let i = rng.below(numel as u64) as usize;
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

/// Sketches the model at `path` (a file or a directory, as `weightkin audit` opens it, or an
/// `hf://org/name[@revision][/subpath]` reference), naming it `model` in the sketch. File
/// hashes come from `run.hash_cache` when it has them.
///
/// An `hf://` model is located through `run.hub` (the Hugging Face cache, else the hub, as
/// an audit locates it); its float tensors are fetched before they are sampled (the sketch
/// reads every one), and the sketch's path is the reference pinned to the commit it resolved
/// to, so that the lineage search's audits read exactly the bytes sketched. A file of a remote
/// model is recorded with its BLAKE3 when every byte of it was fetched, else without (the
/// commit identifies it).
pub fn sketch_model(
    path: &Path,
    model: &str,
    registry: &Registry,
    opts: &SketchOptions,
    run: &RunOptions<'_>,
) -> Result<Sketch, Error> {
    let open_error = |source| Error::OpenModel {
        model: model.to_owned(),
        path: path.display().to_string(),
        source: Box::new(source),
    };
    let (base, files, audit_path) = match path.to_str().filter(|p| HfRef::is_hf(p)) {
        None => {
            let base = registry.open(path, None, &run.limits).map_err(open_error)?;
            let files = hash_files(path, base.as_ref(), run).map_err(open_error)?;
            (base, files, path.display().to_string())
        }
        Some(text) => open_hub(text, model, registry, run)?,
    };
    // Fused projections split into their parts, as automatic pairing presents them.
    let presented = correspond::present(model, base.as_ref(), &|_: &str| true, &|_: &str| false)?;
    let views = &presented.views;
    let float: Vec<(&String, usize)> = presented
        .names
        .iter()
        .map(|(n, &i)| (n, i))
        .filter(|(_, i)| views.tensors()[*i].dtype.is_float())
        .collect();
    let normalised = names::normalise_all(float.iter().map(|(n, _)| n.as_str()));
    let components = judge::Components::builtin(float.iter().map(|(n, _)| n.as_str()));
    let tensors = float
        .par_iter()
        .zip(normalised.par_iter())
        .map(|(&(name, index), norm)| {
            sketch_tensor(views, index, name, &norm.canonical, &components, opts).map_err(
                |source| Error::Measure {
                    compare: format!("sketch {model}"),
                    tensor: name.clone(),
                    source: Box::new(source),
                },
            )
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut dtypes: BTreeMap<weightkin_core::Dtype, u64> = BTreeMap::new();
    for t in base.tensors().iter().filter(|t| t.dtype.is_float()) {
        *dtypes.entry(t.dtype).or_default() += t.numel as u64;
    }
    let dtype = dtypes
        .iter()
        .max_by_key(|(d, n)| (**n, std::cmp::Reverse(**d)))
        .map(|(d, _)| *d);
    let mut key: BTreeSet<(&str, &[u64])> = BTreeSet::new();
    // Matrices only, whatever their content-based role: quantising a norm weight to 4 bits
    // can make it "structured", and that must not move a quantized copy to another block.
    // Computed buffers and generated tables are left out by name and formula, which casts
    // and quantisation do not change.
    for t in tensors.iter().filter(|t| {
        t.shape.iter().filter(|&&d| d > 1).count() >= 2
            && !matches!(
                t.role,
                SketchRole::DeterministicBuffer | SketchRole::Generated
            )
    }) {
        key.insert((t.class.as_str(), t.shape.as_slice()));
    }
    let mut h = blake3::Hasher::new();
    for (class, shape) in &key {
        h.update(class.as_bytes());
        for d in *shape {
            h.update(b",");
            h.update(d.to_string().as_bytes());
        }
        h.update(b"\n");
    }
    let arch_key = h.finalize().to_hex()[..16].to_owned();
    Ok(Sketch {
        version: SKETCH_VERSION,
        model: model.to_owned(),
        path: audit_path,
        format: base.format().to_owned(),
        parameters: base.tensors().iter().map(|t| t.numel as u64).sum(),
        dtype: dtype.map_or_else(String::new, |d| d.to_string()),
        bits: dtype.map_or(0.0, |d| d.bits() as f64),
        arch_key,
        seed: opts.seed,
        samples: opts.samples.min(MAX_SAMPLES),
        files,
        tensors,
    })
}

/// A model opened for [`sketch_model`]: its weights, its files with their hashes, and the
/// path the lineage search's audits open.
type Opened = (Box<dyn WeightSource>, Vec<SketchFile>, String);

/// Opens the `hf://` model `text` for [`sketch_model`]: the source with its float tensors
/// fetched, its files, and the reference pinned to its commit.
fn open_hub(
    text: &str,
    model: &str,
    registry: &Registry,
    run: &RunOptions<'_>,
) -> Result<Opened, Error> {
    let hub_error = |source| Error::Hub {
        model: model.to_owned(),
        path: text.to_owned(),
        source: Box::new(source),
    };
    let open_error = |source| Error::OpenModel {
        model: model.to_owned(),
        path: text.to_owned(),
        source: Box::new(source),
    };
    let reference = HfRef::parse(text).map_err(hub_error)?;
    let hub = run
        .hub
        .clone()
        .unwrap_or_else(|| Arc::new(Hub::new(HubEnv::from_env(), HubOptions::default())));
    let (source, handle, local) =
        crate::open::locate_and_open(model, text, None, &reference, &hub, registry, &run.limits)?;
    let floats: Vec<usize> = (0..source.tensors().len())
        .filter(|&i| source.tensors()[i].dtype.is_float())
        .collect();
    source
        .prefetch(&floats, &NoFetchProgress)
        .map_err(open_error)?;
    let provenance = handle.provenance(source.files()).map_err(hub_error)?;
    let files = if handle.origin() == Origin::Hub {
        provenance
            .files
            .iter()
            .map(|f| SketchFile {
                path: f.path.clone(),
                bytes: f.size,
                blake3: f.blake3.clone().unwrap_or_default(),
            })
            .collect()
    } else {
        // A Hugging Face cache snapshot: local files, hashed as any.
        hash_files(&local, source.as_ref(), run).map_err(open_error)?
    };
    let pinned = HfRef {
        revision: Some(provenance.commit),
        ..reference
    };
    Ok((source, files, pinned.to_string()))
}

/// Each file's BLAKE3, from the hash cache when it has it.
fn hash_files(
    root: &Path,
    source: &dyn WeightSource,
    run: &RunOptions<'_>,
) -> Result<Vec<SketchFile>, weightkin_core::Error> {
    let hash = |p: &Path| -> Result<String, weightkin_core::Error> {
        let map = MappedFile::open(p)?;
        FileHasher::new(map.len())
            .finish(&map)
            .ok_or_else(|| weightkin_core::Error::Io {
                path: p.to_owned(),
                action: "hash (its size changed while it was sketched)",
                source: std::io::ErrorKind::InvalidData.into(),
            })
    };
    source
        .files()
        .iter()
        .map(|f| {
            let blake3 = match &run.hash_cache {
                Some(cache) => cache.get_or_hash(&f.path, hash)?.blake3,
                None => hash(&f.path)?,
            };
            let rel = f
                .path
                .strip_prefix(root)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .or_else(|| f.path.file_name().map(Path::new))
                .unwrap_or(&f.path);
            Ok(SketchFile {
                path: rel.to_string_lossy().replace('\\', "/"),
                bytes: f.size,
                blake3,
            })
        })
        .collect()
}

/// Σ f(x) over `x` in eight f64 lanes (element `i` to lane `i % 8`, the lanes folded
/// pairwise, then the tail added in order): eight independent chains the compiler vectorises,
/// where one running sum waits on every add (that chain was 80 % of sketching a 7B model).
/// A fixed order: the same bits for any thread count.
fn lane_sum(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    const L: usize = 8;
    let mut s = [0f64; L];
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for (acc, &v) in s.iter_mut().zip(c) {
            *acc += f(f64::from(v));
        }
    }
    let mut total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for &v in chunks.remainder() {
        total += f(f64::from(v));
    }
    total
}

/// Per-chunk partial results of the pass: moments and the values picked.
struct Partial {
    n: u64,
    mean: f64,
    m2: f64,
    /// (position in the coordinate list, value).
    picked: Vec<(usize, f32)>,
}

/// Streams one tensor once: exact mean and s.d., the values at its coordinates, its role.
fn sketch_tensor(
    source: &dyn WeightSource,
    index: usize,
    name: &str,
    canonical: &str,
    components: &judge::Components<'_>,
    opts: &SketchOptions,
) -> Result<TensorSketch, weightkin_core::Error> {
    let info = &source.tensors()[index];
    let numel = info.numel;
    let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
    let (layer, class) = layer_and_class(canonical);
    let coords = coordinates(&class, &shape, numel, opts);
    // Sorted coordinates with their positions in `coords`, to pick values chunk by chunk.
    let mut sorted: Vec<(usize, usize)> = coords.iter().enumerate().map(|(p, &c)| (c, p)).collect();
    sorted.sort_unstable();
    let chunks = numel.div_ceil(CHUNK);
    let side = Side::new(source, index);
    let partials = (0..chunks)
        .into_par_iter()
        .map_init(
            || vec![0f32; CHUNK.min(numel)],
            |buf, c| -> Result<Partial, weightkin_core::Error> {
                let start = c * CHUNK;
                let len = CHUNK.min(numel - start);
                let x = &mut buf[..len];
                side.read_f32(start, x)?;
                let mean = lane_sum(x, |v| v) / len as f64;
                let m2 = lane_sum(x, |v| (v - mean) * (v - mean));
                let from = sorted.partition_point(|&(i, _)| i < start);
                let to = sorted.partition_point(|&(i, _)| i < start + len);
                let picked = sorted[from..to]
                    .iter()
                    .map(|&(i, p)| (p, x[i - start]))
                    .collect();
                Ok(Partial {
                    n: len as u64,
                    mean,
                    m2,
                    picked,
                })
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    source.release(index, 0, numel);
    // Chan et al.'s pairwise merge, in chunk order: the same bits for any thread count.
    let (mut n, mut mean, mut m2) = (0u64, 0f64, 0f64);
    let mut values = vec![0f32; coords.len()];
    for p in partials {
        if p.n > 0 {
            let total = n + p.n;
            let delta = p.mean - mean;
            mean += delta * p.n as f64 / total as f64;
            m2 += p.m2 + delta * delta * n as f64 * p.n as f64 / total as f64;
            n = total;
        }
        for (pos, v) in p.picked {
            values[pos] = v;
        }
    }
    let role = SketchRole::of(&judge::single_role(side, mean, m2, numel));
    let max = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max } else { 1.0 };
    Ok(TensorSketch {
        name: name.to_owned(),
        canonical: canonical.to_owned(),
        class,
        layer,
        component: components.of(name),
        shape,
        dtype: info.dtype.to_string(),
        role,
        numel: numel as u64,
        mean,
        sd: if n > 0 { (m2 / n as f64).sqrt() } else { 0.0 },
        scale,
        values: values
            .iter()
            .map(|&v| f16::from_f32(v / scale).to_bits())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn coordinates_depend_on_class_shape_and_seed_only() {
        let o = SketchOptions::default();
        let a = coordinates("text.layers.*.attn.q.weight", &[64, 64], 4096, &o);
        assert_eq!(a.len(), DEFAULT_SAMPLES);
        assert_eq!(
            a,
            coordinates("text.layers.*.attn.q.weight", &[64, 64], 4096, &o)
        );
        assert_ne!(
            a,
            coordinates("text.layers.*.attn.k.weight", &[64, 64], 4096, &o)
        );
        let other = SketchOptions { seed: 1, ..o };
        assert_ne!(
            a,
            coordinates("text.layers.*.attn.q.weight", &[64, 64], 4096, &other)
        );
        let distinct: BTreeSet<usize> = a.iter().copied().collect();
        assert_eq!(distinct.len(), a.len());
        assert!(a.iter().all(|&i| i < 4096));
        assert_eq!(coordinates("x", &[10], 10, &o), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn roles_round_trip() {
        for r in SketchRole::ALL {
            assert_eq!(SketchRole::parse(r.as_str()), Some(r));
        }
    }
}
