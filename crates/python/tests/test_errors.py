"""Errors are Python exceptions of the WeightkinError hierarchy, with the CLI's message
chain and what the error names: the recipe's line and column, the model file and tensor."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import weightkin
from conftest import Cli, f32, safetensors

RECIPE = """[audit]
name = "broken"
[models.a]
path = "a.safetensors"
[models.b]
path = "b.safetensors"
[[compare]]
a = "a"
b = "b"
"""


def good_model() -> bytes:
    return safetensors({"w": ([2, 2], f32([1.0, 2.0, 3.0, 4.0]))})


def cli_text(stderr: str) -> str:
    """The CLI's error chain without its `error: ` prefix and trailing newline."""
    assert stderr.startswith("error: ") and stderr.endswith("\n"), stderr
    return stderr[len("error: ") : -1]


def test_a_bad_recipe_names_line_and_column(tmp_path: Path, cli: Cli) -> None:
    # Absolute paths here: the recipe's path is in every diagnostic.
    (tmp_path / "a.safetensors").write_bytes(good_model())
    # Two problems, both collected: an unknown model and an unknown metric.
    bad = RECIPE.replace('b = "b"', 'b = "bee"\nmetrics = ["cosine", "pearsn"]')
    (tmp_path / "r.toml").write_text(bad)
    with pytest.raises(weightkin.RecipeError) as caught:
        weightkin.audit(tmp_path / "r.toml", out=tmp_path / "out")
    e = caught.value
    assert isinstance(e, weightkin.WeightkinError)
    assert str(e) == cli_text(cli.error(["audit", str(tmp_path / "r.toml")], cwd=tmp_path))
    assert e.path == str(tmp_path / "r.toml")
    assert len(e.diagnostics) == 2
    assert (e.line, e.column) == (e.diagnostics[0].line, e.diagnostics[0].column)
    for d in e.diagnostics:
        assert f"{e.path}:{d.line}:{d.column}: {d.message.splitlines()[0]}" in str(e)
    assert [d.line for d in e.diagnostics] == [9, 10]
    assert "bee" in e.diagnostics[0].message
    assert "pearsn" in e.diagnostics[1].message and "pearson" in e.diagnostics[1].message
    assert not (tmp_path / "out").exists()


def test_a_bad_recipe_given_as_text(tmp_path: Path) -> None:
    with pytest.raises(weightkin.RecipeError) as caught:
        weightkin.audit(RECIPE.replace("[audit]", "[audit]\nnmae = 1"))
    assert caught.value.path == "<string>"
    assert caught.value.line == 2
    assert str(caught.value).startswith("recipe <string> has ")


def test_a_missing_recipe(tmp_path: Path, cli: Cli) -> None:
    with pytest.raises(weightkin.RecipeError) as caught:
        weightkin.audit(tmp_path / "nope.toml")
    assert caught.value.line is None and caught.value.diagnostics == []
    assert str(caught.value) == cli_text(cli.error(["audit", str(tmp_path / "nope.toml")], cwd=tmp_path))


def test_a_missing_model_file(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths, as the CLI is given them: the errors name the files as given.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(good_model())
    (tmp_path / "r.toml").write_text(RECIPE)
    with pytest.raises(weightkin.ModelNotFoundError) as caught:
        weightkin.audit("r.toml")
    e = caught.value
    assert isinstance(e, weightkin.ModelFileError) and isinstance(e, FileNotFoundError)
    assert (e.model, e.tensor) == ("b", None)
    assert e.file == "b.safetensors"
    assert str(e) == cli_text(cli.error(["audit", "r.toml"], cwd=tmp_path))
    assert e.messages[0] == "cannot open model `b` (b.safetensors)"
    # The same through compare and inspect.
    with pytest.raises(FileNotFoundError):
        weightkin.compare(tmp_path / "a.safetensors", tmp_path / "missing.safetensors")
    with pytest.raises(weightkin.ModelNotFoundError) as caught:
        weightkin.inspect(tmp_path / "missing.safetensors")
    assert str(caught.value) == cli_text(cli.error(["inspect", str(tmp_path / "missing.safetensors")], cwd=tmp_path))


@pytest.mark.parametrize(
    "name, make",
    [
        # A header length of 2^40 bytes in a 60-byte file.
        ("header past end", lambda good: struct.pack("<Q", 1 << 40) + good[8:]),
        ("truncated", lambda good: good[:-5]),
        ("not a model", lambda good: b"GGUF\x03\x00\x00\x00 nonsense"),
        ("json bomb", lambda good: struct.pack("<Q", 64) + b"[" * 64),
    ],
)
def test_hostile_model_files(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, make) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    good = good_model()
    (tmp_path / "a.safetensors").write_bytes(good)
    (tmp_path / "b.safetensors").write_bytes(make(good))
    (tmp_path / "r.toml").write_text(RECIPE)
    with pytest.raises(weightkin.ModelFileError) as caught:
        weightkin.audit("r.toml", out="out")
    e = caught.value
    assert not isinstance(e, FileNotFoundError)
    assert e.model == "b"
    assert e.file == "b.safetensors"
    assert str(e) == cli_text(cli.error(["audit", "r.toml"], cwd=tmp_path))
    assert not (tmp_path / "out").exists()


def test_a_hostile_tensor_entry_names_the_tensor(tmp_path: Path, cli: Cli) -> None:
    # Tensor `w` claims 16 bytes at offsets 0..100.
    good = good_model()
    bad = good.replace(b"[0, 16]", b"[0, 99]")
    assert bad != good
    (tmp_path / "a.safetensors").write_bytes(good)
    (tmp_path / "b.safetensors").write_bytes(bad)
    with pytest.raises(weightkin.ModelFileError) as caught:
        weightkin.compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    e = caught.value
    assert (e.model, e.tensor, e.file) == ("b", "w", str(tmp_path / "b.safetensors"))
    args = ["compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    assert str(e) == cli_text(cli.error(args, cwd=tmp_path))


def test_bad_arguments(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "a.safetensors").write_bytes(good_model())
    a = tmp_path / "a.safetensors"
    # An unknown metric is a recipe error, as on the command line.
    with pytest.raises(weightkin.RecipeError) as caught:
        weightkin.compare(a, a, metrics="cosin")
    assert caught.value.path == "<command line>"
    assert str(caught.value) == cli_text(cli.error(["compare", str(a), str(a), "-m", "cosin"], cwd=tmp_path))
    with pytest.raises(ValueError, match="threads"):
        weightkin.compare(a, a, threads=0)
    with pytest.raises(TypeError):
        weightkin.compare(a, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        weightkin.compare(a, a, include=[1])  # type: ignore[list-item]
    (tmp_path / "x.bin").write_bytes(b"hello")
    with pytest.raises(weightkin.ModelFileError, match="no registered format recognises this file") as c2:
        weightkin.inspect(tmp_path / "x.bin")
    assert c2.value.file == str(tmp_path / "x.bin")
