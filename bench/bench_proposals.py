"""Proposal generation per video (T = 750, x24, 9 thresholds, p = 2): reference vs the compiled
op (torch.ops.case_fast.oic_proposals), side by side.

    pytest bench/bench_proposals.py --benchmark-only --benchmark-group-by=group
    python bench/bench_proposals.py        # quick medians and ratios without pytest-benchmark

Timed with ``time.process_time`` (CPU time of this process), which is steadier than wall time on
a shared machine.
"""
import time

import numpy as np
import pytest

from case_fast.ops import proposals as P
from case_fast.ops import extension_available

T, P_CLASSES, N_VIDEOS = 750, 2, 8


def realistic_cas(rng, T=T, p=P_CLASSES):
    """Smooth random T-CAS columns in [0, 1]: a low noisy background plus 3-8 action bumps."""
    t = np.arange(T)
    k = np.exp(-0.5 * (np.arange(-15, 16) / 4.0) ** 2)
    k /= k.sum()
    cols = []
    for _ in range(p):
        y = 0.15 + 0.05 * np.convolve(rng.normal(0, 1, T + 40), k, "same")[20:20 + T]
        for _ in range(rng.integers(3, 9)):
            y = y + rng.uniform(0.4, 0.9) * np.exp(-0.5 * ((t - rng.uniform(0, T)) / rng.uniform(3, 30)) ** 2)
        y += 0.04 * rng.normal(0, 1, T)
        cols.append(np.clip(y, 0, 1))
    return np.stack(cols, 1).astype(np.float32)


def _videos():
    rng = np.random.default_rng(0)
    return [(realistic_cas(rng), np.array([3, 11]), rng.random(20).astype(np.float32),
             int(rng.integers(200, 3000))) for _ in range(N_VIDEOS)]


VIDEOS = _videos()


def _run(fn):
    for v in VIDEOS:
        fn(*v)


@pytest.mark.benchmark(group="proposals per video (x8 videos)", timer=time.process_time)
def test_bench_reference(benchmark):
    benchmark.pedantic(_run, args=(P.generate_proposals_reference,), rounds=5, iterations=1,
                       warmup_rounds=1)


def _cpp(*v):
    return P.generate_proposals(*v, backend="fast")


@pytest.mark.skipif(not extension_available(), reason="case_fast._C not built")
@pytest.mark.benchmark(group="proposals per video (x8 videos)", timer=time.process_time)
def test_bench_cpp(benchmark):
    for v in VIDEOS:
        assert np.array_equal(_cpp(*v), P.generate_proposals_reference(*v))
    benchmark.pedantic(_run, args=(_cpp,), rounds=200, iterations=1, warmup_rounds=5)


if __name__ == "__main__":
    def med(fn, rounds):
        ts = []
        for _ in range(rounds):
            t0 = time.process_time()
            _run(fn)
            ts.append((time.process_time() - t0) / N_VIDEOS)
        return float(np.median(ts))

    rows = np.mean([len(P.generate_proposals(*v)) for v in VIDEOS])
    _run(_cpp)
    r, c = [], []
    for _ in range(3):  # interleaved, so that load on a shared machine hits both alike
        r.append(med(P.generate_proposals_reference, 5))
        c.append(med(_cpp, 201) if extension_available() else float("nan"))
    r, c = np.median(r), np.median(c)
    print(f"{rows:.0f} proposals/video; per video (CPU time medians): reference {r * 1e3:.3f} ms, "
          f"C++ {c * 1e3:.3f} ms ({r / c:.1f}x)")
