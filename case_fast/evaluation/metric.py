"""Detection evaluation: ActivityNet-style mAP (method.md §6) under each protocol of
``protocols.py`` (basnet210, co2net, delu, wtalc): a protocol prepares the input (snippet grid,
ambiguous filter, length drop, unknown videos) and this one matching/AP path scores it, with
W-TALC's first-fit matching and precision-sum AP as its one variant. It scores
:class:`Detections` (``results.py``) against a :class:`GroundTruth` (``ground_truth.py``).

Two backends compute the same average precisions, bit for bit:

* ``backend="reference"`` — :func:`_evaluate_reference`, the straightforward per-prediction loop.
  It is the specification in executable form; read it first.
* ``backend="fast"`` (taken by the default ``"auto"`` when built) — ``compiled_ap.py`` driving the compiled ops
  (csrc/cpu/ap_cpu.cpp): ``ap_group`` checks
  the predictions and groups them by class; then each class is ranked in NumPy (the same ``np.argsort`` call on the same array as the reference,
  which fixes the tie order) and ``ap_classes`` finds each prediction's candidate GT segments
  (tIoU and the number of thresholds reached), runs the greedy matching for all thresholds in
  one walk of the ranking and sums the AP like the reference (numpy's pairwise summation
  reproduced); the ambiguous filter by ``matching.ambiguous_keep_reference``. The rare predictions whose candidate
  GT segments tie in tIoU are returned by ``ap_classes`` and their classes computed again with
  numpy's order of those candidates. Without the compiled extension (or for more than 64
  thresholds) ``"auto"`` runs the reference and ``"fast"`` is an error.

Rules (both backends)
---------------------
* tIoU of two intervals [s1, e1], [s2, e2] (seconds, no "+1"):
  ``inter = max(0, min(e1, e2) - max(s1, s2))``, ``union = (e1 - s1) + (e2 - s2) - inter``,
  ``tIoU = inter / union`` (0 where ``inter == 0``, so that two zero-length segments give 0, not NaN;
  co2net / delu's 0/0 match is set up by ``protocols.prepare``).
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
* W-TALC's variant (``protocol="wtalc"``): ranked by ``np.argsort(-scores)``; each prediction takes
  the first unmatched segment in GroundTruth order whose tIoU reaches the threshold (first fit);
  AP = sum over the TPs of the precision at their rank, over n_gt (not interpolated).
* ``ambiguous_filter=True`` (basnet210 only; no released evaluator's rule): before anything else, every prediction
  whose interval overlaps (intersection of positive length, i.e. tIoU > 0) any ambiguous segment
  of its video (``gt.ambiguous``) is dropped. The rest keep their input order.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .ground_truth import GroundTruth
from .matching import (ambiguous_keep_reference, check_detections, interval_iou,
                       unknown_videos_error)
from .results import Detections

__all__ = ["THUMOS_TIOU", "ANET_TIOU", "evaluate", "format_table", "format_protocols"]

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


def _summarise(ap: np.ndarray, thr: np.ndarray, gt: GroundTruth, extra: dict, scored=None) -> dict:
    """``scored``: the classes the mean runs over (default: all)."""
    part = ap if scored is None else ap[:, scored]
    maps = part.mean(axis=1) if part.shape[1] else np.zeros(len(thr))
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


def evaluate(detections: Detections, gt: GroundTruth, tiou=None, *, protocol="basnet210",
             ambiguous_filter=False, backend="auto") -> dict:
    """Detection mAP under ``protocol`` (``protocols.py``: basnet210, co2net, delu,
    wtalc; wtalc212 = co2net); the module docstring has the matching and AP rules.

    ``tiou``: the thresholds (default: the protocol's reported ones). ``ambiguous_filter``:
    basnet210 only, drop the predictions that overlap an ambiguous segment in seconds (the grid
    protocols filter as their released code does whenever ``gt.ambiguous`` holds segments; that the
    file exists, which ``wtalc`` requires, is for the caller to check: ``case-fast eval``, the
    trainer's Evaluator).

    Returns ``{"protocol", "tiou": [...], "ap": ndarray (n_tiou, n_classes), "map": [per tIoU],
    "avg": mean of "map", "avg_0.1:0.5" / "avg_0.3:0.7" (when those thresholds are all present),
    "class_names", "n_detections" (evaluated), "n_ambiguous_dropped", "n_short_dropped",
    "unknown_videos" ({video: predictions}), "zeroed_by" (wtalc: classes without predictions)}``.

    ``backend`` (the words of ``case_fast.ops``): 'auto' -- the compiled ops
    ``torch.ops.case_fast.ap_group`` / ``ap_classes`` / ``ambiguous_keep``
    (csrc/cpu/ap_cpu.cpp) when the extension is built (and at most 64 thresholds), else the
    reference; 'fast' -- the compiled ops, an error when they cannot run; 'reference' -- the
    per-prediction loop. All give the same APs, bit for bit.
    """
    from . import protocols as P
    from ..ops import _backend
    from . import compiled_ap as fast

    proto = P.get(protocol)
    thr = _check_tiou(proto.tiou if tiou is None else tiou)
    if ambiguous_filter and proto.grid:
        raise ValueError(f"protocol {proto.name} filters ambiguous segments as its released code does; "
                         "ambiguous_filter is for basnet210")
    runs = fast.available_first_fit() if proto.first_fit else fast.available()
    use_fast = _backend.use_fast(backend, runs and len(thr) <= 64, lambda: RuntimeError(
        "evaluate: backend='fast' needs the compiled extension case_fast._C (rebuilt from these "
        "sources for protocol wtalc) and at most 64 thresholds"))
    check_detections(detections, gt)
    prep = P.prepare(detections, gt, proto, use_fast)
    det, pgt = prep.det, prep.gt
    run = fast.evaluate_fast if use_fast else _evaluate_reference
    ap, extra = run(det, pgt, thr, ambiguous_filter, proto.first_fit)
    extra["n_ambiguous_dropped"] += prep.n_ambiguous_dropped
    extra.update(protocol=proto.name, n_short_dropped=prep.n_short_dropped,
                 unknown_videos=prep.unknown)
    scored = None
    if proto.grid:  # A1: the classes with ground truth
        scored = np.bincount(gt.label, minlength=gt.n_classes) > 0
    if proto.missing_class_zeroes:
        n_pred = np.bincount(det.label, minlength=gt.n_classes)
        missing = [c for c, k, g in zip(gt.class_names, n_pred, scored) if g and k == 0]
        extra["zeroed_by"] = missing
        if missing:  # D3: getLocMAP returns 0 for the threshold
            ap = np.zeros_like(ap)
    return _summarise(ap, thr, gt, extra, scored)


def _columns(metrics: Mapping):
    """(headings, values in %) of one evaluation: its tIoUs, then its averages."""
    thr = list(metrics["tiou"])
    heads = [f"{t:g}" for t in thr]
    vals = [100.0 * m for m in metrics["map"]]
    for key in ("avg_0.1:0.5", "avg_0.3:0.7"):
        if key in metrics:
            heads.append(key[4:])
            vals.append(100.0 * metrics[key])
    is_thumos = len(thr) == len(THUMOS_TIOU) and np.allclose(thr, THUMOS_TIOU)
    if not (len(thr) == 5 and "avg_0.1:0.5" in metrics):  # (else the same number as 0.1:0.5)
        heads.append("0.1:0.7" if is_thumos else "avg")
        vals.append(100.0 * metrics["avg"])
    return heads, vals


def _heading(metrics: Mapping) -> str:
    from .protocols import get

    proto = get(metrics.get("protocol", "basnet210"))
    return f"protocol {proto.name}: reproduces {proto.reproduces}"


def format_table(metrics: Mapping) -> str:
    """The protocol and the code it reproduces, then the header of tIoUs and averages and the
    ``mAP(%)`` values (1 decimal)."""
    heads, vals = _columns(metrics)
    w = max(7, max(len(h) for h in heads) + 1)
    line1 = "tIoU    " + "".join(h.rjust(w) for h in heads)
    line2 = "mAP(%)  " + "".join(f"{v:.1f}".rjust(w) for v in vals)
    return _heading(metrics) + "\n" + line1 + "\n" + line2


def format_protocols(results: Mapping[str, Mapping]) -> str:
    """Several protocols' evaluations of one results file side by side: one row each (mAP %, 1
    decimal; blank where a protocol does not report that column), then what each reproduces."""
    cols = {name: dict(zip(*_columns(m))) for name, m in results.items()}
    heads = []
    for c in cols.values():
        heads += [h for h in c if h not in heads]
    nums = sorted((h for h in heads if ":" not in h and h != "avg"), key=float)
    heads = nums + [h for h in heads if h not in nums]
    w = max(7, max(len(h) for h in heads) + 1)
    n = max(10, max(len(k) for k in results) + 2)
    lines = ["tIoU".ljust(n) + "".join(h.rjust(w) for h in heads)]
    for name, c in cols.items():
        lines.append(name.ljust(n) + "".join((f"{c[h]:.1f}" if h in c else "").rjust(w) for h in heads))
    return "\n".join(["mAP(%) by protocol"] + lines + [_heading(m) for m in results.values()])


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


# --------------------------------------------------------------------------------------------
# Reference backend: the specification, one prediction at a time
# --------------------------------------------------------------------------------------------


def _precision_sum_ap(tp: np.ndarray, n_gt: int) -> float:
    """W-TALC's AP (PROTOCOLS.md D6): the precisions at the TP ranks, summed, over n_gt."""
    if n_gt == 0 or not tp.any():
        return 0.0
    rank = np.flatnonzero(tp) + 1
    k = np.arange(1, rank.size + 1)
    return float(np.sum(k / rank)) / n_gt


def _evaluate_reference(det: Detections, gt: GroundTruth, thr: np.ndarray, ambiguous_filter: bool,
                        first_fit: bool = False):
    """``first_fit``: W-TALC's variant (PROTOCOLS.md D3, D5, D6): ranked by ``np.argsort(-score)``,
    each prediction takes the first free GT segment in GroundTruth order that reaches the
    threshold, AP = sum of the precisions at the TPs over n_gt."""
    known = set(gt.videos)
    unknown = {v for v in det.video.tolist() if v not in known}
    if unknown:
        raise unknown_videos_error(unknown)
    check_detections(det, gt)
    n_dropped = 0
    if ambiguous_filter:
        keep = ambiguous_keep_reference(det, det.segment, gt.ambiguous)
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
        order = idx[np.argsort(-det.score[idx])] if first_fit else idx[np.argsort(det.score[idx])[::-1]]
        tp = np.zeros((len(thr), order.size), dtype=np.int64)
        matched = {k: np.zeros((len(thr), s.shape[0]), dtype=bool)
                   for k, s in gt_segs.items() if k[1] == c}
        for i, p in enumerate(order):
            key = (det.video[p], c)
            segs = gt_segs.get(key)
            if segs is None:
                continue  # no ground truth of this class in this video: false positive
            ious = interval_iou(det.segment[p, 0], det.segment[p, 1], segs[:, 0], segs[:, 1])
            # highest tIoU first, ties in numpy's order (method.md §6); W-TALC: GroundTruth order
            visit = np.arange(ious.size) if first_fit else np.argsort(ious)[::-1]
            for t, th in enumerate(thr):
                for j in visit:
                    if ious[j] < th:
                        if first_fit:
                            continue
                        break  # no unmatched GT reaches the threshold: false positive
                    if matched[key][t, j]:
                        continue
                    matched[key][t, j] = True
                    tp[t, i] = 1
                    break
        for t in range(len(thr)):
            ap[t, c] = (_precision_sum_ap if first_fit else _interpolated_ap)(tp[t], int(n_gt[c]))
    return ap, {"n_detections": len(det), "n_ambiguous_dropped": n_dropped}
