"""``python -m weightkin.lineage`` through a real local Ray, on a simulated hub of about 100
models in known family trees (``weightkin-simhub generate``): the graph must recover the
derived pairs (precision and recall checked against the hub's truth by an oracle written
here, not the Rust scorer), and be byte-identical to the CLI's ``weightkin sketch`` +
``weightkin lineage`` on the same models — the Ray layer only spreads the same work."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import REPO, Cli

#: The audit's power limit (VALIDATION.md): shared-ancestry pairs whose tensors are expected
#: to correlate at least this much must be found.
POWER_LIMIT = 0.124


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    simhub = Path(os.environ.get("WEIGHTKIN_SIMHUB_BIN", REPO / "target" / "release" / "weightkin-simhub"))
    if not simhub.is_file():
        pytest.fail(f"no weightkin-simhub binary at {simhub}: scripts/test-python.sh builds it")
    d = tmp_path_factory.mktemp("hub")
    subprocess.run([str(simhub), "generate", str(d), "--models", "100", "--seed", "21"], check=True, capture_output=True, timeout=600)
    return d


def lineage(args: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weightkin.lineage", "--num-cpus", "2", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def ray_run(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, List[str], subprocess.CompletedProcess[str]]:
    manifest = json.loads((hub / "manifest.json").read_text())
    models = [str(hub / "models" / f"{m['name']}.safetensors") for m in manifest["models"]]
    work = tmp_path_factory.mktemp("ray")
    (work / "models.txt").write_text("# the simulated hub\n" + "\n".join(models) + "\n")
    out = work / "out"
    run = lineage(["run", "--models", "models.txt", "--out", str(out), "--batch", "12"], work)
    return out, models, run


def truth_pairs(hub: Path) -> Tuple[Dict[Tuple[str, str], float], Dict[str, str]]:
    """Shared-ancestry pairs with their expected Pearson (cosine of the models' coefficients
    over the independent sources), and each model file's path → truth name."""
    manifest = json.loads((hub / "manifest.json").read_text())
    ms = manifest["models"]
    by_path = {str(hub / "models" / f"{m['name']}.safetensors"): m["name"] for m in ms}
    related = {}
    for a, b in combinations(ms, 2):
        if not set(a["roots"]) & set(b["roots"]):
            continue
        dot = sum(c * b["sources"].get(k, 0.0) for k, c in a["sources"].items())
        na = math.sqrt(sum(c * c for c in a["sources"].values()))
        nb = math.sqrt(sum(c * c for c in b["sources"].values()))
        related[tuple(sorted((a["name"], b["name"])))] = dot / (na * nb)
    return related, by_path


def test_ray_lineage_recovers_the_hub(hub: Path, ray_run) -> None:
    out, models, run = ray_run
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout[: run.stdout.rindex("}") + 1])
    assert summary["models_sketched"] == len(models) and summary["failed"] == {}
    assert summary["shards_written"] == math.ceil(len(models) / 12)
    graph = json.loads((out / "graph.json").read_text())
    assert "<svg" in (out / "graph.html").read_text()
    related, name = truth_pairs(hub)
    derived = {tuple(sorted((name[e["a"]], name[e["b"]]))) for e in graph["edges"] if e["verdict"] == "derived"}
    assert derived, "no derived edge at all"
    precision = sum(p in related for p in derived) / len(derived)
    detectable = [p for p, rho in related.items() if rho >= POWER_LIMIT]
    recall = sum(p in derived for p in detectable) / len(detectable)
    assert precision >= 0.99, (precision, sorted(derived - set(related))[:5])
    assert recall >= 0.99, (recall, sorted(set(detectable) - derived)[:5])
    # Far fewer audits than pairs: the point of the search.
    n = len(models)
    assert len(graph["edges"]) < n * (n - 1) // 2 / 5


def test_ray_graph_is_the_clis(cli: Cli, ray_run, tmp_path: Path) -> None:
    out, models, run = ray_run
    assert run.returncode == 0, run.stderr
    cli.ok(["sketch", *models, "--out", str(tmp_path / "store.parquet")], tmp_path)
    cli.ok(["lineage", str(tmp_path / "store.parquet"), "--out", str(tmp_path / "graph")], tmp_path)
    assert (out / "graph.json").read_bytes() == (tmp_path / "graph" / "graph.json").read_bytes()
    assert (out / "graph.html").read_bytes() == (tmp_path / "graph" / "graph.html").read_bytes()


def test_rerun_keeps_shards_and_a_bad_model_fails_its_batch(hub: Path, ray_run, tmp_path: Path) -> None:
    out, models, run = ray_run
    assert run.returncode == 0, run.stderr
    (tmp_path / "models.txt").write_text("\n".join(models[:4]) + "\n")
    first = lineage(["sketch", "--models", "models.txt", "--out", "store", "--batch", "2"], tmp_path)
    assert first.returncode == 0, first.stderr
    missing = tmp_path / "no-such-model.safetensors"
    (tmp_path / "models.txt").write_text("\n".join(models[:4] + [str(missing)]) + "\n")
    again = lineage(["sketch", "--models", "models.txt", "--out", "store", "--batch", "2"], tmp_path)
    assert again.returncode == 1
    summary = json.loads(again.stdout[: again.stdout.rindex("}") + 1])
    assert summary["shards_kept"] == 2 and summary["shards_written"] == 0
    failed = json.loads((tmp_path / "store" / "failed.json").read_text())
    assert list(failed) == ["shard-00002.parquet"]
    assert any("no-such-model.safetensors" in m for m in failed["shard-00002.parquet"]), failed
    assert "failed.json" in again.stderr


def test_empty_model_list_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "models.txt").write_text("# nothing\n\n")
    r = lineage(["sketch", "--models", "models.txt", "--out", "store"], tmp_path)
    assert r.returncode == 1 and "model list is empty" in r.stderr
