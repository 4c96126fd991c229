"""Paired, interleaved timing: reference and fast path alternate call by call, so a change in
the machine's speed during the measurement (other tenants, frequency) hits both sides alike.
Reports each side's median and the median of the per-pair ratios (ref_i / fast_i, where fast_i
is the median of ``fast_reps`` calls made right after ref_i).

Used by the ``__main__`` blocks of the bench files (``python bench/bench_nms.py``); the
pytest-benchmark suites time each side separately.
"""
from __future__ import annotations

import time
from typing import Callable, Tuple

import numpy as np


def paired_ratio(ref: Callable[[], object], fast: Callable[[], object], pairs: int = 15,
                 fast_reps: int = 25, warmup: int = 2) -> Tuple[float, float, float]:
    """(median reference seconds, median fast seconds, median per-pair ratio)."""
    for _ in range(warmup):
        ref()
        fast()
    r_t, f_t, ratios = [], [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        ref()
        r = time.perf_counter() - t0
        fs = []
        for _ in range(fast_reps):
            t0 = time.perf_counter()
            fast()
            fs.append(time.perf_counter() - t0)
        f = float(np.median(fs))
        r_t.append(r)
        f_t.append(f)
        ratios.append(r / f)
    return float(np.median(r_t)), float(np.median(f_t)), float(np.median(ratios))
