//! The reference one-pass read: memory-maps each file given on the command line (with the
//! same helper and read-ahead advice as the safetensors source), reads and reduces every
//! 64-bit word of every file once (a wrapping sum, so no byte can be skipped), in parallel
//! on the rayon pool, and prints the time and bandwidth. It is the "physical limit" the
//! compare-throughput benchmark measures `weightkin compare` against (BENCHMARKS.md).
//!
//! `cargo run --release -p weightkin-core --example read_pass -- FILE... [--repeat N]`
//!
//! Prints one line per repetition and a final `best_gbps=<GB/s>` line for scripts.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use weightkin_core::MappedFile;

/// Bytes per parallel work item (the reduction is independent of it: wrapping sums commute).
const PIECE: usize = 1 << 20;

fn reduce(bytes: &[u8]) -> u64 {
    bytes
        .par_chunks(PIECE)
        .map(|piece| {
            let mut lanes = [0u64; 8];
            let mut words = piece.chunks_exact(64);
            for block in &mut words {
                for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(w);
                    *lane = lane.wrapping_add(u64::from_le_bytes(b));
                }
            }
            let tail = words
                .remainder()
                .iter()
                .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
            lanes.iter().fold(tail, |s, &l| s.wrapping_add(l))
        })
        .reduce(|| 0, u64::wrapping_add)
}

#[allow(clippy::print_stdout)] // a benchmark program: its output is the point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--repeat" {
            repeat = args.next().ok_or("--repeat needs a value")?.parse()?;
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        return Err("usage: read_pass FILE... [--repeat N]".into());
    }
    let mut best = f64::INFINITY;
    let mut total = 0u64;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let mut sum = 0u64;
        total = 0;
        // Mapped afresh each time, as `weightkin` maps afresh: page-table set-up is part of
        // the cost of reading a page-cached file through mmap.
        for f in &files {
            let map = MappedFile::open(f)?;
            sum = sum.wrapping_add(reduce(map.bytes()));
            total += map.len();
        }
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        eprintln!(
            "read_pass: {} bytes in {s:.3} s = {:.2} GB/s (checksum {sum:016x})",
            total,
            total as f64 / s / 1e9
        );
    }
    println!("best_seconds={best:.4}");
    println!("best_gbps={:.3}", total as f64 / best / 1e9);
    Ok(())
}
