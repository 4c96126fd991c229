"""The fast backend of ``evaluation.evaluate``: the compiled AP ops ``torch.ops.case_fast.ap_group``
/ ``ap_classes`` / ``ambiguous_keep`` (csrc/cpu/ap_cpu.cpp), driven from here. The reference
backend and the rules are in ``case_fast/evaluation/metric.py``; both give the same APs, bit for bit."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from .matching import (check_detections, detections_error, interval_iou, video_codes,
                                   video_lookup)
from .ground_truth import GroundTruth
from .results import Detections

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


def available_first_fit() -> bool:
    """True when the built ``ap_classes`` has W-TALC's variant (an extension built from older
    sources has not: the protocol ``wtalc`` then runs the reference under backend='auto')."""
    if _ap_ops() is None:
        return False
    import torch

    return "variant" in str(torch.ops.case_fast.ap_classes.default._schema)


def _ap_ops() -> Optional[_ApOps]:
    """The compiled AP ops when the extension is built, else None."""
    import torch

    from ..ops import _extension

    if not _extension.available():
        return None
    ops = torch.ops.case_fast
    return _ApOps(ops.ap_group, ops.ap_classes, ops.ambiguous_keep)


def ambiguous_keep(det: Detections, seg: np.ndarray, ambiguous) -> np.ndarray:
    """``matching.ambiguous_keep_reference`` by the compiled op: keep (n,) bool, False where prediction i
    (``det.video[i]``, ``seg[i]``) overlaps one of ``ambiguous[det.video[i]]``'s segments."""
    import torch

    names = sorted({v for v, a in ambiguous.items() if a.shape[0]})
    index = {v: i + 1 for i, v in enumerate(names)}  # code 0: no ambiguous segment
    if det.video_index is not None:  # one look-up per distinct name
        lut = np.array([index.get(v, 0) for v in det.video_names], dtype=np.int64)
        vid = lut[det.video_index] if lut.size else np.zeros(len(det), np.int64)
    else:
        vid = np.fromiter((index.get(v, 0) for v in det.video.tolist()), np.int64, len(det))
    a_off = np.zeros(len(names) + 2, np.int64)
    np.cumsum([0] + [ambiguous[v].shape[0] for v in names], out=a_off[1:])
    a_seg = (np.concatenate([ambiguous[v] for v in names]) if names else np.zeros((0, 2)))
    keep = _ap_ops().ambiguous_keep(
        torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float64)), torch.from_numpy(vid),
        torch.from_numpy(np.ascontiguousarray(a_seg, dtype=np.float64)), torch.from_numpy(a_off))
    return keep.numpy()


def evaluate_fast(det: Detections, gt: GroundTruth, thr: np.ndarray, ambiguous_filter: bool,
                  first_fit: bool = False):
    """The fast backend: the compiled AP ops (``evaluate`` checks that they are built).
    ``first_fit``: W-TALC's matching and AP (op variant 1)."""
    ops = _ap_ops()
    index = None if det.video_index is None else (det.video_index, det.video_names)
    codes, lut = video_lookup(det.video, gt, index)
    filtering = bool(ambiguous_filter and gt.ambiguous and len(det))
    if filtering or not gt.label.size:
        check_detections(det, gt)  # else ap_group checks (same errors, same precedence)
    label, score, seg = det.label, det.score, det.segment
    n_dropped = 0
    if filtering:
        keep = ambiguous_keep(det, seg, gt.ambiguous)
        if not keep.all():
            n_dropped = int((~keep).sum())
            codes = codes if lut is None else lut[codes]
            codes, lut = codes[keep], None
            label, score, seg = label[keep], score[keep], seg[keep]
    extra = {"n_detections": codes.shape[0], "n_ambiguous_dropped": n_dropped}
    if codes.shape[0] == 0 or gt.label.size == 0:
        return np.zeros((len(thr), gt.n_classes)), extra
    g_codes = video_codes(gt.video, gt, None)
    return _ap_compiled(ops, label, score, seg, codes, lut, g_codes, gt, thr, first_fit), extra


def _tie_orders(tied, cls_off, cls_order, seg, codes, lut, g_seg, g_off, n_vid, lowest):
    """numpy's candidate order for the predictions at class-major positions ``tied`` (sorted):
    (tied, offsets, GT indices in the class), each list the prefix with tIoU >= ``lowest`` of
    ``np.argsort(tiou)[::-1]`` over the video's GT of the class (the reference's expression; the
    argsort of a (class, video) group's rows at once sorts each row by the same routine as the
    reference's 1-D call, hence numpy's tie order)."""
    cls = np.searchsorted(cls_off, tied, side="right") - 1
    pred = cls_order[tied]
    vid = codes[pred] if lut is None else lut[codes[pred]]
    grp = cls * n_vid + vid
    perm = np.argsort(grp, kind="stable")  # the tied predictions by group, in order inside one
    bounds = np.flatnonzero(np.diff(grp[perm])) + 1
    counts_p, flat_p = [], []
    for rows in np.split(perm, bounds):  # the tIoUs of one (class, video) group at once
        g = int(grp[rows[0]])
        a, b = g_off[g], g_off[g + 1]
        ious = interval_iou(seg[pred[rows], 0][:, None], seg[pred[rows], 1][:, None],
                            g_seg[a:b, 0][None, :], g_seg[a:b, 1][None, :])
        order = np.argsort(ious, axis=1)[:, ::-1]
        keep = np.take_along_axis(ious, order, axis=1) >= lowest  # a prefix of each row
        counts_p.append(keep.sum(axis=1))
        flat_p.append(order[keep] + (a - g_off[(g // n_vid) * n_vid]))  # GT index in the class
    counts_p, flat_p = np.concatenate(counts_p), np.concatenate(flat_p)
    starts_p = np.cumsum(counts_p) - counts_p
    pos = np.empty_like(perm)
    pos[perm] = np.arange(perm.size)  # tied prediction r is row pos[r] in group order
    counts = counts_p[pos]
    offsets = np.zeros(tied.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.repeat(starts_p[pos] - offsets[:-1], counts) + np.arange(offsets[-1])
    return tied.astype(np.int64), offsets, flat_p[take].astype(np.int64)


def _ap_compiled(ops: _ApOps, label, score, seg, codes, lut, g_codes, gt: GroundTruth, thr,
                 first_fit: bool = False):
    """AP (n_thr, n_cls) by the compiled ops (csrc/cpu/ap_cpu.cpp); prediction i's video is
    ``lut[codes[i]]`` (``lut`` None: ``codes[i]``).

    ``ap_group`` checks the predictions and groups them by class (input order inside a class).
    Each class with ground truth and predictions is then ranked by ``np.argsort`` of its scores —
    the very array the reference sorts, hence the same tie order — and one ``ap_classes`` call
    walks each ranking reversed and computes their APs. It also lists the predictions whose
    candidate GT segments tie in tIoU; their classes are computed again with numpy's order of those
    candidates (``_tie_orders``), the reference's ``np.argsort(tiou)[::-1]``. ``first_fit``
    (W-TALC): each class ranked by ``np.argsort(-score)`` (passed reversed), candidates in GT
    order (never tied), the precision-sum AP: op variant 1. One thread: the
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
        raise detections_error(int(status), n_cls)
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
        rank[a:b] = np.argsort(-cls_score[a:b])[::-1] if first_fit else np.argsort(cls_score[a:b])
    variant = (None, None, None, 1) if first_fit else ()  # (no tie orders,) the W-TALC variant
    ap_t, tied = ops.classes(*args, torch.from_numpy(todo.astype(np.int64)), *rest, *variant)
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
