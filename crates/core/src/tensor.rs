//! Tensor metadata: what a format knows about one tensor without reading its data.

use serde::Serialize;

use crate::{Dtype, TensorProblem};

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
    /// A tensor of `shape` and `dtype` stored under `name`, with its element count and byte
    /// length derived (checked arithmetic), in file 0 and under its stored name. The one
    /// place a format computes them; [`TensorProblem::ShapeOverflow`] if either overflows
    /// (or a block-quantized dtype's elements are not whole blocks).
    pub fn new(name: String, shape: Vec<usize>, dtype: Dtype) -> Result<TensorInfo, TensorProblem> {
        let sizes = checked_numel(&shape)
            .and_then(|numel| Some((numel, dtype.byte_len(u64::try_from(numel).ok()?)?)));
        let Some((numel, byte_len)) = sizes else {
            return Err(TensorProblem::ShapeOverflow(shape));
        };
        Ok(TensorInfo {
            name,
            shape,
            dtype,
            numel,
            byte_len,
            file: 0,
            stored_name: None,
        })
    }

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

/// Product of a shape's dimensions; `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
