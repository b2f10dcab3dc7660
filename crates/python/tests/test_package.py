"""The package itself: its version is the CLI's, its wheel is abi3, its type stubs match the
native module and the API type-checks under mypy --strict (what editors complete from)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import weightkin
from conftest import Cli


def test_version_is_the_clis(cli: Cli, tmp_path: Path) -> None:
    assert cli.ok(["--version"], cwd=tmp_path).decode().split() == ["weightkin", weightkin.__version__]


def test_the_native_module_is_abi3() -> None:
    native = Path(weightkin._weightkin.__file__)
    assert native.name.endswith(".abi3.so"), native.name
    assert (native.parent / "py.typed").exists()
    assert (native.parent / "_weightkin.pyi").exists()


def test_public_items_have_docstrings() -> None:
    for name in weightkin.__all__:
        item = getattr(weightkin, name)
        assert item.__doc__ and item.__doc__.strip(), name


def _mypy() -> None:
    if os.environ.get("WEIGHTKIN_REQUIRE_OPTIONAL") == "1":
        importlib.import_module("mypy")
    else:
        pytest.importorskip("mypy")


def test_the_stubs_match_the_native_module() -> None:
    _mypy()
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "weightkin._weightkin"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_api_type_checks(tmp_path: Path) -> None:
    _mypy()
    use = tmp_path / "use.py"
    use.write_text(
        "import weightkin\n"
        "r: weightkin.Report = weightkin.compare('a', 'b', metrics=['cosine'], threads=2)\n"
        "v: weightkin.Verdict = r.verdict\n"
        "rows: list[dict[str, object]] = r.rows()\n"
        "info: weightkin.ModelInfo = weightkin.inspect('a')\n"
        "n: int = info.parameters\n"
    )
    for target in (["-p", "weightkin"], [str(use)]):
        out = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), *target],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stdout + out.stderr
