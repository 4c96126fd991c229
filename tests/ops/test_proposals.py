"""Proposal generation (method.md §5): upsampling, runs, OIC scores, seconds; reference vs fast."""
import math
import pathlib

import numpy as np
import pytest

from case_fast.ops import proposals as P
from case_fast.ops import BACKENDS, extension_available

NPZ = pathlib.Path(__file__).resolve().parents[1] / "reference" / "oic.npz"


@pytest.fixture(scope="module")
def oic():
    if not NPZ.is_file():
        pytest.skip("tests/reference/oic.npz missing")
    return np.load(NPZ)


def _case_args(d, K):
    kw = dict(thresholds=d["act_thresh"], scale=int(d["scale"]), num_segments=int(d["num_segments"]),
              fps=float(d["sampling_frames"]), oic_lambda=float(d["lambda_"]), oic_gamma=float(d["gamma"]))
    args = (d[f"{K}/cas750"], d[f"{K}/c_pred"], d[f"{K}/final_score"], int(d[f"{K}/v_len"]))
    return args, kw


def _same(a, b):
    return a.shape == b.shape and np.array_equal(a, b)


# ------------------------------------------------------------------ released-code reference data

def test_thresholds_are_numpy_arange(oic):
    assert np.array_equal(P.DEFAULT_THRESHOLDS, oic["act_thresh"])


@pytest.mark.parametrize("K", ["oic1", "oic3"])
def test_upsample_bitwise(oic, K):
    up = P.upsample_cas(oic[f"{K}/cas750"], int(oic["scale"]))
    w = oic[f"{K}/wtcam"][:, :, 0]
    assert up.dtype == np.float64 and up.shape == w.shape
    assert np.array_equal(up, w)


@pytest.mark.parametrize("K", ["oic1", "oic3"])
def test_runs_match_released_indices(oic, K):
    """Threshold index sets (thr{t}/seg{c}) of the upsampled array."""
    cas = oic[f"{K}/cas750"]
    up = P.upsample_cas(cas)
    thr = oic["act_thresh"]
    for t in range(len(thr)):
        for col in range(cas.shape[1]):
            seg = oic[f"{K}/thr{t}/seg{col}"]
            assert np.array_equal(np.nonzero(up[:, col] >= thr[t])[0], seg)


@pytest.mark.parametrize("K", ["oic1", "oic3"])
def test_reference_matches_released_proposals(oic, K):
    args, kw = _case_args(oic, K)
    per_ref = P.generate_proposals_per_threshold_reference(*args, **kw)
    per_fast = P.generate_proposals_per_threshold(*args, **kw)
    c_pred = oic[f"{K}/c_pred"]
    for t in range(len(kw["thresholds"])):
        out, out32 = oic[f"{K}/thr{t}/out"], oic[f"{K}/thr{t}/out_np2"]
        ref = per_ref[t]
        assert ref.shape == out.shape
        assert np.array_equal(ref[:, [0, 2, 3]], out[:, [0, 2, 3]])  # class, start, end: bitwise
        assert np.abs(ref[:, 1] - out[:, 1]).max(initial=0) <= 1e-12  # observed <= 1.1e-14
        assert np.abs(ref[:, 1] - out32[:, 1]).max(initial=0) <= 3e-9 + 1e-12
        counts = [(ref[:, 0] == c).sum() for c in c_pred]
        assert counts == list(oic[f"{K}/thr{t}/count_per_class"])
        assert _same(per_fast[t], ref)
    assert _same(P.generate_proposals(*args, **kw), P.generate_proposals_reference(*args, **kw))
    assert _same(P.generate_proposals_reference(*args, **kw), np.concatenate(per_ref))


def test_zero_run_dropped_only_when_alone(oic):
    """oic3 threshold 0.9, class 0: its only point above threshold is index 0 -> no proposal."""
    args, kw = _case_args(oic, "oic3")
    assert np.array_equal(oic["oic3/thr8/seg0"], [0])
    per = P.generate_proposals_per_threshold(*args, **kw)
    assert not (per[8][:, 0] == oic["oic3/c_pred"][0]).any()
    kept = P.generate_proposals_per_threshold_reference(*args, **dict(kw, drop_zero_run=False))
    row = kept[8][kept[8][:, 0] == oic["oic3/c_pred"][0]]
    assert row.shape == (1, 4) and row[0, 2] == 0.0
    # {0} beside another run of the same class and threshold is kept
    cas = np.zeros((20, 1), np.float32)
    cas[0, 0] = 1.0  # upsampled: only index 0 is >= 0.96 ...
    cas[10, 0] = 1.0  # ... plus a spike at 10*scale
    for fn in (P.generate_proposals_reference, P.generate_proposals):
        out = fn(cas, [3], np.ones(5), 20, thresholds=[0.96], num_segments=20)
        assert out.shape[0] == 2 and out[0, 2] == 0.0
        out1 = fn(cas[:5], [3], np.ones(5), 5, thresholds=[0.96], num_segments=5)
        assert out1.shape[0] == 0


# ------------------------------------------------------------------ hand-checked tiny case

def test_time_mapping_and_score_by_hand():
    cas = np.array([[0.0], [1.0]])  # upsampled x2: 0, 0.5, 1.0, 1.5 (extrapolated)
    assert np.array_equal(P.upsample_cas(cas, 2)[:, 0], [0.0, 0.5, 1.0, 1.5])
    vs = np.zeros(4)
    vs[2] = 0.5
    for fn in (P.generate_proposals_reference, P.generate_proposals):
        out = fn(cas, [2], vs, 10, thresholds=[0.5], scale=2, num_segments=2, fps=25.0)
        # run [1, 3], n = 3: inner 1.0; outer [trunc(1 - 0.45), 1) = {0} -> 0.0; + 0.2 * 0.5
        # t_factor = 16 * 10 / (2 * 2 * 25) = 1.6: start 1 * 1.6, end (3 + 1) * 1.6
        assert out.shape == (1, 4)
        assert out[0, 0] == 2.0
        assert out[0, 1] == pytest.approx(1.1, abs=1e-15)
        assert out[0, 2] == pytest.approx(1.6, abs=1e-15) and out[0, 3] == pytest.approx(6.4, abs=1e-15)
    assert P.time_factor(750) == 16 * 750 / (24 * 750 * 25)


def test_window_sums_near_exact():
    rng = np.random.default_rng(5)
    cas = np.clip(np.cumsum(rng.normal(0, 0.1, (300, 2)), 0) + 0.5, 0, 1).astype(np.float32)
    up = P.upsample_cas(cas)
    sums = P._Sums(P._as_cas(cas), P._plan(300, 24))
    L = up.shape[0]
    a = rng.integers(0, L, 400)
    b = np.minimum(L, a + rng.choice([1, 2, 7, 30, 500, 7000], 400))
    col = rng.integers(0, 2, 400)
    for k in range(400):
        got = sums.window_scalar(int(col[k]), int(a[k]), int(b[k]))
        exact = math.fsum(up[a[k]:b[k], col[k]].tolist())
        assert abs(got - exact) <= 1e-13 * (b[k] - a[k])
        assert sums.window_scalar(int(col[k]), int(a[k]), int(a[k])) == 0.0


# ------------------------------------------------------------------ fast == reference (bitwise)

def _smooth(rng, T, lo=0.0, hi=1.0):
    y = np.cumsum(rng.normal(0, 1, T + 20))
    y = np.convolve(y, np.ones(5) / 5, "same")[10:10 + T]
    y = (y - y.min()) / (np.ptp(y) + 1e-9)
    return lo + (hi - lo) * y


def _random_cas(rng, T, p):
    cols = []
    for _ in range(p):
        kind = rng.integers(0, 9)
        if kind == 0:
            col = np.full(T, rng.choice([0.05, 0.3, 0.7, 0.95, 1.0]))  # constant (maybe == thr)
        elif kind == 1:
            col = np.full(T, 0.01) + 0.05 * rng.random(T)  # all below
        elif kind == 2:
            col = 0.95 + 0.05 * rng.random(T)  # all above
        elif kind == 3:
            col = np.full(T, 0.05)
            col[rng.integers(0, T, 3)] = rng.choice([0.3, 0.7, 0.9, 1.0], 3)  # single spikes
            col[0] = rng.choice([0.05, 0.95])
            col[-1] = rng.choice([0.05, 0.95])  # touch the start / extrapolated end
        elif kind == 4:
            col = np.round(rng.random(T) * 10) / 10  # many values exactly on a threshold
        else:
            col = _smooth(rng, T, rng.uniform(-0.1, 0.2), rng.uniform(0.7, 1.1))
            if rng.random() < 0.5:
                col[:3] = 0.99
            if rng.random() < 0.5:
                col[-2:] = rng.choice([0.0, 0.99])
        cols.append(col)
    return np.stack(cols, 1).astype(rng.choice([np.float32, np.float32, np.float64]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend", ["fast", "auto"])   # 'auto': the compiled op when built
def test_fast_equals_reference_random(seed, backend):
    if backend == "fast" and not extension_available():
        pytest.skip("case_fast._C not built")
    rng = np.random.default_rng(seed + (1000 if backend == "auto" else 0))
    for T in (2, 3, 5, 17, 60, 750, 2100):
        for p in range(1, 6) if T < 750 else (1, 3):
            cas = _random_cas(rng, T, p)
            ids = rng.choice(20, p, replace=False)
            vs = rng.normal(0.3, 0.3, 20).astype(rng.choice([np.float32, np.float64]))
            kw = dict(num_segments=T)
            if rng.random() < 0.3:
                kw["thresholds"] = rng.permutation(np.r_[P.DEFAULT_THRESHOLDS, 0.5])  # unsorted, dup
            if rng.random() < 0.3:
                kw["scale"] = int(rng.choice([1, 2, 5, 16]))
            if rng.random() < 0.3:
                kw["drop_zero_run"] = False
            if rng.random() < 0.2:
                kw["oic_lambda"] = float(rng.choice([0.0, 0.5, 2.0]))
            T_v = int(rng.integers(T, 4 * T))
            per_r = P.generate_proposals_per_threshold_reference(cas, ids, vs, T_v, **kw)
            per_f = P.generate_proposals_per_threshold(cas, ids, vs, T_v, backend=backend, **kw)
            assert len(per_r) == len(per_f)
            for r, f in zip(per_r, per_f):
                assert _same(r, f), (seed, T, p, kw)
            assert _same(P.generate_proposals(cas, ids, vs, T_v, backend=backend, **kw),
                         np.concatenate(per_r))


def test_float32_threshold_edges():
    """float32(0.3) passes 0.30000000000000004 (float64 compare), float32(0.7) fails 0.7000000000000001."""
    thr = P.DEFAULT_THRESHOLDS
    cas = np.array([[0.3], [0.3], [0.7], [0.7], [0.0]], np.float32)
    for fn in (P.generate_proposals_reference, P.generate_proposals):
        per = (P.generate_proposals_per_threshold_reference if fn is P.generate_proposals_reference
               else P.generate_proposals_per_threshold)(cas, [0], [1.0], 5, num_segments=5)
        assert float(np.float32(0.3)) >= thr[2] and float(np.float32(0.7)) < thr[6]
        assert len(per[2]) == 1 and per[2][0, 2] == 0.0  # the whole 0.3 plateau is in
        assert len(per[6]) == 0


def test_single_snippet_and_empty():
    for fn in (P.generate_proposals_reference, P.generate_proposals):
        out = fn(np.array([[0.5]], np.float32), [1], [1.0, 1.0], 1, num_segments=1)
        assert out.shape == (5, 4)  # one run over all 24 points for thresholds 0.1 .. 0.5
        out = fn(np.zeros((10, 2), np.float32), [0, 1], [1.0, 1.0], 10)
        assert out.shape == (0, 4)


# ----------------------------------------------------------------------------------------------
# The compiled op (torch.ops.case_fast.oic_proposals) == the reference, bit for bit

needs_ext = pytest.mark.skipif(not extension_available(), reason="case_fast._C is not built")


def _per(backend, *args, **kw):
    return P.generate_proposals_per_threshold(*args, backend=backend, **kw)


@needs_ext
@pytest.mark.parametrize("K", ["oic1", "oic3"])
def test_cpp_matches_released_case(K):
    if not NPZ.is_file():
        pytest.skip("tests/reference/oic.npz missing")
    args, kw = _case_args(np.load(NPZ), K)
    ref = P.generate_proposals_per_threshold_reference(*args, **kw)
    for t, (r, f) in enumerate(zip(ref, _per("fast", *args, **kw))):
        assert _same(r, f), t
    for drop in (True, False):
        assert _same(P.generate_proposals(*args, **dict(kw, drop_zero_run=drop)),
                     P.generate_proposals_reference(*args, **dict(kw, drop_zero_run=drop)))


# Random inputs: test_fast_equals_reference_random above runs the compiled op
# against the reference.


@needs_ext
def test_cpp_edges():
    # float32 threshold edges, single snippet (the reference), empty, negative class id, bad backend
    cas = np.array([[0.3], [0.3], [0.7], [0.7], [0.0]], np.float32)
    for b in BACKENDS:
        got = P.generate_proposals(cas, [0], [1.0], 5, num_segments=5, backend=b)
        assert _same(got, P.generate_proposals_reference(cas, [0], [1.0], 5, num_segments=5))
    one = np.array([[0.5]], np.float32)
    assert _same(P.generate_proposals(one, [1], [1.0, 1.0], 1, num_segments=1),
                 P.generate_proposals_reference(one, [1], [1.0, 1.0], 1, num_segments=1))
    z = np.zeros((10, 2), np.float32)
    assert P.generate_proposals(z, [0, 1], [1.0, 1.0], 10).shape == (0, 4)
    c2 = np.linspace(0, 1, 40, dtype=np.float32)[:, None]
    assert _same(P.generate_proposals(c2, [-1], [0.1, 0.9], 40),
                 P.generate_proposals_reference(c2, [-1], [0.1, 0.9], 40))
    ro = c2.copy()
    ro.flags.writeable = False
    assert _same(P.generate_proposals(ro, [0], [0.5], 40), P.generate_proposals_reference(ro, [0], [0.5], 40))
    with pytest.raises(ValueError):
        P.generate_proposals(c2, [0], [0.5], 40, backend="nope")
    with pytest.raises(Exception):
        P.generate_proposals(c2, [5], [0.5], 40)  # class id out of range (IndexError / RuntimeError)
