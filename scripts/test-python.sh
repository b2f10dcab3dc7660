#!/usr/bin/env bash
# The Python package (crates/python), as scripts/test.sh and CI run it:
#   1. a fresh virtual environment (outside the source tree's packages: target/python-venv),
#      with maturin, pytest, and the optional dependencies the tests exercise (pandas,
#      pyarrow, mypy) and Ray (a local Ray runs `python -m weightkin.lineage`);
#   2. the CLI (target/release/weightkin), which the tests compare reports against, and the
#      simulated-hub generator (target/release/weightkin-simhub) for the lineage test;
#   3. the wheel, built by maturin (abi3: one wheel for CPython >= 3.9), installed;
#   4. the pytest suite (crates/python/tests), every optional path required.
#
# Usage: scripts/test-python.sh [PYTEST ARGS...]
# Needs python3 (>= 3.9) with venv, and PyPI (or a pip cache holding those packages).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-venv
wheels=target/wheels

rm -rf "$venv" "$wheels"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  'maturin>=1.9.4,<2' pytest pandas pyarrow mypy 'ray>=2.40,<3'

cargo build --release --bin weightkin
cargo build --release -p weightkin-lineage --bin weightkin-simhub

start=$(date +%s)
"$venv/bin/maturin" build --release --quiet -m crates/python/Cargo.toml --out "$wheels"
wheel=$(ls "$wheels"/weightkin-*.whl)
echo "python: built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) in $(($(date +%s) - start)) s" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"

# From outside the source tree, so that `import weightkin` is the installed wheel's.
cd target
WEIGHTKIN_BIN="$PWD/release/weightkin" WEIGHTKIN_SIMHUB_BIN="$PWD/release/weightkin-simhub" \
  WEIGHTKIN_REQUIRE_OPTIONAL=1 RAY_USAGE_STATS_ENABLED=0 \
  "python-venv/bin/python" -m pytest -q -p no:cacheprovider ../crates/python/tests "$@"
