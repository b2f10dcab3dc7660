//! Tensor metadata.

use serde::Serialize;

use crate::Dtype;

/// What a format knows about one stored tensor without reading its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Name as stored in the file (after any flattening a format does, never after recipe
    /// rename rules).
    pub name: String,
    /// Shape in row-major order (slowest dimension first), as PyTorch and safetensors write it.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
    /// Number of elements (product of `shape`, checked when the format built this value).
    pub numel: usize,
    /// Bytes the tensor occupies in its file.
    pub byte_len: u64,
    /// Index into [`crate::WeightSource::files`] of the file holding the data.
    pub file: usize,
    /// The name exactly as stored in the file, when the format presents the tensor under
    /// another name (GGUF `blk.0.attn_q.weight` shown as its Hugging Face name, a PyTorch
    /// state dict's `module.` prefix removed). `None` when `name` is the stored name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_name: Option<String>,
}

impl TensorInfo {
    /// The error for a read of `len` elements at `start` that does not fit this tensor.
    pub fn out_of_range(&self, start: usize, len: usize) -> crate::Error {
        crate::Error::ReadOutOfRange {
            tensor: self.name.clone(),
            start,
            len,
            numel: self.numel,
        }
    }
}

/// The checks every [`crate::WeightSource::read_f32`] starts with, in one place: tensor
/// `index` exists, its dtype converts to f32, and elements `start .. start + len` lie inside
/// it (checked arithmetic). Returns the tensor's metadata.
pub fn checked_read(
    tensors: &[TensorInfo],
    index: usize,
    start: usize,
    len: usize,
) -> crate::Result<&TensorInfo> {
    let info = tensors.get(index).ok_or(crate::Error::NoSuchTensor {
        index,
        count: tensors.len(),
    })?;
    if !info.dtype.is_float() {
        return Err(crate::Error::NotConvertible {
            tensor: info.name.clone(),
            dtype: info.dtype,
        });
    }
    if start.checked_add(len).is_none_or(|end| end > info.numel) {
        return Err(info.out_of_range(start, len));
    }
    Ok(info)
}

/// Product of a shape's dimensions; `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
