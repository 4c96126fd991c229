"""Detection mAP (method.md §6): hand-computed cases, tie rules, both backends equal."""


import numpy as np
import pytest

from case_fast.evaluation.metric import ANET_TIOU, THUMOS_TIOU, evaluate, format_table
from case_fast.evaluation.ground_truth import GroundTruth
from case_fast.evaluation.results import Detections

BACKENDS = ("reference", "fast")


def _det(rows):
    """rows: (video, label, score, start, end)"""
    if not rows:
        return Detections.empty()
    v, l, s, a, b = zip(*rows)
    return Detections(np.array(v, dtype=object), np.array(l), np.array(s, float), np.c_[a, b])


def _gt(rows, videos, n_cls, ambiguous=None):
    v, l, a, b = zip(*rows)
    return GroundTruth(np.array(v, dtype=object), np.array(l), np.c_[a, b], videos,
                       [f"c{i}" for i in range(n_cls)], ambiguous or {})


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed(backend):
    # GT: A/c0 g0=[0,10] g1=[20,30] (g1 never detected); B/c0 g2=[0,10]; A/c1 g3=[5,15]
    gt = _gt([("A", 0, 0, 10), ("A", 0, 20, 30), ("B", 0, 0, 10), ("A", 1, 5, 15)], ["A", "B"], 2)
    det = _det([
        ("A", 0, 0.9, 0, 10),  # TP on g0 (tIoU 1)
        ("A", 0, 0.8, 0, 10),  # duplicate of g0 -> FP
        ("B", 0, 0.7, 0, 5),  # tIoU 0.5 with g2: TP at 0.5, FP at 0.7
        ("B", 1, 0.6, 0, 10),  # B has no GT of c1 -> FP
        ("A", 1, 0.5, 5, 15),  # TP on g3
    ])
    m = evaluate(det, gt, (0.5, 0.7), backend=backend)
    # c0 @0.5: TP FP TP, n_gt 3: precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3
    #   interpolated: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    # c0 @0.7: TP FP FP: AP = 1/3 * 1 = 1/3
    # c1: FP TP, n_gt 1: precision at the TP 1/2, recall 1 -> AP 1/2 at both
    expected = np.array([[5 / 9, 1 / 2], [1 / 3, 1 / 2]])
    np.testing.assert_allclose(m["ap"], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["map"], [19 / 36, 5 / 12], atol=1e-12)
    assert m["avg"] == pytest.approx((19 / 36 + 5 / 12) / 2, abs=1e-12)
    assert m["class_names"] == ["c0", "c1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_next_best_unmatched_gt(backend):
    # g0=[0,10], g1=[8,20]. a=[0,10] takes g0 (tIoU 1). b=[2,12]: tIoU g0 8/12, g1 4/18=0.22;
    # g0 is taken, so at 0.2 b takes g1 (TP, AP 1); at 0.5 b is FP (AP 1/2).
    gt = _gt([("V", 0, 0, 10), ("V", 0, 8, 20)], ["V"], 1)
    det = _det([("V", 0, 0.9, 0, 10), ("V", 0, 0.8, 2, 12)])
    m = evaluate(det, gt, (0.2, 0.5), backend=backend)
    np.testing.assert_allclose(m["ap"][:, 0], [1.0, 0.5], atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_tiou_two_unmatched_takes_numpy_reversed_argsort_first(backend):
    # method.md §6: the GT are visited in np.argsort(tiou)[::-1] order; for two equal tIoUs numpy's
    # argsort keeps [0, 1], so reversed the LATER one (g1) comes first.
    # g0=[0,10], g1=[5,15]; a=[2.5,12.5] has tIoU 7.5/12.5 = 0.6 with both -> takes g1.
    # b=[0,10] (lower score): tIoU 1 with the free g0 -> TP: AP = 1. (Taking g0 would leave b
    # with g1 at tIoU 1/3 -> FP at 0.5: AP = 1/2.)
    assert list(np.argsort(np.array([0.6, 0.6]))[::-1]) == [1, 0]
    gt = _gt([("V", 0, 0, 10), ("V", 0, 5, 15)], ["V"], 1)
    det = _det([("V", 0, 0.9, 2.5, 12.5), ("V", 0, 0.8, 0, 10)])
    assert evaluate(det, gt, (0.5,), backend=backend)["ap"][0, 0] == 1.0
    # the same segments, GT listed the other way round: a takes the later one again ([0,10]),
    # b = [5,15] then has tIoU 1 with the free one -> AP 1; b = [0,10] instead -> FP: AP 1/2
    gt = _gt([("V", 0, 5, 15), ("V", 0, 0, 10)], ["V"], 1)
    assert evaluate(det, gt, (0.5,), backend=backend)["ap"][0, 0] == pytest.approx(0.5, abs=1e-12)
    det2 = _det([("V", 0, 0.9, 2.5, 12.5), ("V", 0, 0.8, 5, 15)])
    assert evaluate(det2, gt, (0.5,), backend=backend)["ap"][0, 0] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_tiou_one_matched_one_unmatched(backend):
    # g0=[0,2], g1=[4,6], g2=[10,12] (equal lengths). p0 = g1 exactly (score 0.9) takes g1.
    # p1 = [3,7] (0.8): tIoU 0.5 with g1 only -> g1 matched -> FP at 0.3.
    # p2 = [0,6] (0.7): tIoU 1/3 with g0 and g1 (tie; numpy order: g1 first, matched -> skipped)
    # -> takes g0 at thresholds <= 1/3. p3 = [0,2] (0.6): g0 taken at 0.3 -> FP there; TP at 0.5.
    gt = _gt([("V", 0, 0, 2), ("V", 0, 4, 6), ("V", 0, 10, 12)], ["V"], 1)
    det = _det([("V", 0, 0.9, 4, 6), ("V", 0, 0.8, 3, 7), ("V", 0, 0.7, 0, 6), ("V", 0, 0.6, 0, 2)])
    ap = evaluate(det, gt, (0.3, 0.5), backend=backend)["ap"][:, 0]
    # 0.3: TP FP TP FP -> precision 1, 2/3 at recall 1/3, 2/3 -> AP (1 + 2/3) / 3
    # 0.5: TP TP(p1, tIoU 0.5 with g1? no: g1 taken) ... computed by hand below
    # 0.5: p0 TP (g1); p1 tIoU 0.5 with g1 only, taken -> FP; p2 tIoU 1/3 < 0.5 -> FP; p3 TP (g0)
    #      -> precision 1 at recall 1/3, 2/4 at 2/3 -> AP (1 + 0.5) / 3
    assert ap[0] == pytest.approx((1 + 2 / 3) / 3, abs=1e-12)
    assert ap[1] == pytest.approx((1 + 0.5) / 3, abs=1e-12)
    ref = evaluate(det, gt, (0.3, 0.5), backend="reference")["ap"]
    assert np.array_equal(evaluate(det, gt, (0.3, 0.5), backend=backend)["ap"], ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_tiou_inside_a_multi_class_file(backend):
    # two classes, two videos; in each (video, class) a long prediction ties between two GT of
    # equal length, then a prediction equal to the earlier GT: the tie rule decides its fate.
    rows_gt, rows_det = [], []
    for v in ("V1", "V2"):
        for c in (0, 1):
            off = 100 * c
            rows_gt += [(v, c, off + 10, off + 14), (v, c, off + 20, off + 24)]
            rows_det += [(v, c, 0.9 - 0.1 * c, off + 8, off + 26),     # tIoU 4/18 with both
                         (v, c, 0.5 - 0.1 * c, off + 10, off + 14),   # = the earlier GT
                         (v, c, 0.3 - 0.1 * c, off + 50, off + 54)]   # nothing
    gt = _gt(rows_gt, ["V1", "V2"], 2)
    det = _det(rows_det)
    m = evaluate(det, gt, (0.2,), backend=backend)
    # the long one takes the later GT ([20,24]): the copy of [10,14] is a TP too: per class the
    # ranking is long(V1), long(V2), copy(V1), copy(V2), miss, miss -> 4 TPs of 4 GT in 4 -> AP 1
    assert m["ap"][0].tolist() == [1.0, 1.0]
    assert np.array_equal(m["ap"], evaluate(det, gt, (0.2,), backend="reference")["ap"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_order_is_numpy_argsort_reversed(backend):
    # one GT [0,10]; q0 hits it, q1 misses; equal scores. Walking q1 first: FP, TP -> AP 1/2;
    # q0 first (a stable descending sort): TP, FP -> AP 1.
    gt = _gt([("V", 0, 0, 10)], ["V"], 1)
    det = _det([("V", 0, 0.5, 0, 10), ("V", 0, 0.5, 20, 30)])
    order = np.argsort(det.score)[::-1]
    stable = np.argsort(-det.score, kind="stable")
    assert list(stable) == [0, 1]
    expected = 0.5 if order[0] == 1 else 1.0
    # NumPy's introsort/insertion sort keeps [0, 1] for two equal keys, so reversed -> [1, 0]
    assert expected == 0.5
    assert evaluate(det, gt, (0.5,), backend=backend)["ap"][0, 0] == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_degenerate(backend):
    gt = _gt([("A", 0, 0, 10)], ["A", "B"], 3)  # class 1, 2 without GT -> AP 0
    m = evaluate(Detections.empty(), gt, THUMOS_TIOU, backend=backend)
    assert m["ap"].shape == (7, 3) and not m["ap"].any()
    det = _det([("B", 2, 1.0, 0, 10), ("A", 0, 0.3, 3, 3)])  # zero-length prediction -> FP
    assert not evaluate(det, gt, THUMOS_TIOU, backend=backend)["ap"].any()


def test_unknown_video_and_bad_label_rejected():
    gt = _gt([("A", 0, 0, 10)], ["A"], 1)
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="video_zzz"):
            evaluate(_det([("A", 0, 1.0, 0, 1), ("video_zzz", 0, 1.0, 0, 1)]), gt, backend=backend)
        with pytest.raises(ValueError, match="label"):
            evaluate(_det([("A", 3, 1.0, 0, 1)]), gt, backend=backend)
    with pytest.raises(ValueError):
        evaluate(Detections.empty(), gt, (0.0, 0.5))
    with pytest.raises(ValueError):
        evaluate(Detections.empty(), gt, backend="nope")


def _random_case(seed, n_vid, n_cls, n_gt, n_det, decimals, tmax=50.0):
    r = np.random.default_rng(seed)
    vids = [f"v{i}" for i in range(n_vid)]
    names = np.array(vids, dtype=object)
    gv, gl = r.integers(0, n_vid, n_gt), r.integers(0, max(n_cls - 1, 1), n_gt)  # last class: no GT
    gs = np.round(r.uniform(0, tmax, n_gt), 1)
    ge = gs + np.round(r.uniform(0, 8, n_gt), 1)
    gt = GroundTruth(names[gv], gl, np.c_[gs, ge], vids, [f"c{i}" for i in range(n_cls)],
                     {vids[0]: np.array([[5.0, 7.0], [30.0, 31.5]])})
    k = n_det // 2 if n_gt else 0
    j = r.integers(0, max(n_gt, 1), k)
    dv = np.r_[gv[j], r.integers(0, n_vid, n_det - k)]
    dl = np.r_[gl[j], r.integers(0, n_cls, n_det - k)]
    dl[dl == 1] = 0 if n_cls > 2 else dl[dl == 1]  # class 1: no predictions (when n_cls > 2)
    ds = np.r_[gs[j] + np.round(r.normal(0, 1, k), 1), np.round(r.uniform(0, tmax, n_det - k), 1)]
    de = ds + np.abs(np.round(np.r_[ge[j] - gs[j] + r.normal(0, 1, k), r.uniform(0, 8, n_det - k)], 1))
    sc = np.round(r.uniform(0, 1, n_det), decimals)  # rounded: many ties
    return Detections(names[dv], dl, sc, np.c_[ds, de]), gt


CASES = [  # (n_vid, n_cls, n_gt, n_det, decimals)
    (1, 1, 1, 0, 1), (3, 4, 0, 50, 1), (4, 3, 12, 1, 2), (6, 4, 30, 300, 1), (5, 5, 40, 400, 2),
    (2, 2, 60, 1500, 2), (8, 3, 25, 200, 0), (3, 6, 50, 800, 1),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("seed", range(4))
def test_fast_equals_reference(case, seed):
    det, gt = _random_case(100 * case + seed, *CASES[case], tmax=30.0 if case == 5 else 50.0)
    for tiou in (THUMOS_TIOU, ANET_TIOU, (0.7, 0.3, 0.05)):
        for amb in (False, True):
            a = evaluate(det, gt, tiou, ambiguous_filter=amb, backend="reference")
            for backend in ("fast",):  # 'fast': the compiled ops when built
                b = evaluate(det, gt, tiou, ambiguous_filter=amb, backend=backend)
                assert np.array_equal(a["ap"], b["ap"]), (tiou, amb, backend)  # bit for bit
                assert a["map"] == b["map"] and a["n_detections"] == b["n_detections"]
                assert a["n_ambiguous_dropped"] == b["n_ambiguous_dropped"]


def test_video_index_codes():
    """Detections carrying video_index / video_names (from_proposals) evaluate like plain ones."""
    det, gt = _random_case(7, 6, 4, 30, 300, 1)
    per = {}
    for v in gt.videos[::-1] + ["not_evaluated"]:  # mapping order != gt order; an empty extra video
        sel = det.video == v
        per[v] = np.c_[det.label[sel], det.score[sel], det.segment[sel]]
    d2 = Detections.from_proposals(per)
    assert d2.video_names[-1] == "not_evaluated" and d2.video.tolist() == [
        d2.video_names[i] for i in d2.video_index]
    plain = Detections(d2.video, d2.label, d2.score, d2.segment)
    for backend in BACKENDS:
        for amb in (False, True):
            a = evaluate(plain, gt, THUMOS_TIOU, ambiguous_filter=amb, backend=backend)
            b = evaluate(d2, gt, THUMOS_TIOU, ambiguous_filter=amb, backend=backend)
            assert np.array_equal(a["ap"], b["ap"]) and a["n_detections"] == b["n_detections"]
    per["video_zzz"] = np.array([[0, 0.5, 1.0, 2.0]])
    with pytest.raises(ValueError, match="video_zzz"):
        evaluate(Detections.from_proposals(per), gt)
    with pytest.raises(ValueError):
        Detections(d2.video, d2.label, d2.score, d2.segment, video_index=d2.video_index)
    with pytest.raises(ValueError):
        Detections(d2.video, d2.label, d2.score, d2.segment, d2.video_index + 100, d2.video_names)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ambiguous_filter(backend):
    gt = _gt([("A", 0, 0, 10)], ["A"], 1, ambiguous={"A": [[20.0, 30.0]]})
    det = _det([("A", 0, 0.9, 25, 40),  # overlaps the ambiguous segment -> dropped
                ("A", 0, 0.8, 30, 35),  # touches it only (no overlap) -> kept, FP
                ("A", 0, 0.7, 0, 10)])  # TP
    m = evaluate(det, gt, (0.5,), ambiguous_filter=True, backend=backend)
    assert m["n_ambiguous_dropped"] == 1 and m["ap"][0, 0] == pytest.approx(0.5)
    assert evaluate(det, gt, (0.5,), backend=backend)["ap"][0, 0] == pytest.approx(1 / 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ground_truth_as_predictions_is_perfect(thumos_gt, backend):
    gt = thumos_gt
    det = Detections(gt.video, gt.label, np.ones(gt.label.size), gt.segment)
    m = evaluate(det, gt, THUMOS_TIOU, backend=backend)
    assert m["map"] == [1.0] * 7 and m["avg"] == 1.0
    assert "0.1:0.7" in format_table(m) and "100.0" in format_table(m)
