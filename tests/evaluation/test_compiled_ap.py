"""The compiled evaluation path (csrc/cpu/ap_cpu.cpp: ap_group, ap_classes) against the reference,
bit for bit, on inputs aimed at its special cases: tied scores, dense and nested ground truth
(more than two candidates per prediction, the overflow list), a (video, class) with more than 64
segments (binary search instead of the linear count), thresholds closer than the level table's
buckets, duplicated thresholds, tIoU exactly 1, classes / videos without ground truth or without
predictions, and the class batches on the worker threads."""

import os
import signal
import time

import numpy as np
import pytest

import case_fast.evaluation.compiled_ap as ap_fast
from case_fast.evaluation.metric import ANET_TIOU, THUMOS_TIOU, evaluate
from case_fast.evaluation.results import Detections
from case_fast.evaluation.ground_truth import GroundTruth

needs_ops = pytest.mark.skipif(not ap_fast.available(),
                               reason="case_fast._C without the AP ops")


def _dense_case(seed, n_vid=5, n_cls=5, n_det=1500, decimals=1, big_group=False, grid=False):
    """Ground truth dense and nested (short segments inside long ones), predictions around it,
    long ones spanning many segments, exact copies, zero-length ones; rounded scores (ties).
    Class n_cls - 1 has no ground truth, video n_vid - 1 has none; class n_cls - 2 no predictions.
    ``grid``: all times integers (many exactly equal tIoUs: the GT-index tie-break)."""
    r = np.random.default_rng(seed)
    vids = [f"v{i}" for i in range(n_vid)]
    names = np.array(vids, dtype=object)
    g_v, g_l, g_s = [], [], []
    for v in range(n_vid - 1):
        for c in range(n_cls - 1):
            k = 100 if (big_group and v == 0 and c == 0) else int(r.integers(0, 25))
            st = np.round(r.uniform(0, 60, k), 1)
            ln = np.round(np.where(r.random(k) < 0.2, r.uniform(10, 30, k), r.uniform(0, 4, k)), 1)
            g_v += [v] * k
            g_l += [c] * k
            g_s += list(zip(st, st + ln))
    g_v, g_l, g_s = np.array(g_v), np.array(g_l), np.array(g_s).reshape(-1, 2)
    gt = GroundTruth(names[g_v], g_l, g_s, vids, [f"c{i}" for i in range(n_cls)])
    pick = r.integers(0, len(g_v), n_det)
    dv, dl = g_v[pick].copy(), g_l[pick].copy()
    s = g_s[pick, 0] + np.round(r.normal(0, 1.5, n_det), 1)
    e = g_s[pick, 1] + np.round(r.normal(0, 1.5, n_det), 1)
    kind = r.random(n_det)
    exact = kind < 0.1  # copies of a GT segment: tIoU 1
    s[exact], e[exact] = g_s[pick[exact], 0], g_s[pick[exact], 1]
    long_ = (kind >= 0.1) & (kind < 0.2)  # spanning many segments
    e[long_] = s[long_] + np.round(r.uniform(20, 60, long_.sum()), 1)
    rand = (kind >= 0.2) & (kind < 0.35)  # anywhere: any video (also the one without GT), class
    dv[rand] = r.integers(0, n_vid, rand.sum())
    dl[rand] = r.integers(0, n_cls, rand.sum())
    zero = (kind >= 0.35) & (kind < 0.38)
    e[zero] = s[zero]
    dl[dl == n_cls - 2] = 0  # class n_cls - 2: no predictions
    s, e = np.minimum(s, e), np.maximum(s, e)
    if grid:
        s, e = np.round(s), np.round(e)
        gt = GroundTruth(gt.video, gt.label, np.round(gt.segment), vids, gt.class_names)
    sc = np.round(r.uniform(0, 1, n_det), decimals)
    return Detections(names[dv], dl, sc, np.c_[s, e]), gt


TIOUS = [THUMOS_TIOU, ANET_TIOU, (1.0,), (0.5, 0.5, 0.3), (0.5, 0.5004, 0.1, 0.9), (0.7, 0.05, 0.3)]


@pytest.mark.parametrize("seed", range(8))
def test_dense_ground_truth_equals_reference(seed):
    det, gt = _dense_case(seed, decimals=1 + seed % 2, big_group=seed % 3 == 0, grid=seed >= 5)
    for tiou in TIOUS:
        a = evaluate(det, gt, tiou, backend="reference")
        b = evaluate(det, gt, tiou, backend="fast")
        assert np.array_equal(a["ap"], b["ap"]), tiou  # bit for bit
        assert a["ap"].any()


def test_more_than_two_candidates_happen():
    """The dense cases do exercise predictions with more than two candidate segments (the
    overflow list) and a (video, class) with more than 64 segments."""
    det, gt = _dense_case(0, big_group=True)
    vid = {v: i for i, v in enumerate(gt.videos)}
    n_cand = []
    for v, c, (s, e) in zip(det.video, det.label, det.segment):
        sel = (gt.video == v) & (gt.label == c)
        g = gt.segment[sel]
        inter = np.maximum(np.minimum(e, g[:, 1]) - np.maximum(s, g[:, 0]), 0.0)
        iou = inter / np.maximum((e - s) + (g[:, 1] - g[:, 0]) - inter, 1e-12)
        n_cand.append(int((iou >= 0.1).sum()))
    assert max(n_cand) > 2 and sum(n > 2 for n in n_cand) > 10
    assert np.bincount(gt.label * len(vid) + np.array([vid[v] for v in gt.video])).max() > 64


@needs_ops
def test_repeated_calls_agree_with_the_reference():
    det, gt = _dense_case(3, n_cls=7, n_det=2500, decimals=2)
    ref = evaluate(det, gt, THUMOS_TIOU, backend="reference")["ap"]
    for _ in range(2):
        assert np.array_equal(evaluate(det, gt, THUMOS_TIOU, backend="fast")["ap"], ref)


@needs_ops
def test_video_index_with_unused_unknown_names():
    """Detections.video_index may name videos outside the split as long as none is used."""
    det, gt = _dense_case(1)
    names = gt.videos + ["not_in_split"]
    index = np.array([names.index(v) for v in det.video])
    d2 = Detections(det.video, det.label, det.score, det.segment, index, names)
    for tiou in (THUMOS_TIOU, (0.5,)):
        assert np.array_equal(evaluate(d2, gt, tiou)["ap"],
                              evaluate(det, gt, tiou, backend="reference")["ap"])


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_check_errors_and_their_order(backend):
    det, gt = _dense_case(2, n_det=200)
    bad_label = det.label.copy()
    bad_label[5] = gt.n_classes
    bad_score = det.score.copy()
    bad_score[7] = np.nan
    bad_seg = det.segment.copy()
    bad_seg[9, 1] = np.inf
    with pytest.raises(ValueError, match="label index out of range"):
        evaluate(Detections(det.video, bad_label, det.score, det.segment), gt, backend=backend)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(Detections(det.video, det.label, bad_score, det.segment), gt, backend=backend)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(Detections(det.video, det.label, det.score, bad_seg), gt, backend=backend)
    with pytest.raises(ValueError, match="label index out of range"):  # label first
        evaluate(Detections(det.video, bad_label, bad_score, bad_seg), gt, backend=backend)


@needs_ops
def test_ap_group_op():
    import torch

    r = np.random.default_rng(0)
    for n in (0, 7, 200_000):  # 200k: counted and scattered in two parts
        label = r.integers(0, 6, n)
        score = np.round(r.random(n), 2)
        seg = r.random((n, 2))
        status, off, order, cscore = torch.ops.case_fast.ap_group(
            torch.from_numpy(label), torch.from_numpy(score), torch.from_numpy(seg), 6)
        assert int(status) == 0
        expect = np.argsort(label, kind="stable")
        assert np.array_equal(order.numpy(), expect)
        assert np.array_equal(cscore.numpy(), score[expect])
        assert np.array_equal(off.numpy(), np.r_[0, np.cumsum(np.bincount(label, minlength=6))])
        if n:
            bad = label.copy()
            bad[-1] = -1
            seg2 = seg.copy()
            seg2[0, 0] = np.nan
            args = (torch.from_numpy(score), torch.from_numpy(seg2), 6)
            assert int(torch.ops.case_fast.ap_group(torch.from_numpy(bad), *args)[0]) == 1
            assert int(torch.ops.case_fast.ap_group(torch.from_numpy(label), *args)[0]) == 2


@needs_ops
def test_ap_classes_op_subsets_and_checks():
    """ap_classes on any subset of the classes, in any order, gives those classes' APs; a rank
    out of range is refused."""
    import torch

    det, gt = _dense_case(4)
    thr = np.array(THUMOS_TIOU)
    ref = evaluate(det, gt, thr, backend="reference")["ap"]
    n_cls, n_vid = gt.n_classes, len(gt.videos)
    vindex = {v: i for i, v in enumerate(gt.videos)}
    codes = np.array([vindex[v] for v in det.video], dtype=np.int64)
    status, off, order, cscore = torch.ops.case_fast.ap_group(
        torch.from_numpy(det.label), torch.from_numpy(det.score), torch.from_numpy(det.segment),
        n_cls)
    o, cs = off.numpy(), cscore.numpy()
    rank = np.empty(len(det), np.int64)
    for c in range(n_cls):
        rank[o[c]:o[c + 1]] = np.argsort(cs[o[c]:o[c + 1]])
    g_codes = np.array([vindex[v] for v in gt.video], dtype=np.int64)
    g_key = gt.label * n_vid + g_codes
    g_order = np.argsort(g_key, kind="stable")
    g_off = np.r_[0, np.cumsum(np.bincount(g_key, minlength=n_cls * n_vid))]

    def run(classes, rank_, ties=()):
        ap, tied = torch.ops.case_fast.ap_classes(
            torch.from_numpy(det.segment), torch.from_numpy(codes),
            torch.from_numpy(np.arange(n_vid)), order, off,
            torch.tensor(classes, dtype=torch.int64),
            torch.from_numpy(rank_), torch.from_numpy(gt.segment[g_order]),
            torch.from_numpy(g_off), torch.from_numpy(thr), *map(torch.from_numpy, ties))
        return ap.numpy(), np.sort(tied.numpy())

    first, tied = run(list(range(n_cls)), rank)
    assert tied.size  # this case has predictions whose candidates tie in tIoU
    cls_tied = np.unique(np.searchsorted(o, tied, side="right") - 1)
    assert np.isnan(first[cls_tied]).all()  # not computed without numpy's order
    rest = np.setdiff1d(np.arange(n_cls), cls_tied)
    assert np.array_equal(first[rest].T, ref[:, rest])
    # numpy's order of their candidates, passed back: the reference's APs
    ties = ap_fast._tie_orders(tied, o, order.numpy(), det.segment, codes, None, gt.segment[g_order],
                          g_off, n_vid, float(thr.min()))
    for classes in ([0, 1, 2, 3, 4], [3, 0], [4], []):
        out, tied2 = run(classes, rank, ties)
        assert out.shape == (len(classes), len(thr)) and tied2.size == 0
        assert np.array_equal(out.T, ref[:, classes])
    bad = rank.copy()
    bad[o[0]] = o[1] - o[0]  # position past the end of class 0
    with pytest.raises(RuntimeError, match="rank index out of range"):
        run([0], bad, ties)
    with pytest.raises(RuntimeError, match="go together"):
        run([0], rank, ties[:2])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_makes_its_own_threads():
    """A child forked after an evaluation (e.g. a process pool) does not wait on the parent's
    pool threads, which it does not have."""
    det, gt = _dense_case(5, n_det=300)
    ref = evaluate(det, gt, THUMOS_TIOU)["ap"]  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # child
        ok = np.array_equal(evaluate(det, gt, THUMOS_TIOU)["ap"], ref)
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
