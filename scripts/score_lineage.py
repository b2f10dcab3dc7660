#!/usr/bin/env python3
"""Scores a lineage graph (graph.json of `weightkin lineage` or `python -m weightkin.lineage
run`) against a simulated hub's truth (manifest.json of `weightkin-simhub generate`).

    python3 scripts/score_lineage.py HUB_DIR GRAPH_JSON

An oracle written apart from the Rust scorer (`simhub::score`), with the same definitions:
models sharing a root share ancestry; a pair's expected Pearson is the cosine of the two
models' coefficients over the independent sources; precision = derived edges between
related models / derived edges; recall = related pairs with expected Pearson >= the audit's
power limit (0.12: VALIDATION.md finds fine-tunes down to 0.124; the Rust scorer rounds down) found derived / all of them; true families are the
connected components of parent links, recovered when a graph family has exactly their
members; structure = true parent links that are tree edges. Graph nodes are matched to truth
models by name, or by their file under HUB_DIR/models when the graph names models by path
(the Ray entry point).
Prints one JSON object.
"""
import json
import math
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

POWER_LIMIT = 0.12
BINS = [POWER_LIMIT, 0.25, 0.5, 0.9]


def main() -> None:
    hub, graph_path = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((hub / "manifest.json").read_text())
    graph = json.loads(graph_path.read_text())
    ms = {m["name"]: m for m in manifest["models"]}

    def name(n: str) -> str:
        # A truth name, or a model file of the hub: models/<name>.<format>.
        if n in ms:
            return n
        p = Path(n)
        try:
            rel = str(p.relative_to(hub / "models"))
        except ValueError:
            rel = p.name
        for suffix in (".safetensors", ".gguf", ".pt"):
            rel = rel.removesuffix(suffix)
        return rel

    key = lambda a, b: tuple(sorted((name(a), name(b))))
    derived = {key(e["a"], e["b"]) for e in graph["edges"] if e["verdict"] == "derived"}
    candidates = {key(e["a"], e["b"]) for e in graph["edges"]}
    by_root = defaultdict(list)
    for m in manifest["models"]:
        for r in m["roots"]:
            by_root[r].append(m)
    norm = {n: math.sqrt(sum(c * c for c in m["sources"].values())) for n, m in ms.items()}
    related = {}
    for members in by_root.values():
        for a, b in combinations(members, 2):
            k = tuple(sorted((a["name"], b["name"])))
            if k not in related:
                dot = sum(c * b["sources"].get(s, 0.0) for s, c in a["sources"].items())
                related[k] = dot / (norm[a["name"]] * norm[b["name"]])
    correct = sum(1 for p in derived if p in related)
    detectable = {p: r for p, r in related.items() if r >= POWER_LIMIT}
    found = sum(1 for p in detectable if p in derived)
    searched = sum(1 for p in detectable if p in candidates)
    bins = []
    for i, lo in enumerate(BINS):
        hi = BINS[i + 1] if i + 1 < len(BINS) else 2.0
        ps = [p for p, r in detectable.items() if lo <= r < hi]
        bins.append({"from": lo, "pairs": len(ps), "found": sum(1 for p in ps if p in derived)})
    # True families: components of parent links.
    parent = {n: n for n in ms}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    links = set()
    for m in manifest["models"]:
        for p in m["parents"]:
            if p in ms:
                a, b = find(m["name"]), find(p)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                links.add(tuple(sorted((m["name"], p))))
    true_families = defaultdict(set)
    for n in ms:
        true_families[find(n)].add(n)
    found_families = {frozenset(name(x) for x in f) for f in graph["families"]}
    exact = [f for f in true_families.values() if frozenset(f) in found_families]
    tree = sum(1 for e in graph["edges"] if e.get("tree") and key(e["a"], e["b"]) in links)
    ratio = lambda a, b: a / b if b else 1.0
    print(json.dumps({
        "models": len(ms),
        "derived_edges": len(derived),
        "correct_edges": correct,
        "precision": ratio(correct, len(derived)),
        "detectable_pairs": len(detectable),
        "found_pairs": found,
        "recall": ratio(found, len(detectable)),
        "recall_by_pearson": bins,
        "search_recall": ratio(searched, len(detectable)),
        "candidates": len(candidates),
        "families": len(true_families),
        "family_accuracy": ratio(len(exact), len(true_families)),
        "model_family_accuracy": ratio(sum(len(f) for f in exact), len(ms)),
        "structure_accuracy": ratio(tree, len(links)),
    }, indent=1))


if __name__ == "__main__":
    main()
