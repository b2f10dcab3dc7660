#!/usr/bin/env python3
"""Regenerates lap_scipy.json: scipy's optimal assignments of seeded random cost matrices.

The Rust tests (tests/core/lap.rs) solve the same matrices with `weightkin_core::lap` and
compare, so that the reference is an independent implementation
(`scipy.optimize.linear_sum_assignment`) rather than our own code. Python is needed only to
regenerate the file, never to run the tests.

    pip install scipy numpy
    python3 crates/core/tests/golden/gen_lap_scipy.py > crates/core/tests/golden/lap_scipy.json

The matrices are not stored: each is `rows × cols` values in row-major order drawn from
SplitMix64 seeded with `seed` — the stream of `weightkin_core::rng::Rng` — as
`Rng::uniform` (kind "uniform": (0, 1] on a 2^-53 grid) or `Rng::below(10)` (kind "int10":
integers 0..=9, many ties, so only the total is compared). `maximize` is passed to scipy.
`col_for_row[r]` is the column of row r, or null for a row left out (rows > cols); it is
omitted for "int10", whose optimum is not unique.
"""

import json

import numpy as np
import scipy
from scipy.optimize import linear_sum_assignment

MASK = (1 << 64) - 1


def splitmix64(seed):
    """`Rng::next_u64`: Steele, Lea & Flood's SplitMix64."""
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def matrix(seed, rows, cols, kind):
    g = splitmix64(seed)
    n = rows * cols
    if kind == "uniform":
        vals = [((next(g) >> 11) + 1) / float(1 << 53) for _ in range(n)]
    elif kind == "int10":
        vals = [float(next(g) % 10) for _ in range(n)]
    else:
        raise ValueError(kind)
    return np.array(vals, dtype=np.float64).reshape(rows, cols)


# (seed, rows, cols, kind, maximize)
CASES = [
    (1, 50, 50, "uniform", False),
    (2, 40, 60, "uniform", False),
    (3, 60, 40, "uniform", False),
    (4, 200, 200, "uniform", False),
    (5, 150, 300, "uniform", False),
    (6, 300, 150, "uniform", True),
    (7, 80, 120, "uniform", True),
    (8, 1000, 1000, "uniform", False),
    (9, 100, 100, "int10", False),
    (10, 70, 130, "int10", True),
]


def main():
    out = []
    for seed, rows, cols, kind, maximize in CASES:
        c = matrix(seed, rows, cols, kind)
        r, k = linear_sum_assignment(c, maximize=maximize)
        total = float(c[r, k].sum())
        case = dict(seed=seed, rows=rows, cols=cols, kind=kind, maximize=maximize, total=total)
        if kind == "uniform":
            col_for_row = [None] * rows
            for i, j in zip(r.tolist(), k.tolist()):
                col_for_row[i] = j
            case["col_for_row"] = col_for_row
        out.append(case)
    doc = {"generator": f"scipy {scipy.__version__}, numpy {np.__version__}", "cases": out}
    print(json.dumps(doc, separators=(",", ":")))


if __name__ == "__main__":
    main()
