"""Reports through Python are the CLI's, byte for byte: the demo family, ad-hoc comparisons
of the demo's models and of a real model, the notebook view, the per-tensor tables."""

from __future__ import annotations

import html.parser
import importlib
import json
import os
from pathlib import Path
from typing import Optional

import pytest

import weightkin
from conftest import Cli

DEMO_VERDICTS = {
    "base vs fine-tuned copy": "derived",
    "base vs independent model": "independent",
    "base vs layer-subset model": "derived",
    "vision encoder vs vision-language model": "derived",
}


def test_the_demo_family_through_python(demo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    recipe = demo_dir / "demo.toml"
    report = weightkin.audit(recipe, out=tmp_path / "py")
    assert report.verdicts == DEMO_VERDICTS
    assert all(isinstance(v, weightkin.Verdict) for v in report.verdicts.values())
    # The components of the VLM comparison: the vision tower is derived, the rest has no
    # counterpart in the encoder.
    vlm = report.comparisons[3]
    assert [(k.name, k.verdict) for k in vlm.components] == [("vision tower", "derived")]
    assert vlm.verdict is weightkin.Verdict.DERIVED
    assert report.name == "demo: which models derive from base?"
    # The CLI's audit of the same recipe writes the same files, byte for byte.
    cli.ok(["audit", str(recipe), "--out", str(tmp_path / "cli")], cwd=tmp_path)
    names = sorted(p.name for p in (tmp_path / "cli").iterdir() if not p.name.startswith("."))
    assert names == ["report.html", "report.json", "report.md"]
    for name in names:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert report.to_json().encode() == (tmp_path / "cli" / "report.json").read_bytes()
    assert report.to_markdown().encode() == (tmp_path / "cli" / "report.md").read_bytes()
    assert report.to_html().encode() == (tmp_path / "cli" / "report.html").read_bytes()
    assert report.to_dict() == json.loads((tmp_path / "cli" / "report.json").read_text())
    assert report.formats == ["json", "md", "html"]


def test_a_recipe_as_text_reads_paths_from_the_current_directory(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo_dir)
    text = (demo_dir / "demo.toml").read_text()
    report = weightkin.audit(text, threads=1)
    assert report.verdicts == DEMO_VERDICTS
    # The same recipe bytes from a file give the same report.
    assert report.to_json() == weightkin.audit(Path("demo.toml")).to_json()


@pytest.mark.parametrize(
    "options, flags",
    [
        ({}, []),
        (
            {"metrics": ["cosine", "pearson", "cka"], "include": "model.layers.**", "exclude": ["**.mlp.**"]},
            ["-m", "cosine", "-m", "pearson", "-m", "cka", "--include", "model.layers.**", "--exclude", "**.mlp.**"],
        ),
        ({"align_units": True, "threads": 1}, ["--align-units", "--threads", "1"]),
    ],
)
def test_compare_is_byte_identical_to_the_cli(
    demo_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, options: dict, flags: list
) -> None:
    monkeypatch.chdir(demo_dir)
    report = weightkin.compare("base.safetensors", "finetuned.safetensors", **options)
    args = ["compare", "base.safetensors", "finetuned.safetensors", *flags]
    assert report.to_json().encode() == cli.ok([*args, "--format", "json"], cwd=demo_dir)
    assert report.to_markdown().encode() == cli.ok([*args, "--format", "md"], cwd=demo_dir)
    assert report.verdict == "derived"


def test_a_real_model(minilm: Path, cli: Cli, tmp_path: Path) -> None:
    info = weightkin.inspect(minilm)
    assert info.format == "safetensors"
    assert len(info.tensors) == 104
    assert sum(t.numel for t in info.tensors) == info.parameters
    assert {t.dtype for t in info.tensors} == {"F32", "I64"}
    q = next(t for t in info.tensors if t.name == "encoder.layer.0.attention.self.query.weight")
    assert q.shape == (384, 384)
    assert info.to_json().encode() == cli.ok(["inspect", "--json", str(minilm)], cwd=tmp_path)

    report = weightkin.compare(minilm, str(minilm), metrics="pearson")
    assert report.verdict == "derived"
    cli_json = cli.ok(["compare", str(minilm), str(minilm), "-m", "pearson", "--format", "json"], cwd=tmp_path)
    assert report.to_json().encode() == cli_json
    rows = report.rows()
    assert len(rows) == len(report.comparisons[0].tensors) == 103  # position_ids is I64
    assert all(r["equal_fraction"] == 1.0 for r in rows)
    # Pearson is 1 wherever it is defined (an all-zero bias has none).
    assert {r["pearson"] for r in rows} == {1.0, None}


class _Srcdoc(html.parser.HTMLParser):
    """The (unescaped) `srcdoc` of the first iframe."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.srcdoc: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "iframe" and self.srcdoc is None:
            self.srcdoc = dict(attrs).get("srcdoc")


def test_the_notebook_shows_the_html_report(demo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    report = weightkin.audit(demo_dir / "demo.toml")
    cli.ok(["audit", str(demo_dir / "demo.toml"), "--out", str(tmp_path)], cwd=tmp_path)
    shown = report._repr_html_()
    parser = _Srcdoc()
    parser.feed(shown)
    assert parser.srcdoc is not None, shown[:200]
    # The notebook's frame holds exactly the CLI's report.html.
    assert parser.srcdoc.encode() == (tmp_path / "report.html").read_bytes()
    # Sandboxed and styled apart: the page's stylesheet cannot restyle the notebook.
    assert shown.startswith("<iframe ") and 'sandbox=""' in shown
    assert "<style>" not in shown.split("srcdoc=")[0]
    assert report._repr_markdown_() == report.to_markdown()


def test_per_tensor_rows_as_tables(demo_dir: Path) -> None:
    report = weightkin.audit(demo_dir / "demo.toml")
    rows = report.rows()
    assert len(rows) == sum(len(c.tensors) for c in report.comparisons)
    assert list(rows[0])[:4] == ["comparison", "tensor", "class", "layer"]
    first = report.comparisons[0].tensors[0]
    assert rows[0]["tensor"] == first["name"]
    assert rows[0]["cka"] == first["values"]["cka"]
    assert rows[0]["z"] == first["evidence"]["z"]



def _table_module(name: str):  # type: ignore[no-untyped-def]
    """An optional dependency: skipped if missing, unless WEIGHTKIN_REQUIRE_OPTIONAL=1 (set by
    scripts/test-python.sh, which installs both) makes that a failure."""
    if os.environ.get("WEIGHTKIN_REQUIRE_OPTIONAL") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


def test_rows_as_a_pandas_dataframe(demo_dir: Path) -> None:
    pd = _table_module("pandas")
    report = weightkin.audit(demo_dir / "demo.toml")
    df = report.to_pandas()
    assert isinstance(df, pd.DataFrame)
    rows = report.rows()
    assert len(df) == len(rows)
    assert list(df.columns) == list(rows[0])
    by = df.groupby("comparison")["pearson"].median()
    assert by["base vs fine-tuned copy"] > 0.9 > abs(by["base vs independent model"])


def test_rows_as_an_arrow_table(demo_dir: Path) -> None:
    _table_module("pyarrow")
    report = weightkin.audit(demo_dir / "demo.toml")
    table = report.to_arrow()
    rows = report.rows()
    assert table.num_rows == len(rows)
    assert table.column_names == list(rows[0])
    assert table.column("tensor").to_pylist() == [r["tensor"] for r in rows]
    assert table.column("shape").to_pylist() == [r["shape"] for r in rows]
    assert table.column("pearson").to_pylist() == [r["pearson"] for r in rows]


def test_the_report_object(demo_dir: Path, tmp_path: Path) -> None:
    report = weightkin.compare(demo_dir / "base.safetensors", demo_dir / "independent.safetensors")
    assert report.verdict is weightkin.Verdict.INDEPENDENT
    assert str(report.verdict) == "independent"
    assert "independent" in repr(report)
    assert report.sentence.startswith("No component of `b`")
    assert {k.name for k in report.components} >= {"embeddings", "language model"}
    assert report.formats == ["json", "md"]
    written = report.write(tmp_path / "out", formats=["json", "html"])
    assert [p.name for p in written] == ["report.json", "report.html"]
    assert written[0].read_text() == report.to_json()
    assert "[[compare]]" in report.recipe
    assert [m["name"] for m in report.models] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown report format"):
        report.write(tmp_path / "x", formats=["pdf"])
    multi = weightkin.audit(demo_dir / "demo.toml")
    with pytest.raises(ValueError, match="4 comparisons"):
        multi.verdict
