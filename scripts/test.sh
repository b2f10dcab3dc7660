#!/usr/bin/env bash
# The whole test suite, as the README and CI run it:
#   1. fetch the real public model fixtures (sha256-pinned, cached outside the repo) and
#      install headless Chromium if it is missing (the HTML test renders the report);
#   2. run every test of every crate in release mode (snapshot tests included);
#   3. fail on snapshot files no test referenced (stale snapshots) or left-over .snap.new;
#   4. the Python package: its wheel built by maturin into a fresh virtual environment,
#      installed, and its pytest suite run against the CLI (scripts/test-python.sh).
# Arguments are cargo test filters; a filtered run skips steps 3 and 4.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-fixtures.sh >/dev/null

# The HTML report is checked in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium for the HTML report test" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

refs=$(mktemp)
trap 'rm -f "$refs"' EXIT
INSTA_SNAPSHOT_REFERENCES_FILE="$refs" cargo test --release --workspace "$@"

# Only judge staleness on a full run (no filter arguments).
if [[ $# -eq 0 ]]; then
  stale=0
  while IFS= read -r snap; do
    if ! grep -qxF "$(realpath "$snap")" <(xargs -r -d '\n' realpath < "$refs" | sort -u); then
      echo "unreferenced snapshot: $snap (delete it or restore its test)" >&2
      stale=1
    fi
  done < <(find . -path ./target -prune -o -name '*.snap' -print)
  if find . -path ./target -prune -o \( -name '*.snap.new' -o -name '*.pending-snap' \) -print | grep -q .; then
    echo "pending snapshots (.snap.new) left in the tree: review them" >&2
    stale=1
  fi
  [[ $stale -eq 0 ]] || exit 1
  echo "snapshots: every snapshot file is referenced by a test"
  scripts/test-python.sh
fi
