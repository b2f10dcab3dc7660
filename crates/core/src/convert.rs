//! Conversion of stored elements to f32. (Placeholder being completed: F32/F16/BF16/F64 only.)

use crate::Dtype;

/// Converts elements `start .. start + out.len()` of a tensor whose little-endian bytes are
/// `data` (the whole tensor) and whose dtype is `dtype` into `out`. Returns `None` if the
/// dtype is not a float type or the range is outside `data`.
pub fn to_f32(dtype: Dtype, data: &[u8], start: usize, out: &mut [f32]) -> Option<()> {
    let size = (dtype.bits() / 8) as usize;
    let begin = start.checked_mul(size)?;
    let end = begin.checked_add(out.len().checked_mul(size)?)?;
    let bytes = data.get(begin..end)?;
    match dtype {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
            }
        }
        Dtype::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        Dtype::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                *o = f64::from_le_bytes(w) as f32;
            }
        }
        _ => return None,
    }
    Some(())
}
