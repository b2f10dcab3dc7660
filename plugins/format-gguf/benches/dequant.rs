//! Decoding throughput of every GGML type, in GB/s of f32 output, single-threaded.
//!
//! Run with `cargo bench -p weightkin-format-gguf --bench dequant`. Each type decodes a
//! buffer of 4 Mi elements (random codes, scales kept finite and moderate) in chunks of
//! 16 Ki elements — the chunk size the runner streams with — into one reused output buffer,
//! so the number is the decoder's speed, not memory bandwidth. The best of five passes is
//! reported, after one warm-up pass. Results are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use weightkin_core::Dtype;
use weightkin_format_gguf::dequant::to_f32;

const ELEMENTS: usize = 4 << 20;
const CHUNK: usize = 16 * 1024;
const PASSES: usize = 5;

/// Random bytes for `ELEMENTS` elements of `dtype`, with every f16/f32 scale finite and of
/// magnitude below 2 (bit 6 of every odd byte cleared caps the f16 exponent, and the high
/// byte of Q8_K's f32 scale), and MXFP4's E8M0 exponent near 1.
fn input(dtype: Dtype) -> Vec<u8> {
    let (block, size) = dtype.block().map_or((1, dtype.bits() / 8), |b| b);
    let bytes = ELEMENTS / block as usize * size as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut data: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for (i, b) in data.iter_mut().enumerate() {
        if i % 2 == 1 {
            *b &= 0xbf;
        }
    }
    if dtype == Dtype::MXFP4 {
        for blk in data.chunks_mut(17) {
            blk[0] = 120 + blk[0] % 16;
        }
    }
    if dtype == Dtype::F64 {
        for v in data.chunks_mut(8) {
            v[7] &= 0x3f;
        }
    }
    data
}

fn family(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 => "float",
        Dtype::Q4_0
        | Dtype::Q4_1
        | Dtype::Q5_0
        | Dtype::Q5_1
        | Dtype::Q8_0
        | Dtype::Q8_1
        | Dtype::Q1_0
        | Dtype::Q2_0 => "legacy",
        Dtype::Q2_K | Dtype::Q3_K | Dtype::Q4_K | Dtype::Q5_K | Dtype::Q6_K | Dtype::Q8_K => {
            "k-quant"
        }
        Dtype::TQ1_0 | Dtype::TQ2_0 => "ternary",
        Dtype::MXFP4 | Dtype::NVFP4 => "fp4",
        _ => "i-quant",
    }
}

fn main() {
    let mut dtypes = vec![Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64];
    dtypes.extend(Dtype::GGML_BLOCK);
    let mut out = vec![0f32; CHUNK];
    let mut by_family: Vec<(&str, Vec<f64>)> = Vec::new();
    println!(
        "{:8} {:8} {:>10} {:>10}",
        "type", "family", "GB/s out", "Gelem/s"
    );
    for dtype in dtypes {
        let data = input(dtype);
        let mut best = f64::INFINITY;
        for pass in 0..=PASSES {
            let t = Instant::now();
            let mut start = 0;
            while start < ELEMENTS {
                to_f32(dtype, black_box(&data), start, &mut out).unwrap();
                black_box(&mut out);
                start += CHUNK;
            }
            let secs = t.elapsed().as_secs_f64();
            if pass > 0 {
                best = best.min(secs);
            }
        }
        let gbs = (ELEMENTS * 4) as f64 / best / 1e9;
        let gel = ELEMENTS as f64 / best / 1e9;
        println!(
            "{:8} {:8} {gbs:>10.2} {gel:>10.3}",
            dtype.as_str(),
            family(dtype)
        );
        let fam = family(dtype);
        match by_family.iter_mut().find(|(f, _)| *f == fam) {
            Some((_, v)) => v.push(gbs),
            None => by_family.push((fam, vec![gbs])),
        }
    }
    println!();
    println!(
        "{:8} {:>6} {:>10} {:>10}",
        "family", "types", "min GB/s", "max GB/s"
    );
    for (fam, v) in &by_family {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        println!("{fam:8} {:>6} {min:>10.2} {max:>10.2}", v.len());
    }
}
