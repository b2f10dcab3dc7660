#!/usr/bin/env bash
# Every format pair and exact copies against the one-pass read limit (BENCHMARKS.md, "Every
# format and exact copies").
#
#   scripts/bench-formats.sh [DATA_DIR] [RUNS]
#       (default: ${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/small, 5 runs)
#
# Generates the small benchmark pair (scripts/gen_bench_models.py: 24 layers, hidden 1024,
# BF16, B = A + noise) and its copies in every format (scripts/gen_bench_formats.py:
# safetensors F32/F16, GGUF F32/F16/Q8_0, a torch.save zip), warms the page cache, and for
# each pair prints the reference read pass over the same two files (crates/core/examples/
# read_pass.rs, best of RUNS), `weightkin compare` (best of RUNS, hash cache warm), the ratio,
# and peak RSS (GNU time). Then the same for exact copies: A against A in another format or a
# byte copy. Nothing generated is committed. Needs python3 with numpy and gguf, bc, GNU time.
# WK_BASE=path/to/another/weightkin (e.g. a build of an earlier commit) times that binary too,
# on the same pairs, and says if its reports differ from this build's (before/after runs).
# ALIGN=0 leaves out the --align-units row.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench/small}
RUNS=${2:-5}
cargo build --release -q --bin weightkin -p weightkin
cargo build --release -q -p weightkin-core --example read_pass
WK=target/release/weightkin
READ=target/release/examples/read_pass
python3 scripts/gen_bench_models.py small "$DATA" > /dev/null
python3 scripts/gen_bench_formats.py "$DATA" > /dev/null
[ -e "$DATA/a.copy.safetensors" ] || cp "$DATA/a.safetensors" "$DATA/a.copy.safetensors"

best() { sort -n | head -1; }
secs() { local t0 t1; t0=$(date +%s%N); "$@" > /dev/null 2>&1; t1=$(date +%s%N); echo "scale=4; ($t1 - $t0) / 1000000000" | bc; }
row() {   # A B [extra compare arguments]
  local a="$DATA/$1" b="$DATA/$2" label="$1 vs $2" ref wk rss bytes
  shift 2
  [ $# -gt 0 ] && label="$label $*"
  cat "$a" "$b" > /dev/null
  $WK compare "$a" "$b" --format json "$@" > /dev/null   # hash cache
  if [ -n "${WK_BASE:-}" ]; then
    # Before/after: WK_BASE's report must be byte-identical; its runs interleave with ours.
    $WK_BASE compare "$a" "$b" --format json "$@" | cmp -s - <($WK compare "$a" "$b" --format json "$@") \
      || echo "  $label: REPORTS DIFFER from WK_BASE's"
    local base
    base=$(for _ in $(seq "$RUNS"); do secs $WK_BASE compare "$a" "$b" --format json "$@"; done | best)
    local brss
    brss=$(/usr/bin/time -f "%M" $WK_BASE compare "$a" "$b" --format json "$@" 2>&1 >/dev/null | tail -1)
  fi
  ref=$(for _ in $(seq "$RUNS"); do $READ "$a" "$b" --repeat 1 2>/dev/null | sed -n 's/best_seconds=//p'; done | best)
  wk=$(for _ in $(seq "$RUNS"); do secs $WK compare "$a" "$b" --format json "$@"; done | best)
  rss=$(/usr/bin/time -f "%M" $WK compare "$a" "$b" --format json "$@" 2>&1 >/dev/null | tail -1)
  bytes=$(( $(stat -c %s "$a") + $(stat -c %s "$b") ))
  awk -v p="$label" -v by="$bytes" -v r="$ref" -v w="$wk" -v m="$rss" 'BEGIN {
    printf "%-52s %6.2f GB  read %.3f s  compare %.3f s  %5.1f %%  RSS %4.0f MB\n", p, by/1e9, r, w, 100*r/w, m/1024 }'
  if [ -n "${WK_BASE:-}" ]; then
    awk -v r="$ref" -v w="$base" -v m="$brss" 'BEGIN {
      printf "%-52s %6s     read %.3f s  compare %.3f s  %5.1f %%  RSS %4.0f MB\n", "  WK_BASE", "", r, w, 100*r/w, m/1024 }'
  fi
}
echo "threads $(nproc), best of $RUNS, page cache warm, hash cache warm"
echo "-- A vs B (B = A + noise): every pass, a derived verdict"
for f in safetensors f32.safetensors f16.safetensors f32.gguf f16.gguf q8_0.gguf pt; do row "a.$f" "b.$f"; done
echo "-- exact copies of A"
for f in copy.safetensors f32.safetensors f32.gguf pt; do row a.safetensors "a.$f"; done
row a.f32.safetensors a.f32.gguf
if [ "${ALIGN:-1}" = 1 ]; then   # ALIGN=0 leaves out this row (about 7 minutes)
  echo "-- alignment (issue 15): units and heads aligned before measuring"
  row a.safetensors b.safetensors --align-units
fi
