"""Compiled OIC proposals (torch.ops.case_fast.oic_proposals) == the reference, bit for bit."""
import numpy as np
import pytest

from case_fast import proposals as P

from test_proposals import NPZ, _case_args, _random_cas, _same

pytestmark = pytest.mark.skipif(not P.extension_available(),
                                reason="case_fast._C is not built with oic_proposals")


def _per(backend, *args, **kw):
    return P.generate_proposals_per_threshold(*args, backend=backend, **kw)


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


@pytest.mark.parametrize("seed", range(6))
def test_cpp_equals_reference_random(seed):
    rng = np.random.default_rng(1000 + seed)
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
            ref = P.generate_proposals_per_threshold_reference(cas, ids, vs, T_v, **kw)
            got = _per("fast", cas, ids, vs, T_v, **kw)
            assert len(ref) == len(got)
            for r, f in zip(ref, got):
                assert _same(r, f), (seed, T, p, kw)
            assert _same(P.generate_proposals(cas, ids, vs, T_v, **kw), np.concatenate(ref))


def test_cpp_edges():
    # float32 threshold edges, single snippet (numpy path), empty, negative class id, bad backend
    cas = np.array([[0.3], [0.3], [0.7], [0.7], [0.0]], np.float32)
    for b in P.PROPOSAL_BACKENDS:
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
