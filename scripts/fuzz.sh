#!/usr/bin/env bash
# Builds and runs every parser's cargo-fuzz target for a fixed number of executions
# (FUZZING.md).
#
#   scripts/fuzz.sh [RUNS] [TARGET...]      (default RUNS 10000000, every target)
#
# Targets: safetensors, gguf, pickle, checkpoint (zip, legacy and TorchScript archives),
# onnx, recipe, params. Each runs single-process with libFuzzer's -runs=RUNS, a 2 GiB RSS cap
# (-rss_limit_mb), a 10 s per-input timeout, and its committed seeds; the corpus grows in
# ${FUZZ_DIR:-$HOME/.cache/weightkin/fuzz}/corpus/TARGET (outside the repository), crashes
# land in .../artifacts/TARGET. Prints one line per target: executions, seconds, exec/s,
# peak RSS, and the result (0 = no crash, OOM or timeout). Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Temporary files of the file-based targets go to
# /dev/shm when it exists. FUZZ_SANITIZER=none builds without AddressSanitizer (2-3x the
# executions per second; panics, OOMs and timeouts are still findings, memory errors in
# `unsafe` code are not seen), FUZZ_NICE=N runs the fuzzer under `nice -n N`.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${1:-10000000}
shift || true
DIR=${FUZZ_DIR:-$HOME/.cache/weightkin/fuzz}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$DIR/target}
[ -d /dev/shm ] && export TMPDIR=/dev/shm
# target name, crate fuzz directory, fuzz binary, seed directories (relative to the crate)
TARGETS=(
  "safetensors crates/core/fuzz open seeds"
  "gguf plugins/format-gguf/fuzz parse ../tests/golden"
  "pickle plugins/format-pytorch/fuzz pickle ../tests/fixtures"
  "checkpoint plugins/format-pytorch/fuzz checkpoint ../tests/fixtures"
  "onnx plugins/format-onnx/fuzz parse ../tests/fixtures"
  "recipe crates/runner/fuzz recipe seeds"
  "params crates/plugin-abi/fuzz params seeds"
)
want=" $* "
for t in "${TARGETS[@]}"; do
  set -- $t
  name=$1 crate=$2 bin=$3
  shift 3
  [ "$want" != "  " ] && [[ "$want" != *" $name "* ]] && continue
  (cd "$crate" && cargo +nightly fuzz build -O -s "${FUZZ_SANITIZER:-address}" "$bin" > "$DIR/$name.build.log" 2>&1) \
    || { echo "$name: build failed, see $DIR/$name.build.log"; continue; }
  corpus="$DIR/corpus/$name" artifacts="$DIR/artifacts/$name/"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  for s in "$@"; do seeds+=("$ROOT/$crate/$s"); done
  t0=$(date +%s)
  nice -n "${FUZZ_NICE:-0}" "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$bin" "$corpus" "${seeds[@]}" \
    -runs="$RUNS" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts" > "$DIR/$name.log" 2>&1
  rc=$?
  t1=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$DIR/$name.log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$DIR/$name.log" | tail -1)
  echo "$name: ${execs:-?} executions in $((t1 - t0)) s ($(( ${execs:-0} / (t1 - t0 + 1) )) exec/s), peak RSS ${rss:-?} MB, exit $rc, artifacts: $(ls "$artifacts" | wc -l)"
done
