#!/usr/bin/env bash
# Cold reads of a 7B-shaped BF16 pair (BENCHMARKS.md, "Cold reads").
#
#   sudo scripts/bench-cold.sh [DATA_DIR]     (default: ${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/7b)
#
# Generates two Llama-2-7B-shaped BF16 safetensors files (scripts/gen_bench_models.py 7b:
# 32 layers, d = 4096, FFN 11008, vocab 32000; 13.5 GB each, B = A + noise; never committed),
# then, with the page cache dropped before every run (`echo 3 > /proc/sys/vm/drop_caches`,
# so it needs root), times:
#   1. `cat A B > /dev/null`: what reading both files from disk takes;
#   2. `weightkin compare A B` with the hash cache holding both files' hashes (the usual case
#      for a repeated audit) and 3. with `--no-hash-cache` (BLAKE3 of both files in the pass);
#   4. `weightkin compare --include 'model.embed_tokens.*'`: one component; bytes read from
#      disk (GNU time %I, 512-byte blocks) against the component's bytes.
# Each prints wall time, peak RSS and bytes read from storage.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/7b}
cargo build --release -q --bin weightkin -p weightkin
WK=target/release/weightkin
python3 scripts/gen_bench_models.py 7b "$DATA" > /dev/null
A="$DATA/a.safetensors" B="$DATA/b.safetensors"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
measure() {   # label, command...: wall s, peak RSS, bytes read from storage
  local label=$1 out
  shift
  drop
  out=$( { /usr/bin/time -f "%e %M %I" "$@" > /dev/null; } 2>&1 | tail -1)
  set -- $out
  awk -v l="$label" -v s="$1" -v m="$2" -v i="$3" 'BEGIN {
    printf "%-44s %7.2f s  RSS %5.0f MB  read %6.2f GB\n", l, s, m/1024, i*512/1e9 }'
}
$WK compare "$A" "$B" --format json > /dev/null   # the hash cache holds both files now
bytes=$(( $(stat -c %s "$A") + $(stat -c %s "$B") ))
echo "both files: $(awk -v b=$bytes 'BEGIN{printf "%.2f GB", b/1e9}'), page cache dropped before each run, $(nproc) threads"
measure "cat A B" cat "$A" "$B"
measure "weightkin compare (hash cache warm)" $WK compare "$A" "$B" --format json
measure "weightkin compare --no-hash-cache" $WK compare "$A" "$B" --format json --no-hash-cache
measure "weightkin compare --include embeddings" $WK compare "$A" "$B" --format json --include 'model.embed_tokens.*'
echo "embeddings: $(awk 'BEGIN{printf "%.3f GB per model", 32000*4096*2/1e9}')"
