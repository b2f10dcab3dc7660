#!/usr/bin/env bash
# The lineage search through Ray (issue 21): the simulated hub of N models (the same one
# `scripts/bench-lineage.sh N` uses, cached), `python -m weightkin.lineage run` on a local Ray
# with every CPU (sketch batches and candidate audits as Ray tasks), timed with GNU time, then
# scored against the hub's truth by scripts/score_lineage.py.
#
# Usage: scripts/bench-lineage-ray.sh [N] [BATCH]      (default 10000 models, 100 per task)
# Needs the Python package installed in ${VENV:-target/python-venv} (scripts/test-python.sh
# builds it) and Ray. Writes ${WEIGHTKIN_SIMHUB:-~/.cache/weightkin/simhub}/v1-n<N>-s21/ray/.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
batch=${2:-100}
py=${VENV:-target/python-venv}/bin/python
cargo build --release --quiet -p weightkin-lineage --bin weightkin-simhub
dir="${WEIGHTKIN_SIMHUB:-$HOME/.cache/weightkin/simhub}/v1-n$n-s21"
target/release/weightkin-simhub generate "$dir" --models "$n" --seed 21 >&2
work="$dir/ray"
rm -rf "$work"
mkdir -p "$work"
"$py" - "$dir" > "$work/models.txt" <<'PY'
import json, sys
from pathlib import Path
hub = Path(sys.argv[1])
for m in json.loads((hub / "manifest.json").read_text())["models"]:
    print(hub / "models" / f"{m['name']}.safetensors")
PY
/usr/bin/time -f "wall %e s, peak RSS of the driver %M KB" \
  "$py" -m weightkin.lineage --num-cpus "$(nproc)" run --models "$work/models.txt" \
  --out "$work/out" --batch "$batch" > "$work/summary.json" 2> "$work/stderr.txt" \
  || { tail -20 "$work/stderr.txt" >&2; exit 1; }
tail -1 "$work/stderr.txt" >&2
python3 scripts/score_lineage.py "$dir" "$work/out/graph.json"
