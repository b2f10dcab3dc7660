#!/usr/bin/env bash
# Lineage search on a simulated hub (issue 21): generates N small models in known family trees
# (cached), sketches them, writes and reads the Parquet store, searches candidates, audits them
# exactly, builds the graph, and scores it against the truth; the cost of all-pairs audits is
# measured on a random sample of pairs and extrapolated. Prints bench.json.
#
# Usage: scripts/bench-lineage.sh [N] [ALL_PAIRS_SAMPLE]      (default 1000 models, 200 pairs)
# Cache: ${WEIGHTKIN_SIMHUB:-~/.cache/weightkin/simhub}/v<generator>-n<N>-s21/ (not in the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
sample=${2:-200}
cargo build --release --quiet -p weightkin-lineage --bin weightkin-simhub
dir="${WEIGHTKIN_SIMHUB:-$HOME/.cache/weightkin/simhub}/v1-n$n-s21"
mkdir -p "$dir"
target/release/weightkin-simhub bench "$dir" --models "$n" --all-pairs-sample "$sample"
