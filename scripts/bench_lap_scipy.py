#!/usr/bin/env python3
"""scipy's linear_sum_assignment on the `uniform` matrices of `cargo bench -p weightkin-core
--bench lap` (BENCHMARKS.md, "Linear assignment"): the same values, drawn from SplitMix64
seeded with 1 (`weightkin_core::rng::Rng::new(1).uniform()`, row-major), vectorised with
numpy. Prints scipy's best of 3 and its optimal total, which the Rust benchmark's `total`
column must equal.

    pip install scipy numpy
    python3 scripts/bench_lap_scipy.py 1024 2048 4096
"""

import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment


def uniform(seed, count):
    """The first `count` values of `Rng::new(seed).uniform()`."""
    k = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)) + np.uint64(1)).astype(np.float64) / float(1 << 53)


def main():
    for n in map(int, sys.argv[1:] or ["1024", "2048", "4096"]):
        c = uniform(1, n * n).reshape(n, n)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            r, k = linear_sum_assignment(c)
            best = min(best, time.perf_counter() - t)
        print(f"uniform {n:>5}  scipy best of 3 {best:.3f} s  total {c[r, k].sum():.4f}")


if __name__ == "__main__":
    main()
