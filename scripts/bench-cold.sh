#!/usr/bin/env bash
# Cold reads of a 7B-shaped BF16 pair (BENCHMARKS.md, "Cold reads").
#
#   sudo scripts/bench-cold.sh [DATA_DIR]     (default: ${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/7b)
#
# Generates two Llama-2-7B-shaped BF16 safetensors files (scripts/gen_bench_models.py 7b:
# 32 layers, d = 4096, FFN 11008, vocab 32000; 13.5 GB each, B = A + noise; never committed),
# then, with the page cache dropped before every run (`echo 3 > /proc/sys/vm/drop_caches`,
# so it needs root), times:
#   1. `cat A B > /dev/null`: what reading both files through the page cache takes;
#   2. `dd bs=64M iflag=direct` of A, then B: the strictest reader (no page cache);
#   3. `weightkin compare A B` with the hash cache holding both files' hashes (the usual case
#      for a repeated audit), as it runs by default (WEIGHTKIN_DIRECT_READS=auto: these files
#      are too large to stay cached, so cold tensors are read with O_DIRECT), and 4. through
#      the page cache (WEIGHTKIN_DIRECT_READS=never);
#   5. with `--no-hash-cache` (BLAKE3 of both files in the pass);
#   6. `weightkin compare --include 'model.embed_tokens.*'`: one component; bytes read from
#      disk (GNU time %I, 512-byte blocks) against the component's bytes.
# Each prints wall time, peak RSS, user and system CPU, and bytes read from storage.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/7b}
cargo build --release -q --bin weightkin -p weightkin
WK=target/release/weightkin
python3 scripts/gen_bench_models.py 7b "$DATA" > /dev/null
A="$DATA/a.safetensors" B="$DATA/b.safetensors"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
measure() {   # label, command...: wall s, peak RSS, CPU, bytes read from storage
  local label=$1 out
  shift
  drop
  out=$( { /usr/bin/time -f "%e %M %U %S %I" "$@" > /dev/null; } 2>&1 | tail -1)
  set -- $out
  awk -v l="$label" -v s="$1" -v m="$2" -v u="$3" -v y="$4" -v i="$5" 'BEGIN {
    printf "%-44s %7.2f s  RSS %5.0f MB  user %6.2f s  sys %5.2f s  read %6.2f GB\n", l, s, m/1024, u, y, i*512/1e9 }'
}
$WK compare "$A" "$B" --format json > /dev/null   # the hash cache holds both files now
bytes=$(( $(stat -c %s "$A") + $(stat -c %s "$B") ))
echo "both files: $(awk -v b=$bytes 'BEGIN{printf "%.2f GB", b/1e9}'), page cache dropped before each run, $(nproc) threads"
measure "cat A B" cat "$A" "$B"
measure "dd bs=64M iflag=direct (A, then B)" sh -c "dd if='$A' of=/dev/null bs=64M iflag=direct 2>/dev/null; dd if='$B' of=/dev/null bs=64M iflag=direct 2>/dev/null"
measure "weightkin compare (hash cache warm)" $WK compare "$A" "$B" --format json
measure "  the same, WEIGHTKIN_DIRECT_READS=never" env WEIGHTKIN_DIRECT_READS=never $WK compare "$A" "$B" --format json
measure "weightkin compare --no-hash-cache" $WK compare "$A" "$B" --format json --no-hash-cache
measure "weightkin compare --include embeddings" $WK compare "$A" "$B" --format json --include 'model.embed_tokens.*'
echo "embeddings: $(awk 'BEGIN{printf "%.3f GB per model", 32000*4096*2/1e9}')"
