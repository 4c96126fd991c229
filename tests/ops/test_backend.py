"""The ops layer as a library: every compiled op passes torch.library.opcheck (schema, fake
kernel, autograd registration, AOT dispatch), and every op wrapper speaks the one backend
vocabulary (auto | reference | fast) with nothing global."""
import numpy as np
import pytest
import torch

import case_fast.evaluation.metric as ev
from case_fast.evaluation.ground_truth import GroundTruth
from case_fast.evaluation.results import Detections
import case_fast.evaluation.compiled_ap as ap_fast
from case_fast import ops
from case_fast.ops import proposals as P
from case_fast.ops import _extension

needs_ext = pytest.mark.skipif(not _extension.available(), reason="case_fast._C not built")


def _nms_args(n=60, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 100, n)
    seg = torch.from_numpy(np.c_[s, s + rng.uniform(1, 20, n)])
    sc = torch.from_numpy(np.round(rng.random(n), 1))  # ties
    return seg, sc, torch.from_numpy(rng.integers(0, 3, n))


@needs_ext
@pytest.mark.parametrize("method", ops.NMS_METHODS)
def test_opcheck_temporal_nms(method):
    seg, sc, gr = _nms_args()
    order = torch.from_numpy(ops.nms.processing_order(sc, gr)[0])
    op = torch.ops.case_fast.temporal_nms.default
    for args, kw in [((seg, sc, gr, method), {}), ((seg, sc, None, method), {"plus_one": False}),
                     ((seg.float(), sc.float(), gr, method), {"order": order}),
                     ((seg[:0], sc[:0], gr[:0], method), {})]:
        torch.library.opcheck(op, args, kw)


@needs_ext
def test_opcheck_oic_proposals():
    rng = np.random.default_rng(1)
    cas = torch.from_numpy(rng.random((40, 3)).astype(np.float32))
    args = (cas, torch.tensor([0, 4, 2]), torch.rand(5, dtype=torch.float64),
            torch.from_numpy(np.arange(0.1, 1.0, 0.1)), 24, 0.03, 0.15, 0.2, True)
    torch.library.opcheck(torch.ops.case_fast.oic_proposals.default, args)
    torch.library.opcheck(torch.ops.case_fast.oic_proposals.default, (cas.double(), *args[1:]))


@needs_ext
def test_opcheck_ap_ops(monkeypatch):
    """The AP ops with the arguments case_fast.evaluation.metric gives them (recorded from a run with
    ties, ambiguous segments and several classes)."""
    calls = {"group": [], "classes": [], "ambiguous_keep": []}
    real = ap_fast._ap_ops()

    def recorder(name):
        def call(*args):
            calls[name].append(args)
            return getattr(real, name)(*args)
        return call

    monkeypatch.setattr(ap_fast, "_ap_ops", lambda: ap_fast._ApOps(*(recorder(n) for n in calls)))
    rng = np.random.default_rng(2)
    vids = [f"v{i}" for i in range(4)]
    names = np.array(vids, dtype=object)
    g_v, g_l = rng.integers(0, 4, 30), rng.integers(0, 3, 30)
    g_s = np.round(np.sort(rng.uniform(0, 50, (30, 2)), axis=1), 0)
    gt = GroundTruth(names[g_v], g_l, g_s, vids, ["a", "b", "c"])
    gt.ambiguous = {"v0": np.array([[0.0, 5.0]])}
    d_v, d_l = rng.integers(0, 4, 400), rng.integers(0, 3, 400)
    d_s = np.round(np.sort(rng.uniform(0, 50, (400, 2)), axis=1), 0)
    det = Detections(names[d_v], d_l, np.round(rng.random(400), 1), d_s)
    ev.evaluate(det, gt, ev.THUMOS_TIOU, ambiguous_filter=True)
    ev.evaluate(det, gt, protocol="wtalc")  # ap_classes' W-TALC variant
    assert all(calls.values()), {k: len(v) for k, v in calls.items()}
    assert any(len(args) == 14 and args[-1] == 1 for args in calls["classes"]) == \
        ap_fast.available_first_fit()
    for name, recorded in calls.items():
        op = getattr(torch.ops.case_fast, "ap_group" if name == "group" else
                     "ap_classes" if name == "classes" else name).default
        for args in recorded[:2] + recorded[-1:]:
            torch.library.opcheck(op, args)


# ----------------------------------------------------------------------------- backends

def test_one_vocabulary_nothing_global():
    assert ops.BACKENDS == ("auto", "reference", "fast")
    assert not hasattr(ops, "set_backend") and not hasattr(ops, "get_backend")
    x = torch.rand(4, 3)
    seg, sc, _ = _nms_args(5)
    cas = np.random.default_rng(0).random((10, 2)).astype(np.float32)
    calls = [lambda b: ops.sinkhorn(x, backend=b),
             lambda b: ops.sinkhorn_rank_prior(x, torch.arange(4.0), torch.rand(3), backend=b),
             lambda b: ops.topk_mil_pool(x[None], x[None], 2, backend=b),
             lambda b: ops.temporal_nms(seg, sc, backend=b),
             lambda b: P.generate_proposals(cas, [0, 1], [0.5, 0.5], 10, backend=b)]
    for call in calls:
        with pytest.raises(ValueError, match="backend"):
            call("numpy")
        call("reference")
        call("auto")


def test_fast_never_silently_the_reference(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU tensors: no Triton kernel can run them
    x = torch.rand(4, 3)
    with pytest.raises(RuntimeError, match="fast"):
        ops.sinkhorn(x, backend="fast")
    with pytest.raises(RuntimeError, match="fast"):
        ops.topk_mil_pool(x[None], x[None], 2, backend="fast")
    torch.testing.assert_close(ops.sinkhorn(x), ops.sinkhorn_reference(x))  # auto: reference
    monkeypatch.setitem(_extension._state, "loaded", False)  # as if case_fast._C were not built
    seg, sc, _ = _nms_args(5)
    cas = np.random.default_rng(0).random((10, 2)).astype(np.float32)
    with pytest.raises(RuntimeError, match="compiled extension"):
        ops.temporal_nms(seg, sc, backend="fast")
    with pytest.raises(RuntimeError, match="compiled extension"):
        P.generate_proposals(cas, [0, 1], [0.5, 0.5], 10, backend="fast")
    assert len(P.generate_proposals(cas, [0, 1], [0.5, 0.5], 10)) > 0  # auto: reference


@needs_ext
def test_fast_proposals_refuse_what_the_op_cannot_take():
    one = np.ones((1, 1), np.float32)  # T = 1: only the reference takes it
    with pytest.raises(RuntimeError, match="T >= 2"):
        P.generate_proposals(one, [0], [1.0], 1, num_segments=1, backend="fast")
    assert P.generate_proposals(one, [0], [1.0], 1, num_segments=1).shape[1] == 4
