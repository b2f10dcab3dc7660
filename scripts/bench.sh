#!/usr/bin/env bash
# End-to-end compare-throughput benchmark (BENCHMARKS.md, "Compare throughput").
#
#   scripts/bench.sh [DATA_DIR]      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench)
#
# Generates two synthetic BF16 model pairs (≈0.68 GB and ≈2.5 GB per model; never committed),
# warms the page cache, then on the small pair runs the reference one-pass read
# (crates/core/examples/read_pass.rs), the numpy baseline (scripts/bench_numpy_compare.py)
# and `weightkin compare` (release) both cold (--no-hash-cache: every run hashes both files)
# and warm (hashes from the hash cache), prints the ratios, peak RSS for both sizes, and
# checks that --threads 1 and the default thread count print identical bytes.
# Needs python3 with numpy, bc, and /usr/bin/time (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench}
cargo build --release -q --bin weightkin -p weightkin
cargo build --release -q -p weightkin-core --example read_pass
WK=target/release/weightkin
READ=target/release/examples/read_pass
for size in small large; do python3 scripts/gen_bench_models.py "$size" "$DATA/$size"; done

S="$DATA/small"
cat "$S"/a.safetensors "$S"/b.safetensors > /dev/null   # page cache
best() { sort -n | head -1; }
# Wall seconds of one command (nanosecond clock; output discarded).
secs() { local t0 t1; t0=$(date +%s%N); "$@" > /dev/null 2>&1; t1=$(date +%s%N); echo "scale=4; ($t1 - $t0) / 1000000000" | bc; }
refs=$(for i in 1 2 3 4 5; do $READ "$S/a.safetensors" "$S/b.safetensors" --repeat 1 2>/dev/null | sed -n 's/best_seconds=//p'; done | best)
bytes=$(( $(stat -c %s "$S/a.safetensors") + $(stat -c %s "$S/b.safetensors") ))
# Cold: --no-hash-cache, so every run hashes both files (BLAKE3, fused into the pass).
cold=$(for i in 1 2 3 4 5; do secs $WK compare "$S/a.safetensors" "$S/b.safetensors" --format json --no-hash-cache; done | best)
# Warm: the hash cache holds both files' hashes (a first run stores them; the files are
# older than the cache's 3 s racy window by now), as on any repeated audit of the same files.
$WK compare "$S/a.safetensors" "$S/b.safetensors" --format json > /dev/null
warm=$(for i in 1 2 3 4 5; do secs $WK compare "$S/a.safetensors" "$S/b.safetensors" --format json; done | best)
np=$(python3 scripts/bench_numpy_compare.py "$S/a.safetensors" "$S/b.safetensors" | sed -n 's/numpy_seconds=//p')
rss() { /usr/bin/time -f "%M" $WK compare "$1/a.safetensors" "$1/b.safetensors" --format json --no-hash-cache 2>&1 >/dev/null | tail -1; }
cat "$DATA"/large/*.safetensors > /dev/null
rss_small=$(rss "$S"); rss_large=$(rss "$DATA/large")
$WK compare "$S/a.safetensors" "$S/b.safetensors" --format json --threads 1 > "$DATA/t1.json"
$WK compare "$S/a.safetensors" "$S/b.safetensors" --format json > "$DATA/tn.json"
same=$(cmp -s "$DATA/t1.json" "$DATA/tn.json" && echo identical || echo DIFFERENT)
awk -v b="$bytes" -v r="$refs" -v c="$cold" -v w="$warm" -v n="$np" -v rs="$rss_small" -v rl="$rss_large" -v s="$same" -v nproc="$(nproc)" 'BEGIN {
  printf "threads                      %d\n", nproc
  printf "bytes (both models)          %.2f GB\n", b/1e9
  printf "reference read pass          %.3f s  %.2f GB/s\n", r, b/r/1e9
  printf "weightkin compare, warm      %.3f s  %.2f GB/s  = %.1f %% of read bandwidth (target >= 70 %%)\n", w, b/w/1e9, 100*r/w
  printf "weightkin compare, cold      %.3f s  %.2f GB/s  = %.1f %% of read bandwidth (BLAKE3 of both files included)\n", c, b/c/1e9, 100*r/c
  printf "numpy cosine+pearson         %.3f s  -> weightkin %.1fx faster warm, %.1fx cold (target >= 12x)\n", n, n/w, n/c
  printf "peak RSS 2 x 0.68 GB         %.0f MB\n", rs/1024
  printf "peak RSS 2 x 2.5 GB          %.0f MB (target < 300 MB, size-independent)\n", rl/1024
  printf "--threads 1 vs %d            %s report bytes\n", nproc, s
}'
