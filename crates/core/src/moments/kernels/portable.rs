//! The portable builds of the fused kernels, one per stored dtype pair (both sides the same
//! dtype). Each is `#[inline(always)]` so that every `dispatch!`
//! instantiation is compiled for its own target features; they are the reference the AVX2
//! builds ([`super::avx2`]) are tested against bit for bit.

use super::{arr, bf16, reduce, L};
use crate::Moments;

#[inline(always)]
pub(super) fn slices(a: &[f32], b: &[f32]) -> Moments {
    let oct = |c: &[f32]| std::array::from_fn(|i| c[i]);
    let one = |c: &[f32]| c[0];
    reduce::<f32, f32, L, L, 1, 1>(a, b, oct, oct, one, one)
}

#[inline(always)]
pub(super) fn bf16s(a: &[u8], b: &[u8]) -> Moments {
    let oct = |c: &[u8]| {
        let w = u128::from_le_bytes(arr(c));
        std::array::from_fn(|i| bf16((w >> (16 * i)) as u32 & 0xffff))
    };
    let one = |c: &[u8]| bf16(u32::from(u16::from_le_bytes(arr(c))));
    reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, one, one)
}

#[inline(always)]
pub(super) fn f16s(a: &[u8], b: &[u8]) -> Moments {
    let half = |c: &[u8]| crate::convert::f16_to_f32(u16::from_le_bytes(arr(c)));
    let oct = |c: &[u8]| std::array::from_fn(|i| half(&c[2 * i..2 * i + 2]));
    reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, half, half)
}

#[inline(always)]
pub(super) fn f32s(a: &[u8], b: &[u8]) -> Moments {
    let oct = |c: &[u8]| std::array::from_fn(|i| f32::from_le_bytes(arr(&c[4 * i..4 * i + 4])));
    let one = |c: &[u8]| f32::from_le_bytes(arr(c));
    reduce::<u8, u8, 32, 32, 4, 4>(a, b, oct, oct, one, one)
}

/// The reference for [`super::avx512`]'s `q8_0s`: whole Q8_0 blocks, element `j` of a block
/// `f32(q_j) · f32(d)` (the GGUF decoder's arithmetic), each block four eights of lanes.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn q8_0s(a: &[u8], b: &[u8]) -> Moments {
    const B: usize = super::Q8_0_BLOCK;
    let mut s = super::Lanes::default();
    let mut n = 0;
    for (ba, bb) in a.chunks_exact(B).zip(b.chunks_exact(B)) {
        let (da, db) = (super::q8_0_scale(ba), super::q8_0_scale(bb));
        for o in 0..4 {
            let value = |block: &[u8], d: f32| -> [f32; L] {
                std::array::from_fn(|i| f32::from(block[2 + 8 * o + i] as i8) * d)
            };
            s.add(value(ba, da), value(bb, db));
        }
        n += 32;
    }
    Moments::from_lanes(n, s)
}
