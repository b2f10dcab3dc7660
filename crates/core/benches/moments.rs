//! Micro-benchmarks of the fused moment kernel per stored dtype, one thread.
//!
//! `cargo bench -p weightkin-core --bench moments`
//!
//! Each case streams a pair of 16 Mi-element tensors (held in one safetensors file in a temp
//! directory, page-cached after the first pass) through `pair_moments` on a one-thread pool:
//! BF16 and F32 take the fused path (decoding from the map), F16 the buffered path
//! (`read_f32` into a chunk buffer, then the kernel). Also the bare in-register kernel on f32
//! slices (`Moments::of_slices`, L1-resident). Best of 5 after a warm-up, in G element
//! pairs per second and GB/s of stored bytes read (both sides).

use std::hint::black_box;
use std::time::Instant;

use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
use weightkin_core::{pair_moments, Format, Limits, Moments, Side, CHUNK};

const N: usize = 16 << 20;

fn best<F: FnMut()>(mut f: F) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[allow(clippy::print_stdout)] // a benchmark program: its output is the point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let a = uniform_f32(N, 1, -0.5, 0.5);
    let b: Vec<f32> = a
        .iter()
        .zip(uniform_f32(N, 2, -0.5, 0.5))
        .map(|(x, e)| x + 0.1 * e)
        .collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.safetensors");
    SafetensorsBuilder::new()
        .tensor_bf16("bf16.a", &[N], &a)
        .tensor_bf16("bf16.b", &[N], &b)
        .tensor_f16("f16.a", &[N], &a)
        .tensor_f16("f16.b", &[N], &b)
        .tensor_f32("f32.a", &[N], &a)
        .tensor_f32("f32.b", &[N], &b)
        .write(&path)?;
    let src = weightkin_core::safetensors::FORMAT.open(&path, &Limits::default())?;
    let src = src.as_ref();
    println!("{:<28} {:>10} {:>10}", "case", "Gpairs/s", "GB/s");
    for (dtype, width) in [("bf16", 2usize), ("f16", 2), ("f32", 4)] {
        let (Some(ia), Some(ib)) = (
            src.find(&format!("{dtype}.a")),
            src.find(&format!("{dtype}.b")),
        ) else {
            return Err("tensor missing".into());
        };
        let secs = pool.install(|| {
            best(|| {
                black_box(pair_moments(Side::new(src, ia), Side::new(src, ib), N).ok());
            })
        });
        let label = format!("pair_moments {dtype}");
        println!(
            "{label:<28} {:>10.3} {:>10.2}",
            N as f64 / secs / 1e9,
            (2 * N * width) as f64 / secs / 1e9
        );
    }
    let (x, y) = (&a[..CHUNK], &b[..CHUNK]);
    let secs = best(|| {
        for _ in 0..N / CHUNK {
            black_box(Moments::of_slices(black_box(x), black_box(y)));
        }
    });
    println!(
        "{:<28} {:>10.3} {:>10.2}",
        "of_slices f32 (in cache)",
        N as f64 / secs / 1e9,
        (8 * N) as f64 / secs / 1e9
    );
    Ok(())
}
