"""Hub-scale lineage search on Ray: ``python -m weightkin.lineage``.

Three steps, the same ones ``weightkin sketch`` and ``weightkin lineage`` run on one machine,
with the per-model and per-pair work spread over Ray tasks:

1. ``sketch``: the model list is cut into batches; each batch is one Ray task that sketches
   its models (one streaming pass each) and writes one Parquet shard of the store
   (``shard-NNNNN.parquet``, written under a temporary name and renamed, so a retried or
   repeated task never leaves half a shard). Shards already present are kept: re-running
   after a failure only sketches what is missing.
2. ``search``: the driver reads the store and runs the candidate search (blocked by
   architecture, calibrated against the search's own null; see the README's lineage
   section), then audits every candidate pair exactly as ``weightkin compare`` does, one Ray
   task per pair, and writes ``graph.json`` and ``graph.html``.
3. ``run``: both.

``--address`` is handed to ``ray.init``: leave it out on a laptop (a local Ray is started),
``auto`` (or ``ray://HEAD:10001``) on a cluster. Nothing else changes between the two; the
models must be readable at the same paths on every node (a shared file system, or ``hf://``
ids, which each node resolves from its own hub cache).

Failures: a task that dies (a node lost, a worker killed) is retried up to ``--retries``
times by Ray; a model file that cannot be read is not retried — its batch's error, naming
the file, is written to ``failed.json`` beside the shards and the command exits with 1 after
the other batches finish.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _weightkin
from ._errors import HubError, WeightkinError

__all__ = ["main", "read_models", "search", "sketch"]

#: Models per sketch task (one Parquet shard each).
DEFAULT_BATCH = 16


def read_models(path: str) -> List[str]:
    """Model paths or ``hf://`` ids, one per line of the file at ``path`` (``-``: standard
    input); blank lines and ``#`` comments skipped, relative paths taken relative to the
    list's directory."""
    if path == "-":
        text, base = sys.stdin.read(), Path.cwd()
    else:
        text, base = Path(path).read_text(encoding="utf-8"), Path(path).resolve().parent
    models = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("hf://") and not os.path.isabs(line):
            line = str(base / line)
        models.append(line)
    if not models:
        raise WeightkinError([f"{path}: the model list is empty"])
    return models


def _ray(address: Optional[str], num_cpus: Optional[int]) -> Any:
    try:
        ray = importlib.import_module("ray")
    except ImportError as e:  # pragma: no cover - the tests install ray
        raise WeightkinError(["weightkin.lineage needs Ray: pip install ray"]) from e
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(address=address, **kwargs)
    return ray


def _sketch_batch(
    paths: Sequence[str], shard: str, samples: Optional[int], seed: Optional[int], threads: int
) -> Tuple[str, int, Optional[List[str]]]:
    """One Ray task: sketches ``paths`` into ``shard``; (shard, models, error chain or None)."""
    tmp = f"{shard}.tmp-{os.getpid()}"
    try:
        n = _weightkin.sketch_store(list(paths), tmp, samples, seed, threads)
        os.replace(tmp, shard)
        return shard, n, None
    except HubError:
        raise  # transient (network, hub): Ray retries it
    except WeightkinError as e:
        return shard, 0, list(e.messages)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _audit(a: str, b: str, threads: int) -> Tuple[str, Optional[float], str]:
    """One Ray task: the exact audit of a candidate pair."""
    return _weightkin.audit_refs(a, b, threads)


def sketch(
    models: Sequence[str],
    out: str,
    *,
    batch: int = DEFAULT_BATCH,
    samples: Optional[int] = None,
    seed: Optional[int] = None,
    retries: int = 3,
    task_threads: int = 1,
    address: Optional[str] = None,
    num_cpus: Optional[int] = None,
) -> Dict[str, Any]:
    """Sketches ``models`` as Ray tasks into the store directory ``out`` (Parquet shards);
    returns a summary (shards written and kept, models, failures)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    ray = _ray(address, num_cpus)
    os.makedirs(out, exist_ok=True)
    task = ray.remote(num_cpus=task_threads, max_retries=retries, retry_exceptions=[HubError])(
        _sketch_batch
    )
    pending, kept = [], 0
    for i in range(0, len(models), batch):
        shard = os.path.join(out, f"shard-{i // batch:05d}.parquet")
        if os.path.exists(shard):
            kept += 1
            continue
        pending.append(task.remote(models[i : i + batch], shard, samples, seed, task_threads))
    failures: Dict[str, List[str]] = {}
    written, sketched = 0, 0
    for shard, n, error in ray.get(pending):
        if error is None:
            written, sketched = written + 1, sketched + n
        else:
            failures[os.path.basename(shard)] = error
    failed = os.path.join(out, "failed.json")
    if failures:
        with open(failed, "w", encoding="utf-8") as f:
            json.dump(failures, f, indent=2, sort_keys=True)
    elif os.path.exists(failed):
        os.unlink(failed)
    return {"shards_written": written, "shards_kept": kept, "models_sketched": sketched, "failed": failures}


def search(
    store: str,
    out: str,
    *,
    alpha: Optional[float] = None,
    retries: int = 3,
    task_threads: int = 1,
    address: Optional[str] = None,
    num_cpus: Optional[int] = None,
) -> Dict[str, Any]:
    """Candidate search over the store, exact audits of the candidates as Ray tasks, and the
    lineage graph written into ``out``; returns ``graph.json`` as a dict."""
    ray = _ray(address, num_cpus)
    index = _weightkin.LineageIndex(store)
    found = json.loads(index.search(alpha))
    task = ray.remote(num_cpus=task_threads, max_retries=retries, retry_exceptions=[HubError])(_audit)
    candidates = [(c["a"], c["b"]) for c in found["candidates"]]
    refs = [(index.audit_ref(a), index.audit_ref(b)) for a, b in candidates]
    results = ray.get([task.remote(ra, rb, task_threads) for ra, rb in refs])
    audited = [(a, b, v, p, s) for (a, b), (v, p, s) in zip(candidates, results)]
    graph: Dict[str, Any] = json.loads(index.graph(audited, out))
    return graph


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line (``python -m weightkin.lineage --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m weightkin.lineage",
        description="Hub-scale lineage search on Ray: sketches as Ray tasks, candidate search, audits of candidates as Ray tasks, the lineage graph.",
    )
    p.add_argument("--address", help="Ray address for ray.init (default: start a local Ray; 'auto' on a cluster)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--retries", type=int, default=3, help="Ray retries of a task that dies (default 3)")
    p.add_argument("--task-threads", type=int, default=1, help="threads (and Ray CPUs) per task (default 1)")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("sketch", "run"):
        s = sub.add_parser(name, help="sketch models into a store" if name == "sketch" else "sketch, then search")
        s.add_argument("--models", required=True, help="file listing model paths or hf:// ids, one per line ('-': stdin)")
        s.add_argument("--out", required=True, help="store directory (run: also the graph's)")
        s.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"models per task and shard (default {DEFAULT_BATCH})")
        s.add_argument("--samples", type=int, help="values sampled per tensor (default: the sketch's)")
        s.add_argument("--seed", type=int, help="seed of the sampled coordinates (default: the sketch's)")
        if name == "run":
            s.add_argument("--alpha", type=float, help="family-wise rate of unrelated candidates")
    s = sub.add_parser("search", help="candidate search, audits and the lineage graph")
    s.add_argument("--store", required=True, help="store: a Parquet file or a directory of shards")
    s.add_argument("--out", required=True, help="directory for graph.json and graph.html")
    s.add_argument("--alpha", type=float, help="family-wise rate of unrelated candidates")
    args = p.parse_args(argv)
    try:
        if args.command in ("sketch", "run"):
            models = read_models(args.models)
            summary = sketch(
                models, args.out, batch=args.batch, samples=args.samples, seed=args.seed,
                retries=args.retries, task_threads=args.task_threads, address=args.address, num_cpus=args.num_cpus,
            )
            print(json.dumps(summary, indent=2, sort_keys=True))
            if summary["failed"]:
                print(f"error: {len(summary['failed'])} batch(es) failed, see {args.out}/failed.json", file=sys.stderr)
                return 1
        if args.command in ("search", "run"):
            store = args.store if args.command == "search" else args.out
            graph = search(
                store, args.out, alpha=args.alpha,
                retries=args.retries, task_threads=args.task_threads, address=args.address, num_cpus=args.num_cpus,
            )
            families = [f for f in graph.get("families", []) if len(f) > 1]
            print(f"{len(graph.get('nodes', []))} models, {len(graph.get('edges', []))} audited pairs, "
                  f"{len(families)} families of two or more; graph.json and graph.html in {args.out}")
    except WeightkinError as e:
        print(f"error: {e.messages[0]}", file=sys.stderr)
        for m in e.messages[1:]:
            print(f"  caused by: {m}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
