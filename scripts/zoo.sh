#!/usr/bin/env bash
# Builds the model zoo (crates/zoo): small models really trained on generated data, with a
# manifest of their lineage, for validating weightkin's verdicts on trained weights.
#
# Usage: scripts/zoo.sh [--subset small|full] [--jobs N]     (default: the full zoo)
# Cache: ${WEIGHTKIN_ZOO:-~/.cache/weightkin/zoo}/<generator version>/. A zoo already built
# there and verified (every file's BLAKE3 matches the manifest) is not built again; building
# the full zoo after the small subset trains only the missing models. Offline and
# deterministic: two builds give identical files. Prints the zoo directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

subset=full
jobs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --subset) subset=$2; shift 2 ;;
    --jobs|-j) jobs=(--jobs "$2"); shift 2 ;;
    *) echo "usage: scripts/zoo.sh [--subset small|full] [--jobs N]" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet -p weightkin-zoo
bin=target/release/weightkin-zoo
dir="${WEIGHTKIN_ZOO:-$HOME/.cache/weightkin/zoo}/$("$bin" version)"
if "$bin" verify "$dir" --subset "$subset" >/dev/null 2>&1; then
  echo "zoo: $subset subset cached in $dir" >&2
else
  "$bin" build "$dir" --subset "$subset" "${jobs[@]}" >&2
fi
echo "$dir"
