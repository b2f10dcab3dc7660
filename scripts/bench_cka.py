#!/usr/bin/env python3
"""numpy/BLAS baseline for weightkin's CKA benchmark (plugins/metrics/benches/cka.rs).

Same estimator (debiased linear CKA, rows = examples, Kornblith et al.'s feature-space form),
same shapes, f32 matrix products like weightkin's. Usage:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/bench_cka.py

(this machine sets OPENBLAS_CORETYPE for old OpenBLAS builds; it slows a current numpy, so it
is unset for the benchmark only). Prints the BLAS in use, then seconds per CKA.
"""
import time

import numpy as np


def debiased_cka(x, y):
    x = x - x.mean(0, keepdims=True, dtype=np.float64).astype(np.float32)
    y = y - y.mean(0, keepdims=True, dtype=np.float64).astype(np.float32)
    n = x.shape[0]
    t_xy = np.square(x.T @ y, dtype=np.float64).sum()
    t_xx = np.square(x.T @ x, dtype=np.float64).sum()
    t_yy = np.square(y.T @ y, dtype=np.float64).sum()
    dx = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    dy = np.einsum("ij,ij->i", y, y, dtype=np.float64)

    def h(t, d1, d2):
        return t - n / (n - 2) * d1.dot(d2) + d1.sum() * d2.sum() / ((n - 1) * (n - 2))

    return h(t_xy, dx, dy) / np.sqrt(h(t_xx, dx, dx) * h(t_yy, dy, dy))


def main():
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            print(f"blas: {info.get('internal_api')} {info.get('version')} "
                  f"threads={info.get('num_threads')} arch={info.get('architecture')}")
    except ImportError:
        print("blas: (install threadpoolctl to print the BLAS in use)")
    rng = np.random.default_rng(1)
    for rows, cols in [(4096, 4096), (11008, 4096)]:
        a = rng.random((rows, cols), dtype=np.float32) - 0.5
        b = a + (rng.random((rows, cols), dtype=np.float32) - 0.5)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            v = debiased_cka(a, b)
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"cka_debiased_{rows}x{cols}: best {times[0]:.3f} s, median {times[1]:.3f} s "
              f"over 3 runs (value {v:.6f})")


if __name__ == "__main__":
    main()
