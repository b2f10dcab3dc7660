#!/usr/bin/env bash
# Full-model CKA layer-grid benchmark (BENCHMARKS.md, "CKA layer grids (issue 17)").
#
#   scripts/bench_grid.sh [DATA_DIR] [-- extra `weightkin audit` flags, e.g. --threads 1]
#
# DATA_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench. Generates the small
# benchmark pair there if missing (scripts/gen_bench_models.py: 24 layers, hidden 1024, MLP
# 2816, BF16, ~0.68 GB per model; never committed), writes a recipe whose only comparison
# asks for `grid = { metric = "cka" }` over every layered class (q/k/v/o 1024×1024, gate/up
# 2816×1024, down 1024×2816, and the two 1-D norms, which get no CKA grid), warms the page
# cache, and runs `weightkin audit` under GNU time, printing wall seconds and peak RSS. The
# report lands in $OUT (default DATA_DIR/small/grid-report; report.json holds the grids).
# WK=path/to/weightkin runs another build (e.g. a copy of main's, for before/after);
# CLASSES='"model.layers.*.self_attn.q_proj.weight"' limits the grid to those classes (globs).
# Needs python3 with numpy and /usr/bin/time (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${XDG_CACHE_HOME:-$HOME/.cache}/weightkin-bench
if [[ $# -gt 0 && $1 != -- ]]; then DATA=$1; shift; fi
[[ ${1:-} == -- ]] && shift
if [[ -z ${WK:-} ]]; then
  cargo build --release -q --bin weightkin -p weightkin
  WK=target/release/weightkin
fi
S="$DATA/small"
[[ -f $S/a.safetensors && -f $S/b.safetensors ]] || python3 scripts/gen_bench_models.py small "$S"
cat > "$S/grid-cka.toml" <<TOML
[audit]
name = "bench: full-model CKA layer grids"

[models.a]
path = "a.safetensors"

[models.b]
path = "b.safetensors"

[[compare]]
a = "a"
b = "b"
metrics = ["cosine", "pearson"]
grid = { metric = "cka" }

[report]
formats = ["json"]
TOML
cat "$S"/a.safetensors "$S"/b.safetensors > /dev/null   # page cache
echo "$WK audit grid-cka.toml $*"
/usr/bin/time -f "%e s %M KB" "$WK" audit "$S/grid-cka.toml" --out "${OUT:-$S/grid-report}" --no-hash-cache "$@" > /dev/null
