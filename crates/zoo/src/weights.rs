//! A model's tensors in memory, and how they are written to and read from safetensors.
//!
//! Weights are kept as f32 (and i64 for counters such as BatchNorm's `num_batches_tracked`)
//! in a sorted map, so iteration order — and therefore every file — is deterministic. Files
//! are written with the `safetensors` crate, whose header order is fixed by (alignment, name),
//! and with a fixed metadata block; casting to F16/BF16 rounds to nearest even (`half`).

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::{Dtype as StDtype, TensorView};

use crate::Error;

/// The values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floating-point values (stored as F32, F16 or BF16 depending on the model's dtype).
    F32(Vec<f32>),
    /// Integer counters, always stored as I64.
    I64(Vec<i64>),
}

/// One named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub values: Values,
}

impl Tensor {
    /// A float tensor.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor {
            shape,
            values: Values::F32(data),
        }
    }

    /// Its float values, or `None` for an integer tensor.
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }
}

/// How the floating-point tensors of a file are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Dtype {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

/// All tensors of a model, by name.
pub type Weights = BTreeMap<String, Tensor>;

/// Total number of elements.
pub fn parameters(w: &Weights) -> u64 {
    w.values()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum()
}

/// The file's bytes: every float tensor stored as `dtype`, integer tensors as I64; the
/// metadata is `{"format": "pt"}`, as in Hugging Face uploads. `model` names the model in
/// errors.
pub fn serialize(w: &Weights, dtype: Dtype, model: &str) -> Result<Vec<u8>, Error> {
    let mut bytes: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(w.len());
    for (name, t) in w {
        let (dt, data) = match &t.values {
            Values::F32(v) => match dtype {
                Dtype::F32 => (
                    StDtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Dtype::F16 => (
                    StDtype::F16,
                    v.iter()
                        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                        .collect(),
                ),
                Dtype::BF16 => (
                    StDtype::BF16,
                    v.iter()
                        .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
                        .collect(),
                ),
            },
            Values::I64(v) => (
                StDtype::I64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        bytes.push((name.clone(), dt, t.shape.clone(), data));
    }
    let mut views = Vec::with_capacity(bytes.len());
    for (name, dt, shape, data) in &bytes {
        let view =
            TensorView::new(*dt, shape.clone(), data).map_err(|source| Error::Safetensors {
                what: model.to_owned(),
                source,
            })?;
        views.push((name.as_str(), view));
    }
    // One key only: safetensors keeps metadata in a HashMap, whose order is random.
    let meta = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize(views, Some(meta)).map_err(|source| Error::Safetensors {
        what: model.to_owned(),
        source,
    })
}

/// Reads a model written by [`serialize`] (any float dtype; values widened to f32).
pub fn read(path: &Path) -> Result<Weights, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            what: path.display().to_string(),
            source,
        })?;
    let mut w = Weights::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let values = match view.dtype() {
            StDtype::F32 => Values::F32(
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            StDtype::F16 => Values::F32(
                d.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            StDtype::BF16 => Values::F32(
                d.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            StDtype::I64 => Values::I64(
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            other => {
                return Err(Error::UnexpectedDtype {
                    path: path.to_owned(),
                    tensor: name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        w.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(w)
}

/// The element-wise weighted average of models with the same tensors (a "model soup"
/// merge). Integer tensors are taken from the first model.
pub fn average(models: &[&Weights], weights: &[f32]) -> Weights {
    let mut out = Weights::new();
    let Some(first) = models.first() else {
        return out;
    };
    for (name, t) in first.iter() {
        let values = match &t.values {
            Values::F32(v) => {
                let mut acc = vec![0f32; v.len()];
                for (m, wt) in models.iter().zip(weights) {
                    if let Some(x) = m.get(name).and_then(Tensor::floats) {
                        for (a, b) in acc.iter_mut().zip(x) {
                            *a += wt * b;
                        }
                    }
                }
                Values::F32(acc)
            }
            Values::I64(v) => Values::I64(v.clone()),
        };
        out.insert(
            name.clone(),
            Tensor {
                shape: t.shape.clone(),
                values,
            },
        );
    }
    out
}
