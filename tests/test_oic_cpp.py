"""Compiled OIC proposals (torch.ops.case_fast.oic_proposals) == the reference, bit for bit."""
import numpy as np
import pytest

from case_fast.ops import proposals as P
from case_fast.ops import BACKENDS, extension_available

from test_proposals import NPZ, _case_args, _random_cas, _same

pytestmark = pytest.mark.skipif(not extension_available(), reason="case_fast._C is not built")


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


# Random inputs: tests/test_proposals.py::test_fast_equals_reference_random runs the compiled op
# against the reference.


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
