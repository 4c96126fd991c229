"""Temporal NMS (method.md §5): the reference against the released code's outputs, hand-made
semantics, and the compiled extension (CPU; CUDA when a GPU is present) against the reference."""
import math
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import torch

from case_fast.ops import NMS_METHODS, extension_available, nms_reference, temporal_nms
from case_fast.ops import _extension
from case_fast.ops.nms import exp_nonpos, processing_order

REPO = pathlib.Path(__file__).resolve().parents[2]
REF = REPO / "tests" / "reference" / "nms_small.npz"

needs_ext = pytest.mark.skipif(not extension_available(),
                               reason="case_fast._C not built (pip install --no-build-isolation -e .)")
needs_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and _extension.cuda_available()),
                                reason="needs a GPU and case_fast._C built with CUDA")


def _rows(p, keep, new):
    return np.c_[p[keep, 0], new, p[keep, 2:4]]


# ----------------------------------------------------------------------------- released outputs

@pytest.mark.parametrize("name", ["n10_ties", "n200_noties"])
@pytest.mark.parametrize("method,key", [("one_pass_decay", "soft"), ("hard", "hard")])
def test_reference_reproduces_released_code(name, method, key):
    d = np.load(REF)
    p = d[f"{name}/proposals"]
    assert (processing_order(p[:, 1])[0] == d[f"{name}/argsort_order"]).all()
    keep, new = nms_reference(p[:, 2:4], p[:, 1], p[:, 0].astype(np.int64), method=method,
                              iou_threshold=0.4, alpha=0.35)
    out, want = _rows(p, keep, new), d[f"{name}/{key}"]
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)
    if extension_available():
        k2, n2 = temporal_nms(p[:, 2:4], p[:, 1], p[:, 0].astype(np.int64), method=method,
                              backend="fast")
        assert (k2 == keep).all()
        np.testing.assert_allclose(n2, new, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- walk order

def _released_order(sc):
    return np.argsort(sc)[::-1]


@pytest.mark.parametrize("n", [10, 1024, 6000])
def test_processing_order_is_numpys_argsort_reversed(n):
    rng = np.random.default_rng(n)
    x = rng.random(n)
    cases = {
        "distinct": x,
        "negative and positive": x - 0.5,
        "ties": np.round(x, 2),
        "one tie": np.r_[x[:-1], x[0]],
        "zero signs": np.r_[x[:-2], 0.0, -0.0],
        "one ulp apart": np.r_[x[:-1], np.nextafter(x[0], 2.0)],
        "subnormal": np.r_[x[:-3], 5e-324, 1e-320, 0.0],
        "huge": x * 1e300,
        "nan": np.r_[x[:-1], np.nan],
        "inf": np.r_[x[:-2], np.inf, -np.inf],
    }
    for name, sc in cases.items():
        order, offsets = processing_order(sc)
        assert order.dtype == np.int64 and order.flags.c_contiguous
        assert order.tolist() == _released_order(sc).tolist(), name
        assert offsets.tolist() == [0, n]


@pytest.mark.parametrize("n", [500, 5000])
@pytest.mark.parametrize("ids", ["dense", "sparse", "huge span"])
def test_processing_order_groups(n, ids):
    rng = np.random.default_rng(n)
    for sc in (rng.random(n), np.round(rng.random(n), 1), np.r_[rng.random(n - 1), np.nan]):
        gr = rng.integers(0, 7, n)
        gr = {"dense": gr, "sparse": gr * 3 - 4, "huge span": gr * 10**15 - 2**62}[ids]
        order, offsets = processing_order(sc, gr)
        groups = np.unique(gr)
        assert offsets.tolist() == [0] + np.cumsum([(gr == g).sum() for g in groups]).tolist()
        for g, a, b in zip(groups, offsets[:-1], offsets[1:]):
            members = np.flatnonzero(gr == g)
            assert order[a:b].tolist() == members[_released_order(sc[members])].tolist()


def test_processing_order_many_groups():
    rng = np.random.default_rng(0)
    n = 5000
    gr = rng.permutation(n) * 5 + 7  # one proposal per group but a few pairs
    gr[:100] = gr[100:200]
    sc = rng.random(n)
    order, offsets = processing_order(sc, gr)
    assert order.tolist() == np.lexsort((-sc, gr)).tolist()
    assert offsets.size == np.unique(gr).size + 1 and offsets[-1] == n


# ----------------------------------------------------------------------------- semantics

def test_iou_exactly_at_threshold_is_suppressed_plus_one():
    # +1 convention: [0, 1] has area 2, [0, 4] area 5, inter 2 -> IoU 0.4 exactly
    seg = np.array([[0.0, 4.0], [0.0, 1.0]])
    sc = np.array([0.9, 0.8])
    for backend in ["reference"] + (["fast"] if extension_available() else []):
        keep, new = temporal_nms(seg, sc, backend=backend)
        assert keep.tolist() == [0, 1]
        assert new[1] == pytest.approx(0.8 * math.exp(-0.16 / 0.35), abs=1e-15)
        keep, _ = temporal_nms(seg, sc, method="hard", backend=backend)
        assert keep.tolist() == [0]
        # without +1 the IoU is 0.25: both kept untouched
        keep, new = temporal_nms(seg, sc, plus_one=False, backend=backend)
        assert keep.tolist() == [0, 1] and new.tolist() == [0.9, 0.8]


def test_plus_one_convention_on_touching_segments():
    # [0, 2] and [2.5, 4]: no overlap in seconds, but +1 gives inter 0.5, areas 3 and 2.5
    seg = np.array([[0.0, 2.0], [2.5, 4.0]])
    sc = np.array([1.0, 0.5])
    iou = 0.5 / (3.0 + 2.5 - 0.5)
    keep, new = nms_reference(seg, sc, iou_threshold=0.1)
    assert keep.tolist() == [0, 1] and new[1] == pytest.approx(0.5 * math.exp(-iou**2 / 0.35))
    keep, new = nms_reference(seg, sc, iou_threshold=0.1, plus_one=False)
    assert new[1] == 0.5


def test_one_pass_decay_keeps_everything_kept_first():
    seg = np.array([[0, 10], [1, 10], [50, 60], [0.5, 9.5], [51, 60], [100, 101]], float)
    sc = np.array([0.5, 0.9, 0.7, 0.8, 0.6, 0.1])
    keep, new = nms_reference(seg, sc)
    # walk: 1 (0.9) decays 3 then 0; 2 (0.7) decays 4; 5 kept
    assert keep.tolist() == [1, 2, 5, 3, 0, 4]
    assert sorted(keep.tolist()) == list(range(6))
    assert new[:3].tolist() == [0.9, 0.7, 0.1]
    assert (new[3:] < sc[[3, 0, 4]]).all()
    hk, hs = nms_reference(seg, sc, method="hard")
    assert hk.tolist() == [1, 2, 5] and hs.tolist() == [0.9, 0.7, 0.1]


def test_soft_nms_is_iterative():
    # 0 suppresses 1 a little, 1 then overtakes 2 only because 2 was decayed more
    seg = np.array([[0, 10], [8, 18], [1, 11]], float)
    sc = np.array([1.0, 0.9, 0.95])
    keep, new = nms_reference(seg, sc, method="soft_gaussian", alpha=0.5)
    iou01, iou02 = 2 / 18, 9 / 11
    s1, s2 = 0.9 * math.exp(-iou01**2 / 0.5), 0.95 * math.exp(-iou02**2 / 0.5)
    assert keep.tolist()[:2] == [0, 1] and new[1] == pytest.approx(s1)
    iou12 = 3 / 17
    assert new[2] == pytest.approx(s2 * math.exp(-iou12**2 / 0.5))
    keep, new = nms_reference(seg, sc, method="soft_linear", iou_threshold=0.5)
    assert keep.tolist() == [0, 1, 2] and new[1] == 0.9
    assert new[2] == pytest.approx(0.95 * (1 - iou02))
    keep, _ = nms_reference(seg, sc, method="soft_linear", iou_threshold=0.5, min_score=0.5)
    assert keep.tolist() == [0, 1]


def test_groups_and_kinds():
    seg = np.array([[0, 10], [0, 10], [0, 10], [0, 10]], float)
    sc = np.array([0.5, 0.9, 0.7, 0.8])
    gr = np.array([3, 1, 3, 1])
    keep, new = nms_reference(seg, sc, gr)
    assert keep.tolist() == [1, 3, 2, 0]  # group 1 first, each kept then decayed
    tk, tn = nms_reference(torch.from_numpy(seg).float(), torch.from_numpy(sc).float(),
                           torch.from_numpy(gr))
    assert isinstance(tk, torch.Tensor) and tk.dtype == torch.int64 and tn.dtype == torch.float64
    assert tk.tolist() == keep.tolist()
    for m in NMS_METHODS:
        k, v = nms_reference(np.zeros((0, 2)), np.zeros(0), method=m)
        assert k.shape == (0,) and k.dtype == np.int64 and v.dtype == np.float64


def test_backend_selection(monkeypatch):
    seg, sc = np.array([[0.0, 1.0]]), np.array([0.5])
    monkeypatch.setitem(_extension._state, "loaded", False)  # as if case_fast._C were not built
    with pytest.raises(RuntimeError, match="compiled extension"):
        temporal_nms(seg, sc, backend="fast")
    assert temporal_nms(seg, sc)[0].tolist() == [0]  # auto: the reference
    assert temporal_nms(seg, sc, backend="reference")[0].tolist() == [0]
    with pytest.raises(ValueError, match="backend"):
        temporal_nms(seg, sc, backend="numpy")
    with pytest.raises(ValueError):
        temporal_nms(seg, sc, method="nope")


# ----------------------------------------------------------------------------- extension = reference

def _random_set(rng, n, n_groups, kind):
    s = rng.uniform(0, 300, n)
    seg = np.c_[s, s + rng.uniform(0.5, 30, n)]
    sc = rng.random(n)
    if kind == "ties":  # few distinct scores, duplicated segments, zero-length and nested ones
        sc = rng.integers(0, 6, n) / 5.0
        dup = rng.integers(0, n, n // 4)
        seg[dup] = seg[rng.integers(0, n, dup.size)]
        z = rng.integers(0, n, n // 10)
        seg[z, 1] = seg[z, 0]
        nest = rng.integers(0, n, n // 10)
        seg[nest] = seg[nest] + np.array([1.0, -1.0]) * rng.random((nest.size, 1)) * 0.2
    gr = rng.integers(0, n_groups, n) * 7 + 2  # sparse, unsorted ids
    return seg, sc, gr


CASES = [(0, 1, "plain"), (1, 1, "plain"), (2, 1, "ties"), (30, 1, "ties"), (47, 3, "plain"),
         (200, 1, "plain"), (500, 4, "ties"), (1500, 1, "plain"), (1500, 1, "ties"),
         (3000, 60, "plain"), (2500, 5, "ties")]


@needs_ext
@pytest.mark.parametrize("method", NMS_METHODS)
@pytest.mark.parametrize("n,n_groups,kind", CASES)
@pytest.mark.parametrize("plus_one", [None, False, True])
def test_extension_matches_reference(method, n, n_groups, kind, plus_one):
    if method.startswith("soft") and n > 1000 and plus_one is not None:
        pytest.skip("large Soft-NMS reference runs once per size (plus_one=None)")
    rng = np.random.default_rng(n * 31 + n_groups + len(kind))
    seg, sc, gr = _random_set(rng, n, n_groups, kind)
    kw = dict(method=method, plus_one=plus_one, iou_threshold=0.4, alpha=0.35, min_score=1e-3)
    k1, v1 = nms_reference(seg, sc, gr, **kw)
    k2, v2 = temporal_nms(seg, sc, gr, backend="fast", **kw)
    assert k2.dtype == np.int64 and v2.dtype == np.float64
    assert k1.shape == k2.shape and (k1 == k2).all()
    np.testing.assert_allclose(v2, v1, rtol=0, atol=1e-9)
    if method == "one_pass_decay":
        assert sorted(k2.tolist()) == list(range(n))


@needs_ext
@pytest.mark.parametrize("thr", [0.0, 0.7, 1.0, 1.5])
def test_extension_matches_reference_thresholds(thr):
    rng = np.random.default_rng(5)
    seg, sc, gr = _random_set(rng, 400, 2, "ties")
    for m in NMS_METHODS:
        k1, v1 = nms_reference(seg, sc, gr, method=m, iou_threshold=thr)
        k2, v2 = temporal_nms(seg, sc, gr, method=m, iou_threshold=thr, backend="fast")
        assert (k1 == k2).all() and np.allclose(v1, v2, rtol=0, atol=1e-9)


@needs_ext
def test_extension_window_bounds_stress():
    # lengths over five orders of magnitude, near-threshold IoUs, both IoU conventions: the
    # start-bucket window of the C++ one-pass walk must never miss a suppression
    rng = np.random.default_rng(11)
    for trial in range(12):
        n = int(rng.integers(48, 400))
        start = rng.uniform(0, 50, n)
        length = 10.0 ** rng.uniform(-3, 2, n)
        seg = np.c_[start, start + length]
        seg[: n // 5] = seg[rng.integers(0, n, n // 5)] + rng.normal(0, 1e-9, (n // 5, 2))
        sc = rng.random(n)
        thr = float(rng.choice([0.05, 0.3, 0.4, 0.5, 0.9, 0.999]))
        for method in ("one_pass_decay", "hard"):
            for po in (True, False):
                k1, v1 = nms_reference(seg, sc, method=method, iou_threshold=thr, plus_one=po)
                k2, v2 = temporal_nms(seg, sc, method=method, iou_threshold=thr, plus_one=po,
                                      backend="fast")
                assert (k1 == k2).all() and np.allclose(v1, v2, rtol=0, atol=1e-9), (trial, method)


@needs_ext
@pytest.mark.parametrize("scale,length",
                         [(1e-300, 0.5), (1e300, 0.5), (1e307, 0.5), (1.7e308, 0.01)])
def test_extension_extreme_magnitudes(scale, length):
    # at 1e307 the sum of areas overflows, at 1.7e308 the range of starts too: the C++ walk must
    # not size buckets from an infinite width (it takes the plain scan), and still agree
    rng = np.random.default_rng(int(np.log10(scale)) + 400)
    s = rng.uniform(-0.9, 0.9, 300) * scale
    seg, sc = np.c_[s, s + rng.uniform(0, length, 300) * scale], rng.random(300)
    assert np.isfinite(seg).all()
    for method in ("one_pass_decay", "hard"):
        for po in (True, False):
            k1, v1 = nms_reference(seg, sc, method=method, plus_one=po)
            k2, v2 = temporal_nms(seg, sc, method=method, plus_one=po, backend="fast")
            assert (k1 == k2).all() and np.allclose(v1, v2, rtol=5e-16, atol=0), (method, po)


@needs_ext
def test_extension_torch_in_torch_out_and_op():
    rng = np.random.default_rng(0)
    seg, sc, gr = _random_set(rng, 300, 3, "plain")
    k, v = temporal_nms(torch.from_numpy(seg).float(), torch.from_numpy(sc).float(),
                        torch.from_numpy(gr))
    assert isinstance(k, torch.Tensor) and k.dtype == torch.int64 and v.dtype == torch.float64
    k1, _ = nms_reference(seg.astype(np.float32), sc.astype(np.float32), gr)
    assert k.tolist() == k1.tolist()
    order, _ = processing_order(sc, gr)
    kk, vv = torch.ops.case_fast.temporal_nms(
        torch.from_numpy(seg), torch.from_numpy(sc), torch.from_numpy(gr), "hard",
        order=torch.from_numpy(order))
    assert kk.tolist() == nms_reference(seg, sc, gr, method="hard")[0].tolist()


def _stable_order(sc, gr):
    """The op's default walk: group ids ascending, then descending score (NaN first), equal
    scores in input order."""
    key = np.where(np.isnan(sc), np.inf, sc)
    return np.lexsort((np.arange(len(sc)), -key, np.isnan(sc) * -1, gr))


@needs_ext
@pytest.mark.parametrize("method", NMS_METHODS)
def test_op_default_order_and_checks(method):
    """Called directly, the op needs no order: its default walk is a stable sort (documented in
    csrc/register.cpp); with numpy's order passed it is the released rule. A given order must be
    a permutation listing the groups by ascending id."""
    rng = np.random.default_rng(7)
    seg, sc, gr = _random_set(rng, 400, 3, "ties")
    sc[rng.integers(0, 400, 5)] = np.nan
    op = torch.ops.case_fast.temporal_nms
    t = [torch.from_numpy(x) for x in (seg, sc, gr)]
    k, v = op(*t, method)
    order = _stable_order(sc, gr)
    k2, v2 = op(*t, method, order=torch.from_numpy(order))
    assert k.tolist() == k2.tolist()
    torch.testing.assert_close(v, v2, rtol=0, atol=0, equal_nan=True)
    # float32 inputs and other integer ids are taken (computed in float64)
    k3, _ = op(t[0].float(), t[1].float(), t[2].int(), method)
    k4, _ = op(t[0].float().double(), t[1].float().double(), t[2], method)
    assert k3.tolist() == k4.tolist()
    with pytest.raises(RuntimeError, match="permutation"):
        op(*t, method, order=torch.zeros(400, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="ascending"):
        op(*t, method, order=torch.from_numpy(order[::-1].copy()))
    with pytest.raises(RuntimeError, match="unknown method"):
        op(*t, "nope")


@needs_ext
@pytest.mark.parametrize("alpha", [0.35, 2.0, 1e-2, 1e-3, 1e-4])
@pytest.mark.parametrize("n", [20, 400])  # the plain scan (< 48 per group) and the buckets
def test_extension_decayed_scores_to_one_ulp(alpha, n):
    """The C++ one-pass decay computes exp(-IoU^2 / alpha) with its own vectorised exp: within
    about 1 ulp of math.exp, including results that underflow to subnormals and to 0 (small
    alpha); the order is unaffected (no decision depends on a decayed score)."""
    rng = np.random.default_rng(int(alpha * 1e4) + n)
    s = rng.uniform(0, n / 4, n)  # dense: most proposals are decayed
    seg, sc, gr = np.c_[s, s + rng.uniform(0.5, 30, n)], rng.random(n), rng.integers(0, 2, n)
    k1, v1 = nms_reference(seg, sc, gr, alpha=alpha)
    k2, v2 = temporal_nms(seg, sc, gr, alpha=alpha, backend="fast")
    assert (k1 == k2).all()
    tiny = np.abs(v1) < np.finfo(np.float64).tiny  # subnormals: a few steps of 5e-324
    np.testing.assert_allclose(v2[~tiny], v1[~tiny], rtol=5e-16, atol=0)
    np.testing.assert_allclose(v2[tiny], v1[tiny], rtol=0, atol=2e-323)
    if alpha == 1e-3 and n == 400:  # the underflow path was used: zeros and subnormals
        assert (v1 == 0).any() and tiny.sum() > (v1 == 0).sum()


def _grid_set(rng, n, n_groups):
    """Integer starts, a few lengths, scores rounded to 0.1: equal IoUs and equal scores, so
    Soft-NMS meets exact ties of *current* (decayed) scores."""
    s = np.round(rng.uniform(0, 50, n))
    seg = np.c_[s, s + rng.choice([0.0, 0.5, 1.0, 3.0, 10.0], n)]
    return seg, np.round(rng.random(n), 1), rng.integers(0, n_groups, n)


@needs_ext
@pytest.mark.parametrize("seed", range(6))
def test_extension_soft_nms_current_score_ties(seed):
    # the reference's Gaussian factors once came from np.exp (numpy's SIMD exp), the C++ ones
    # from libm: an ulp apart on ~5% of inputs, enough to swap two tied picks (seed 0 did).
    # Both now use exp_nonpos: same picks, same bits.
    rng = np.random.default_rng(seed)
    seg, sc, gr = _grid_set(rng, int(rng.integers(300, 560)), 1 + seed % 3)
    for method in NMS_METHODS:
        for po in (None, True):
            k1, v1 = nms_reference(seg, sc, gr, method=method, plus_one=po)
            k2, v2 = temporal_nms(seg, sc, gr, method=method, plus_one=po, backend="fast")
            assert k1.tolist() == k2.tolist(), (method, po)
            if method != "one_pass_decay":  # one-pass reference: math.exp (5e-16, see above)
                assert v1.tolist() == v2.tolist(), (method, po)


def test_exp_nonpos_within_one_ulp_of_math_exp():
    x = -np.r_[np.linspace(0.0, 800.0, 200001), 1e-300, 708.39, 745.1, 745.5, np.inf]
    y = exp_nonpos(x)
    want = np.array([math.exp(t) for t in x])
    normal = want >= np.finfo(np.float64).tiny
    assert (np.abs(y - want)[normal] <= np.spacing(want[normal])).all()
    assert (np.abs(y - want)[~normal] <= 5e-324).all()  # subnormals and 0: one rounding
    assert exp_nonpos(0.0) == 1.0 and exp_nonpos(-np.inf) == 0.0 and exp_nonpos(np.nan) == 0.0
    assert exp_nonpos(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("method", ["one_pass_decay", "soft_gaussian"])
@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_alpha_must_be_positive(method, backend):
    if backend == "fast" and not extension_available():
        pytest.skip("case_fast._C not built")
    seg, sc = np.array([[0.0, 4.0], [0.0, 3.0]]), np.array([0.9, 0.8])
    for alpha in (0.0, -0.35, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            temporal_nms(seg, sc, method=method, alpha=alpha, backend=backend)
    temporal_nms(seg, sc, method="hard", alpha=0.0, backend=backend)  # hard NMS ignores alpha

# ----------------------------------------------------------------------------- CUDA

@pytest.mark.slow
def test_cuda_source_compiles():
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc")
                                    and "/usr/local/cuda/bin/nvcc")
    if not nvcc:
        pytest.skip("nvcc not found")
    r = subprocess.run(["bash", str(REPO / ".ci" / "compile_cuda.sh")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def _assert_cuda_scores(v_cuda, v_cpu, method):
    if method.startswith("soft"):  # same arithmetic; exp may differ by an ulp per decay
        np.testing.assert_allclose(v_cuda, v_cpu, rtol=1e-12, atol=1e-300)
    else:
        np.testing.assert_allclose(v_cuda, v_cpu, rtol=0, atol=1e-7)


# "ties" sets: few distinct scores (0 < min_score among them), duplicated, zero-length and nested
# segments; (3000, 500): many small groups; (1500, 2, "ties"): groups above 512 members (Soft-NMS
# block size) with ties
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", NMS_METHODS)
@pytest.mark.parametrize("n,n_groups,kind", [(0, 1, "plain"), (1, 1, "plain"), (130, 1, "ties"),
                                             (2000, 1, "plain"), (5000, 40, "ties"),
                                             (20000, 1, "plain"), (3000, 500, "ties"),
                                             (1500, 2, "ties")])
def test_cuda_matches_cpu(method, n, n_groups, kind):
    rng = np.random.default_rng(n + n_groups)
    seg, sc, gr = _random_set(rng, n, n_groups, kind)
    k1, v1 = temporal_nms(seg, sc, gr, method=method, backend="fast")
    dev = torch.device("cuda")
    k2, v2 = temporal_nms(torch.from_numpy(seg).to(dev), torch.from_numpy(sc).to(dev),
                          torch.from_numpy(gr).to(dev), method=method, backend="fast")
    assert k2.is_cuda and v2.is_cuda
    assert k2.dtype == torch.int64 and v2.dtype == torch.float64
    assert k2.cpu().numpy().tolist() == k1.tolist()
    _assert_cuda_scores(v2.cpu().numpy(), v1, method)


SOFT_METHODS = ("soft_gaussian", "soft_linear")
SOFT_PARAMS = [dict(iou_threshold=0.4, alpha=0.35, min_score=1e-3, plus_one=None),
               dict(iou_threshold=0.0, alpha=0.5, min_score=0.3, plus_one=True),
               dict(iou_threshold=0.7, alpha=0.1, min_score=-math.inf, plus_one=False),
               dict(iou_threshold=0.4, alpha=0.35, min_score=0.95, plus_one=False)]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", SOFT_METHODS)
@pytest.mark.parametrize("params", range(len(SOFT_PARAMS)))
def test_cuda_soft_matches_cpu(method, params):
    # group sizes around the warp / block sizes, one-member groups, groups whose members are all
    # below min_score (min_score 0.95 on "ties" scores k/5), NaN and inf scores
    kw = SOFT_PARAMS[params]
    dev = torch.device("cuda")
    for trial, (n, n_groups, kind) in enumerate([(1, 1, "ties"), (2, 1, "ties"), (31, 1, "ties"),
                                                 (33, 1, "plain"), (513, 1, "ties"),
                                                 (1100, 2, "ties"), (3000, 700, "ties"),
                                                 (3000, 300, "plain"), (7000, 3, "ties")]):
        rng = np.random.default_rng(1000 * params + trial)
        seg, sc, gr = _random_set(rng, n, n_groups, kind)
        if n >= 30:
            sc[rng.integers(0, n, n // 15)] = np.nan
            sc[rng.integers(0, n, 2)] = np.inf
        k1, v1 = temporal_nms(seg, sc, gr, method=method, backend="fast", **kw)
        k2, v2 = temporal_nms(torch.from_numpy(seg).to(dev), torch.from_numpy(sc).to(dev),
                              torch.from_numpy(gr).to(dev), method=method, backend="fast", **kw)
        assert k2.is_cuda and v2.is_cuda
        assert k2.cpu().numpy().tolist() == k1.tolist(), (n, n_groups, kind)
        _assert_cuda_scores(v2.cpu().numpy(), v1, method)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", NMS_METHODS)
def test_cuda_op_direct(method):
    # the raw op on CUDA tensors: default order (stable sort on the device), a given order, no
    # groups, one group, nothing at all
    rng = np.random.default_rng(3)
    seg, sc, gr = _random_set(rng, 600, 4, "ties")
    dev = torch.device("cuda")
    op = torch.ops.case_fast.temporal_nms
    order = torch.from_numpy(processing_order(sc, gr)[0])
    cases = [(seg, sc, gr, None), (seg, sc, gr, order), (seg, sc, None, None),
             (seg[:1], sc[:1], gr[:1], None), (seg[:0], sc[:0], gr[:0], None)]
    for s_, c_, g_, o_ in cases:
        cpu = [torch.from_numpy(s_), torch.from_numpy(c_), None if g_ is None else torch.from_numpy(g_)]
        k1, v1 = op(*cpu, method, order=o_)
        k2, v2 = op(*[None if x is None else x.to(dev) for x in cpu], method,
                    order=None if o_ is None else o_.to(dev))
        assert k2.is_cuda and k2.dtype == torch.int64 and v2.dtype == torch.float64
        assert k2.cpu().tolist() == k1.tolist()
        _assert_cuda_scores(v2.cpu().numpy(), v1.numpy(), method)
    with pytest.raises(RuntimeError, match="permutation"):
        op(torch.from_numpy(seg).to(dev), torch.from_numpy(sc).to(dev), None, method,
           order=torch.zeros(600, dtype=torch.int64, device=dev))
