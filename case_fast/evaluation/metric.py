"""Detection evaluation: ActivityNet-style mAP (method.md §6) of :class:`Detections` (``results.py``)
against a :class:`GroundTruth` (``ground_truth.py``).

Two backends compute the same average precisions, bit for bit:

* ``backend="reference"`` — :func:`_evaluate_reference`, the straightforward per-prediction loop.
  It is the specification in executable form; read it first.
* ``backend="fast"`` (default) — ``case_fast/ops/ap.py`` driving the compiled ops
  (csrc/cpu/ap_cpu.cpp): ``ap_group`` checks
  the predictions and groups them by class; then each class is ranked in NumPy (the same ``np.argsort`` call on the same array as the reference,
  which fixes the tie order) and ``ap_classes`` finds each prediction's candidate GT segments
  (tIoU and the number of thresholds reached), runs the greedy matching for all thresholds in
  one walk of the ranking and sums the AP like the reference (numpy's pairwise summation
  reproduced); the ambiguous filter by ``ambiguous_keep``. The rare predictions whose candidate
  GT segments tie in tIoU are returned by ``ap_classes`` and their classes computed again with
  numpy's order of those candidates. Without the compiled extension (or for more than 64
  thresholds) it runs the reference.

Rules (both backends)
---------------------
* tIoU of two intervals [s1, e1], [s2, e2] (seconds, no "+1"):
  ``inter = max(0, min(e1, e2) - max(s1, s2))``, ``union = (e1 - s1) + (e2 - s2) - inter``,
  ``tIoU = inter / union`` (0 where ``inter == 0``, so that two zero-length segments give 0, not NaN).
* Per class, the predictions of the class, taken in their input order, are ranked by
  ``np.argsort(scores)[::-1]`` — NumPy's default (not stable) argsort, reversed; this fixes the
  order of tied scores (for small arrays it puts the later of two tied predictions first).
* For every tIoU threshold ``thr`` (each must lie in (0, 1]) the predictions are walked in that
  order. For one prediction, the ground-truth segments of its video and class (in
  :class:`GroundTruth` order) are visited in the order ``np.argsort(tiou)[::-1]`` of their tIoU
  with it, as the released (ActivityNet) evaluator does; matched ones are skipped; the first
  unmatched one is consumed (true positive) if its tIoU >= thr, else the prediction is a false
  positive — also when its video has no ground truth of that class, and when it duplicates an
  already-matched segment. So among equal tIoUs the segment that numpy's reversed argsort puts
  first wins: for a video's few segments (insertion sort) the *later* one in GroundTruth order;
  for larger groups numpy's (CPU-dependent) order, which both backends take from numpy itself.
* precision = cumsum(tp) / (cumsum(tp) + cumsum(fp)), recall = cumsum(tp) / n_gt(class).
  AP = all-point interpolated area: precision padded with 0 at both ends and made monotone
  (non-increasing) from the right, recall padded with 0 and 1; AP = sum over the points where
  recall changes of (recall step) × (interpolated precision).
* A class with no ground truth gets AP 0 (the ActivityNet code would divide by zero); a class
  with no predictions gets AP 0. mAP at a threshold = mean of the APs of *all* classes of
  ``gt.class_names``.
* Predictions on a video that is not in ``gt.videos`` are an error (a results file for the wrong
  split), reported with a few of the unknown names. Labels must be class indices in range.
* ``ambiguous_filter=True`` (W-TALC 212-video protocol): before anything else, every prediction
  whose interval overlaps (intersection of positive length, i.e. tIoU > 0) any ambiguous segment
  of its video (``gt.ambiguous``) is dropped. The rest keep their input order.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .ground_truth import GroundTruth
from .results import Detections

__all__ = ["THUMOS_TIOU", "ANET_TIOU", "evaluate", "format_table"]

THUMOS_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ANET_TIOU = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


# --------------------------------------------------------------------------------------------
# Evaluation: shared preparation
# --------------------------------------------------------------------------------------------


def _check_tiou(tiou) -> np.ndarray:
    t = np.asarray(tiou, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all((t > 0) & (t <= 1)):
        raise ValueError(f"tIoU thresholds must be in (0, 1], got {list(t)}")
    return t


def _unknown_videos_error(unknown) -> ValueError:
    unknown = sorted(unknown)
    return ValueError(
        f"evaluate: {len(unknown)} predicted video(s) are not in the ground truth's split "
        f"(results for the wrong split?): {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
    )


def _video_lookup(video: np.ndarray, gt: GroundTruth, index=None):
    """``(codes, lut)``: entry i's video is ``gt.videos[lut[codes[i]]]`` (``lut`` None: the codes
    index gt.videos directly); raise on unknown videos.

    With ``index`` (``Detections.video_index`` / ``video_names``) only the distinct names are
    looked up (``codes`` is the index itself, ``lut`` one entry per name, -1 for unused unknown
    names). Otherwise runs of equal consecutive names (results grouped by video) are found
    with one vectorised comparison of neighbours and each run is looked up once.
    """
    vindex = {v: i for i, v in enumerate(gt.videos)}
    if index is not None:
        codes, names = index
        lut = np.array([vindex.get(v, -1) for v in names], dtype=np.int64)
        if (lut < 0).any():
            used = np.bincount(codes, minlength=len(names)) > 0
            bad = [v for v, c, u in zip(names, lut.tolist(), used.tolist()) if c < 0 and u]
            if bad:
                raise _unknown_videos_error(set(bad))
        return codes, lut
    n = video.shape[0]
    if n == 0:
        return np.empty(0, np.int64), None
    head = np.ones(n, dtype=bool)
    head[1:] = video[1:] != video[:-1]
    starts = np.flatnonzero(head)
    names = video[starts].tolist()
    codes_h = np.array([vindex.get(v, -1) for v in names], dtype=np.int64)
    if (codes_h < 0).any():
        raise _unknown_videos_error({v for v, c in zip(names, codes_h) if c < 0})
    return np.repeat(codes_h, np.diff(np.append(starts, n))), None


def _video_codes(video: np.ndarray, gt: GroundTruth, index=None) -> np.ndarray:
    """Index of each entry's video in gt.videos; raise on unknown videos (:func:`_video_lookup`)."""
    codes, lut = _video_lookup(video, gt, index)
    return codes if lut is None else lut[codes]


_LABEL_RANGE, _NON_FINITE = 1, 2  # the checks of _check_detections (also ap_group's status)


def _detections_error(kind: int, n_cls: int) -> ValueError:
    if kind == _LABEL_RANGE:
        return ValueError(f"evaluate: prediction label index out of range [0, {n_cls})")
    return ValueError("evaluate: non-finite score or segment in detections")


def _check_detections(det: Detections, gt: GroundTruth) -> None:
    n_cls = gt.n_classes
    if len(det) and (det.label.min() < 0 or det.label.max() >= n_cls):
        raise _detections_error(_LABEL_RANGE, n_cls)
    if not (np.isfinite(det.score).all() and np.isfinite(det.segment).all()):
        raise _detections_error(_NON_FINITE, n_cls)


def _summarise(ap: np.ndarray, thr: np.ndarray, gt: GroundTruth, extra: dict) -> dict:
    maps = ap.mean(axis=1) if ap.shape[1] else np.zeros(len(thr))
    out = {
        "tiou": [float(t) for t in thr],
        "ap": ap,
        "map": [float(m) for m in maps],
        "avg": float(np.mean(maps)),
    }
    for lo, hi in ((0.1, 0.5), (0.3, 0.7)):
        want = np.round(np.arange(lo, hi + 1e-9, 0.1), 10)
        # close[i, j]: np.isclose(thr[j], want[i]) (|a - b| <= atol + rtol * |b|), in one go
        close = np.abs(thr[None, :] - want[:, None]) <= 1e-8 + 1e-5 * np.abs(want[:, None])
        if close.any(axis=1).all():
            out[f"avg_{lo}:{hi}"] = float(np.mean([maps[row.argmax()] for row in close]))
    out["class_names"] = list(gt.class_names)
    out.update(extra)
    return out


def evaluate(detections: Detections, gt: GroundTruth, tiou=THUMOS_TIOU, *, ambiguous_filter=False,
             backend="fast") -> dict:
    """ActivityNet-style detection mAP (module docstring for the exact rules).

    Returns ``{"tiou": [...], "ap": ndarray (n_tiou, n_classes), "map": [per tIoU], "avg": mean of
    "map", "avg_0.1:0.5" / "avg_0.3:0.7" (when those thresholds are all present), "class_names",
    "n_detections" (evaluated, after the ambiguous filter), "n_ambiguous_dropped"}``.

    ``backend``: 'fast' (default) -- the compiled ops ``torch.ops.case_fast.ap_group`` /
    ``ap_classes`` / ``ambiguous_keep`` (csrc/cpu/ap_cpu.cpp) when the extension is built, else
    the reference; 'reference' -- the per-prediction loop. Both give the same APs, bit for bit.
    """
    from ..ops import ap as fast

    thr = _check_tiou(tiou)
    if backend == "fast" and fast.available() and len(thr) <= 64:  # the op keeps 64-bit masks
        ap, extra = fast.evaluate_fast(detections, gt, thr, ambiguous_filter)
    elif backend in ("fast", "reference"):
        ap, extra = _evaluate_reference(detections, gt, thr, ambiguous_filter)
    else:
        raise ValueError(f"unknown backend {backend!r} (use 'fast' or 'reference')")
    return _summarise(ap, thr, gt, extra)


def format_table(metrics: Mapping) -> str:
    """Two-line table: header of tIoUs and averages, then ``mAP(%)`` values (1 decimal)."""
    thr = list(metrics["tiou"])
    heads = [f"{t:g}" for t in thr]
    vals = [100.0 * m for m in metrics["map"]]
    for key in ("avg_0.1:0.5", "avg_0.3:0.7"):
        if key in metrics:
            heads.append(key[4:])
            vals.append(100.0 * metrics[key])
    is_thumos = len(thr) == len(THUMOS_TIOU) and np.allclose(thr, THUMOS_TIOU)
    heads.append("0.1:0.7" if is_thumos else "avg")
    vals.append(100.0 * metrics["avg"])
    w = max(7, max(len(h) for h in heads) + 1)
    line1 = "tIoU    " + "".join(h.rjust(w) for h in heads)
    line2 = "mAP(%)  " + "".join(f"{v:.1f}".rjust(w) for v in vals)
    return line1 + "\n" + line2


def _interpolated_ap(tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP of one ranked list of TP flags (1-D)."""
    if n_gt == 0 or tp.size == 0:
        return 0.0
    tp_cum = np.cumsum(tp).astype(np.float64)
    fp_cum = np.cumsum(1 - tp).astype(np.float64)
    rec = tp_cum / n_gt
    prec = tp_cum / (tp_cum + fp_cum)
    mprec = np.concatenate(([0.0], prec, [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]  # monotone from the right
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _ambiguous_keep_reference(det: Detections, gt: GroundTruth) -> np.ndarray:
    keep = np.ones(len(det), dtype=bool)
    for i in range(len(det)):
        amb = gt.ambiguous.get(det.video[i])
        if amb is None or amb.shape[0] == 0:
            continue
        s, e = det.segment[i]
        inter = np.minimum(e, amb[:, 1]) - np.maximum(s, amb[:, 0])
        if (inter > 0).any():
            keep[i] = False
    return keep


# --------------------------------------------------------------------------------------------
# Reference backend: the specification, one prediction at a time
# --------------------------------------------------------------------------------------------


def _tiou_one(seg, segs: np.ndarray) -> np.ndarray:
    """tIoU of one [s, e] against an (m, 2) array."""
    s, e = seg
    inter = np.maximum(0.0, np.minimum(e, segs[:, 1]) - np.maximum(s, segs[:, 0]))
    union = (e - s) + (segs[:, 1] - segs[:, 0]) - inter
    out = np.zeros(segs.shape[0])
    pos = inter > 0
    out[pos] = inter[pos] / union[pos]
    return out


def _evaluate_reference(det: Detections, gt: GroundTruth, thr: np.ndarray, ambiguous_filter: bool):
    known = set(gt.videos)
    unknown = {v for v in det.video.tolist() if v not in known}
    if unknown:
        raise _unknown_videos_error(unknown)
    _check_detections(det, gt)
    n_dropped = 0
    if ambiguous_filter:
        keep = _ambiguous_keep_reference(det, gt)
        n_dropped = int((~keep).sum())
        det = Detections(det.video[keep], det.label[keep], det.score[keep], det.segment[keep])

    # ground truth per (video, class), in GroundTruth order
    gt_segs: dict = {}
    for v, c, seg in zip(gt.video.tolist(), gt.label.tolist(), gt.segment):
        gt_segs.setdefault((v, c), []).append(seg)
    gt_segs = {k: np.array(v).reshape(-1, 2) for k, v in gt_segs.items()}
    n_gt = np.bincount(gt.label, minlength=gt.n_classes)

    ap = np.zeros((len(thr), gt.n_classes))
    for c in range(gt.n_classes):
        idx = np.flatnonzero(det.label == c)  # the class's predictions in input order
        if idx.size == 0 or n_gt[c] == 0:
            continue  # AP 0
        order = idx[np.argsort(det.score[idx])[::-1]]
        tp = np.zeros((len(thr), order.size), dtype=np.int64)
        matched = {k: np.zeros((len(thr), s.shape[0]), dtype=bool)
                   for k, s in gt_segs.items() if k[1] == c}
        for i, p in enumerate(order):
            key = (det.video[p], c)
            segs = gt_segs.get(key)
            if segs is None:
                continue  # no ground truth of this class in this video: false positive
            ious = _tiou_one(det.segment[p], segs)
            by_iou = np.argsort(ious)[::-1]  # highest tIoU first, ties in numpy's order (method.md §6)
            for t, th in enumerate(thr):
                for j in by_iou:
                    if ious[j] < th:
                        break  # no unmatched GT reaches the threshold: false positive
                    if matched[key][t, j]:
                        continue
                    matched[key][t, j] = True
                    tp[t, i] = 1
                    break
        for t in range(len(thr)):
            ap[t, c] = _interpolated_ap(tp[t], int(n_gt[c]))
    return ap, {"n_detections": len(det), "n_ambiguous_dropped": n_dropped}
