"""The fast backend of ``evaluation.evaluate``: the compiled AP ops ``torch.ops.case_fast.ap_group``
/ ``ap_classes`` / ``ambiguous_keep`` (csrc/cpu/ap_cpu.cpp), driven from here. The reference
backend and the rules are in ``case_fast/evaluation/metric.py``; both give the same APs, bit for bit."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from ..evaluation.metric import _check_detections, _detections_error, _video_codes, _video_lookup
from ..evaluation.ground_truth import GroundTruth
from ..evaluation.results import Detections

# --------------------------------------------------------------------------------------------
# Fast backend
# --------------------------------------------------------------------------------------------


class _ApOps(NamedTuple):
    group: Any  # torch.ops.case_fast.ap_group
    classes: Any  # torch.ops.case_fast.ap_classes
    ambiguous_keep: Any  # torch.ops.case_fast.ambiguous_keep


def available() -> bool:
    """True when the compiled AP ops are built (``evaluate(backend='fast')`` uses them)."""
    return _ap_ops() is not None


def _ap_ops() -> Optional[_ApOps]:
    """The compiled AP ops when the extension is built, else None."""
    import torch

    from . import _extension

    if not _extension.available():
        return None
    ops = torch.ops.case_fast
    return _ApOps(ops.ap_group, ops.ap_classes, ops.ambiguous_keep)


def _ambiguous_drop(vid, seg, gt: GroundTruth, ops: _ApOps) -> np.ndarray:
    """Indices of the predictions that overlap an ambiguous segment of their video."""
    vindex = {v: i for i, v in enumerate(gt.videos)}
    n_vid = len(gt.videos)
    a_vid, a_seg = [], []
    for v, segs in gt.ambiguous.items():
        if v in vindex and segs.shape[0]:
            a_vid.append(np.full(segs.shape[0], vindex[v], np.int64))
            a_seg.append(segs)
    if not a_vid:
        return np.empty(0, np.int64)
    a_vid, a_seg = np.concatenate(a_vid), np.concatenate(a_seg)
    import torch

    o = np.argsort(a_vid, kind="stable")
    a_off = np.zeros(n_vid + 1, np.int64)
    np.cumsum(np.bincount(a_vid, minlength=n_vid), out=a_off[1:])
    keep = ops.ambiguous_keep(
        torch.from_numpy(np.ascontiguousarray(seg)), torch.from_numpy(vid),
        torch.from_numpy(np.ascontiguousarray(a_seg[o])), torch.from_numpy(a_off))
    return np.flatnonzero(~keep.numpy())


def evaluate_fast(det: Detections, gt: GroundTruth, thr: np.ndarray, ambiguous_filter: bool):
    """The fast backend: the compiled AP ops (``evaluate`` checks that they are built)."""
    ops = _ap_ops()
    index = None if det.video_index is None else (det.video_index, det.video_names)
    codes, lut = _video_lookup(det.video, gt, index)
    filtering = bool(ambiguous_filter and gt.ambiguous and len(det))
    if filtering or not gt.label.size:
        _check_detections(det, gt)  # else ap_group checks (same errors, same precedence)
    label, score, seg = det.label, det.score, det.segment
    n_dropped = 0
    if filtering:
        vid = codes if lut is None else lut[codes]
        drop = _ambiguous_drop(vid, seg, gt, ops)
        codes, lut = vid, None
        if drop.size:
            keep = np.ones(len(det), dtype=bool)
            keep[drop] = False
            n_dropped = int(drop.size)
            codes, label, score, seg = vid[keep], label[keep], score[keep], seg[keep]
    extra = {"n_detections": codes.shape[0], "n_ambiguous_dropped": n_dropped}
    if codes.shape[0] == 0 or gt.label.size == 0:
        return np.zeros((len(thr), gt.n_classes)), extra
    g_codes = _video_codes(gt.video, gt, None)
    return _ap_compiled(ops, label, score, seg, codes, lut, g_codes, gt, thr), extra


def _tie_orders(tied, cls_off, cls_order, seg, codes, lut, g_seg, g_off, n_vid, lowest):
    """numpy's candidate order for the predictions at class-major positions ``tied`` (sorted):
    (tied, offsets, GT indices in the class), each list the prefix with tIoU >= ``lowest`` of
    ``np.argsort(tiou)[::-1]`` over the video's GT of the class (the reference's expression and
    the reference's 1-D argsort call, hence numpy's tie order)."""
    cls = np.searchsorted(cls_off, tied, side="right") - 1
    pred = cls_order[tied]
    vid = codes[pred] if lut is None else lut[codes[pred]]
    grp = cls * n_vid + vid
    lists = [None] * tied.size
    for g in np.unique(grp).tolist():  # the tIoUs of one (class, video) group at once
        rows = np.flatnonzero(grp == g)
        a, b = g_off[g], g_off[g + 1]
        s, e = seg[pred[rows], 0][:, None], seg[pred[rows], 1][:, None]
        gs, ge = g_seg[a:b, 0][None, :], g_seg[a:b, 1][None, :]
        inter = np.maximum(0.0, np.minimum(e, ge) - np.maximum(s, gs))
        union = (e - s) + (ge - gs) - inter
        ious = np.zeros(inter.shape)
        np.divide(inter, union, out=ious, where=inter > 0)
        first = a - g_off[(g // n_vid) * n_vid]  # the group's first GT index in the class
        for r, row in zip(rows.tolist(), ious):
            order = np.argsort(row)[::-1]
            lists[r] = order[row[order] >= lowest] + first
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    return tied.astype(np.int64), offsets, np.concatenate(lists).astype(np.int64)


def _ap_compiled(ops: _ApOps, label, score, seg, codes, lut, g_codes, gt: GroundTruth, thr):
    """AP (n_thr, n_cls) by the compiled ops (csrc/cpu/ap_cpu.cpp); prediction i's video is
    ``lut[codes[i]]`` (``lut`` None: ``codes[i]``).

    ``ap_group`` checks the predictions and groups them by class (input order inside a class).
    Each class with ground truth and predictions is then ranked by ``np.argsort`` of its scores —
    the very array the reference sorts, hence the same tie order — and one ``ap_classes`` call
    walks each ranking reversed and computes their APs. It also lists the predictions whose
    candidate GT segments tie in tIoU; their classes are computed again with numpy's order of those
    candidates (``_tie_orders``), the reference's ``np.argsort(tiou)[::-1]``. One thread: the
    whole AP of a 420k-prediction file takes tens of milliseconds, a few percent of ``case-fast
    eval`` on it (reading the JSON dominates).
    """
    import torch

    n_cls, n_vid = gt.n_classes, len(gt.videos)
    seg = np.ascontiguousarray(seg)
    status, cls_off_t, cls_order_t, cls_score_t = ops.group(
        torch.from_numpy(np.ascontiguousarray(label)),
        torch.from_numpy(np.ascontiguousarray(score)), torch.from_numpy(seg), n_cls)
    if int(status):
        raise _detections_error(int(status), n_cls)
    cls_off, cls_score = cls_off_t.numpy(), cls_score_t.numpy()

    g_key = gt.label * n_vid + g_codes
    g_order = np.argsort(g_key, kind="stable")  # by (class, video), GroundTruth order inside
    g_off = np.zeros(n_cls * n_vid + 1, np.int64)
    np.cumsum(np.bincount(g_key, minlength=n_cls * n_vid), out=g_off[1:])
    rank = np.empty(cls_score.shape[0], np.int64)  # per class: argsort of its scores
    args = (torch.from_numpy(seg), torch.from_numpy(np.ascontiguousarray(codes)),
            torch.from_numpy(np.arange(n_vid, dtype=np.int64) if lut is None else lut),
            cls_order_t, cls_off_t)
    rest = (torch.from_numpy(rank), torch.from_numpy(np.ascontiguousarray(gt.segment[g_order])),
            torch.from_numpy(g_off), torch.from_numpy(np.array(thr, dtype=np.float64)))

    sizes = cls_off[1:] - cls_off[:-1]
    todo = np.flatnonzero((sizes > 0) & (g_off[n_vid::n_vid] > g_off[:-1:n_vid]))
    ap = np.zeros((len(thr), n_cls))
    if not todo.size:
        return ap
    for c in todo.tolist():
        a, b = cls_off[c], cls_off[c + 1]
        rank[a:b] = np.argsort(cls_score[a:b])
    ap_t, tied = ops.classes(*args, torch.from_numpy(todo.astype(np.int64)), *rest)
    ap[:, todo] = ap_t.numpy().T
    tied = tied.numpy()
    if tied.size:
        tied.sort()
        redo = np.unique(np.searchsorted(cls_off, tied, side="right") - 1)
        ties = _tie_orders(tied, cls_off, cls_order_t.numpy(), seg, codes, lut, gt.segment[g_order],
                           g_off, n_vid, float(np.min(thr)))
        ap_r, _ = ops.classes(*args, torch.from_numpy(redo), *rest, *map(torch.from_numpy, ties))
        ap[:, redo] = ap_r.numpy().T
    return ap
