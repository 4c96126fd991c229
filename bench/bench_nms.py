"""Temporal NMS benchmarks: Python reference vs the compiled extension (CPU), and on a GPU the
CUDA kernels vs the CPU extension and torchvision.ops.nms.

    pytest bench/bench_nms.py --benchmark-only

One group of n THUMOS-like proposals (starts uniform in [0, 300] s, lengths 0.5-30 s, many
overlaps). Reference and extension of one (method, n) share a benchmark group, so their ratio
reads off one table.
"""
import numpy as np
import pytest
import torch

from case_fast.ops import NMS_METHODS, extension_available, nms_reference, temporal_nms
from case_fast.ops._extension import cuda_available

SIZES = (1000, 6000, 20000)


def thumos_like(n, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.0, 300.0, n)
    seg = np.c_[start, start + rng.uniform(0.5, 30.0, n)]
    return seg, rng.random(n)


def _rounds(method, n):
    # the reference at 20k (and Soft-NMS at 6k+) is slow: few rounds; at 1k and 6k, rounds over
    # about a quarter of a second, so that the median outlasts a short slow spell of the machine
    if n >= 20000:
        return 1 if method.startswith("soft") else 3
    return 3 if method.startswith("soft") and n >= 6000 else 30


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", NMS_METHODS)
def test_reference(benchmark, method, n):
    seg, sc = thumos_like(n)
    benchmark.group = f"nms-cpu {method} n={n}"
    benchmark.pedantic(nms_reference, args=(seg, sc), kwargs=dict(method=method),
                       rounds=_rounds(method, n), iterations=1)


@pytest.mark.skipif(not extension_available(), reason="case_fast._C not built")
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", NMS_METHODS)
def test_extension_cpu(benchmark, method, n):
    seg, sc = thumos_like(n)
    benchmark.group = f"nms-cpu {method} n={n}"
    k, v = benchmark(temporal_nms, seg, sc, method=method, backend="fast")
    if n <= 6000 and method in ("one_pass_decay", "hard"):
        k1, v1 = nms_reference(seg, sc, method=method)
        assert (k == k1).all() and np.allclose(v, v1, rtol=0, atol=1e-7)


@pytest.mark.skipif(not extension_available(), reason="case_fast._C not built")
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["one_pass_decay", "hard"])
def test_extension_cpu_op_only(benchmark, method, n):
    """The C++ op alone, numpy's walk order given."""
    from case_fast.ops.nms import processing_order
    seg, sc = thumos_like(n)
    order, _ = processing_order(sc)
    seg, sc, order = (torch.from_numpy(x) for x in (seg, sc, order))
    benchmark.group = f"nms-cpu {method} n={n}"
    benchmark(torch.ops.case_fast.temporal_nms, seg, sc, None, method, order=order)


def thumos_like_groups(n, n_groups, seed=0):
    """n proposals in n_groups groups (e.g. one call for many videos x classes), ids sparse."""
    seg, sc = thumos_like(n, seed)
    return seg, sc, np.random.default_rng(seed + 1).integers(0, n_groups, n) * 3 + 1


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_batched_groups(benchmark, backend):
    """One call for 6000 proposals in 20 groups: the walk order with groups (processing_order)
    is part of the time, as in inference (one call per video, classes as groups)."""
    if backend == "fast" and not extension_available():
        pytest.skip("case_fast._C not built")
    seg, sc, gr = thumos_like_groups(6000, 20)
    benchmark.group = "nms-cpu one_pass_decay n=6000 in 20 groups"
    fn = nms_reference if backend == "reference" else temporal_nms
    kw = {} if backend == "reference" else {"backend": "fast"}
    k, v = benchmark.pedantic(fn, args=(seg, sc, gr), kwargs=kw,
                              rounds=10 if backend == "reference" else 200, iterations=1)
    k1, v1 = nms_reference(seg, sc, gr)
    assert (k == k1).all() and np.allclose(v, v1, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------- GPU

def _torchvision_nms():
    try:
        from torchvision.ops import nms
    except Exception:
        return None
    return nms


needs_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and cuda_available()),
                                reason="needs a GPU and case_fast._C built with CUDA")


def _gpu_inputs(n):
    seg, sc = thumos_like(n)
    seg = seg.astype(np.float32).astype(np.float64)  # the exact values torchvision sees
    dev = torch.device("cuda")
    return torch.from_numpy(seg).to(dev), torch.from_numpy(sc).to(dev)


def _cuda_sync(fn):
    def run(*a, **k):
        out = fn(*a, **k)
        torch.cuda.synchronize()
        return out
    return run


@needs_cuda
@pytest.mark.parametrize("method", ["one_pass_decay", "hard"])
def test_gpu_extension(benchmark, method):
    seg, sc = _gpu_inputs(20000)
    benchmark.group = f"nms-gpu {method} n=20000"
    k, _ = benchmark(_cuda_sync(temporal_nms), seg, sc, method=method, backend="fast")
    k1, _ = temporal_nms(seg.cpu(), sc.cpu(), method=method, backend="fast")
    assert k.cpu().tolist() == k1.tolist()


@needs_cuda
@pytest.mark.parametrize("method", ["one_pass_decay", "hard"])
def test_gpu_cpu_extension(benchmark, method):
    seg, sc = _gpu_inputs(20000)
    seg, sc = seg.cpu(), sc.cpu()
    benchmark.group = f"nms-gpu {method} n=20000"
    benchmark(temporal_nms, seg, sc, method=method, backend="fast")


@needs_cuda
@pytest.mark.parametrize("n", (1000, 6000))
@pytest.mark.parametrize("method", ["soft_gaussian", "soft_linear"])
def test_gpu_soft_extension(benchmark, method, n):
    """Soft-NMS on the GPU (one thread block per group) vs the CPU extension below."""
    seg, sc = _gpu_inputs(n)
    benchmark.group = f"nms-gpu {method} n={n}"
    k, v = benchmark(_cuda_sync(temporal_nms), seg, sc, method=method, backend="fast")
    k1, v1 = temporal_nms(seg.cpu(), sc.cpu(), method=method, backend="fast")
    assert k.cpu().tolist() == k1.tolist()
    np.testing.assert_allclose(v.cpu().numpy(), v1.numpy(), rtol=1e-12, atol=0)


@needs_cuda
@pytest.mark.parametrize("n", (1000, 6000))
@pytest.mark.parametrize("method", ["soft_gaussian", "soft_linear"])
def test_gpu_soft_cpu_extension(benchmark, method, n):
    seg, sc = _gpu_inputs(n)
    seg, sc = seg.cpu(), sc.cpu()
    benchmark.group = f"nms-gpu {method} n={n}"
    benchmark(temporal_nms, seg, sc, method=method, backend="fast")


@needs_cuda
@pytest.mark.skipif(_torchvision_nms() is None, reason="torchvision not installed")
def test_gpu_torchvision_hard(benchmark):
    nms = _torchvision_nms()
    seg, sc = _gpu_inputs(20000)
    boxes = torch.stack([seg[:, 0], torch.zeros_like(seg[:, 0]), seg[:, 1],
                         torch.ones_like(seg[:, 0])], 1).float()
    scores = sc.float()
    benchmark.group = "nms-gpu hard n=20000"
    keep_tv = benchmark(_cuda_sync(nms), boxes, scores, 0.4)
    # torchvision: ordinary IoU, suppresses IoU > thr; ours suppresses IoU >= thr (equal only
    # on exact ties, absent here): compare with plus_one=False, same kept set
    keep, _ = temporal_nms(seg, sc, method="hard", plus_one=False, backend="fast")
    assert sorted(keep.cpu().tolist()) == sorted(keep_tv.cpu().tolist())


if __name__ == "__main__":
    # Paired, interleaved reference vs extension (CPU, end to end from numpy inputs): the
    # ratio least sensitive to a busy machine. python bench/bench_nms.py [n ...]
    import sys

    from _paired import paired_ratio

    if not extension_available():
        sys.exit("case_fast._C is not built")
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    print(f"{'method':16s} {'n':>6s} {'reference':>12s} {'C++':>11s} {'paired ratio':>13s}")
    for method in ("one_pass_decay", "hard"):
        for n in sizes:
            seg, sc = thumos_like(n)
            k0, v0 = nms_reference(seg, sc, method=method)
            k1, v1 = temporal_nms(seg, sc, method=method, backend="fast")
            assert (k0 == k1).all() and np.allclose(v0, v1, rtol=0, atol=1e-7)
            r, f, ratio = paired_ratio(lambda: nms_reference(seg, sc, method=method),
                                       lambda: temporal_nms(seg, sc, method=method, backend="fast"),
                                       pairs=9 if n >= 20000 else 15)
            print(f"{method:16s} {n:6d} {r * 1e3:9.2f} ms {f * 1e3:8.3f} ms {ratio:12.1f}x")
    seg, sc, gr = thumos_like_groups(6000, 20)
    r, f, ratio = paired_ratio(lambda: nms_reference(seg, sc, gr),
                               lambda: temporal_nms(seg, sc, gr, backend="fast"))
    print(f"{'one_pass_decay':16s} {'6000/20g':>6s} {r * 1e3:9.2f} ms {f * 1e3:8.3f} ms "
          f"{ratio:12.1f}x  (20 groups in one call)")
