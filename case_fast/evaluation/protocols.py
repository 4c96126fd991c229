"""The evaluation protocols (``evaluate(protocol=...)``, ``case-fast eval --protocol``): what each
one changes before the one matching/AP path of ``case_fast.evaluation.metric``, and which released code it
reproduces. The rules of ``co2net``, ``delu`` and ``wtalc`` are those of the released evaluators,
written down with their sources in the contract PROTOCOLS.md (sections A-D, cited below).

* ``basnet210``: the predictions and the ground truth as they are, in seconds; ActivityNet
  matching (best tIoU first) and interpolated AP (method.md §6).
* ``co2net`` (MM2021-CO2-Net's eval): everything on the snippet grid (:func:`prepare`), the
  ambiguous filter on the grid, then the same ActivityNet matching and AP; predictions on videos
  outside the ground truth are false positives. ``wtalc212`` is a name for it.
* ``delu`` (ECCV2022-DELU's eval): ``co2net`` plus the drop of every prediction of one snippet or
  less (C2).
* ``wtalc`` (wtalc-pytorch's detectionMAP): the grid with truncated predictions taken video by
  video in the ground truth's video order, first-fit matching in ground-truth order, the sum of precisions at the true positives (not interpolated), 0 for a
  whole threshold when a class has no prediction; predictions on videos outside the ground truth
  are dropped.

Seconds map onto the grid as the released pipelines' snippets (A2, A3): ground truth
``round(x * 25 / 16)`` (half to even), a prediction ``u = (sec * 25) / 16`` snapped to the nearest
integer when within 1e-6 (so ``seconds = snippets * 16 / 25`` gives the released numbers back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import numpy as np

from .ground_truth import GroundTruth
from .matching import ambiguous_keep_reference
from .results import Detections

SNIPPETS_PER_SECOND = 25.0 / 16.0  # 16-frame snippets at 25 fps (A2)
SNAP = 1e-6  # A3: a prediction this close to a snippet boundary is on it
TIOU_01_07 = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Protocol:
    name: str
    reproduces: str  # the code whose numbers it gives, for the table heading
    grid: bool  # times on the snippet grid (A2-A4) instead of seconds
    first_fit: bool  # W-TALC's matching and AP (D5, D6) instead of ActivityNet's
    min_length: Optional[float]  # keep only predictions longer than this, in snippets (C2)
    unknown_videos: str  # 'error' | 'false_positive' (B4) | 'drop' (D3)
    ambiguous: str  # 'none' | 'optional' (B1: missing file -> unfiltered) | 'required' (D1)
    tiou: Tuple[float, ...]  # the thresholds reported by default
    missing_class_zeroes: bool  # a class without predictions zeroes the threshold (D3)


PROTOCOLS = {
    "basnet210": Protocol("basnet210", "BaS-Net / ActivityNet evaluation, seconds", False, False, None,
                          "error", "none", TIOU_01_07, False),
    "co2net": Protocol("co2net", "MM2021-CO2-Net eval/eval_detection.py", True, False, None,
                       "false_positive", "optional", TIOU_01_07, False),
    "delu": Protocol("delu", "ECCV2022-DELU eval/eval_detection.py + test.py length drop", True, False,
                     1.0, "false_positive", "optional", TIOU_01_07, False),
    "wtalc": Protocol("wtalc", "wtalc-pytorch detectionMAP.py", True, True, None, "drop", "required",
                      (0.1, 0.2, 0.3, 0.4, 0.5), True),
}
ALIASES = {"wtalc212": "co2net"}  # the W-TALC family's 212-video protocol as most papers ran it
NAMES = tuple(PROTOCOLS) + tuple(ALIASES)


def get(name: str) -> Protocol:
    name = ALIASES.get(name, name)
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (choose from {', '.join(NAMES)})")
    return PROTOCOLS[name]


def to_snippets(seconds: np.ndarray) -> np.ndarray:
    """Prediction times in snippets (A3): ``(sec * 25) / 16`` in float64, snapped to the nearest
    integer when within 1e-6 of it."""
    u = np.asarray(seconds, dtype=np.float64) * 25.0
    u /= 16.0
    r = np.rint(u)
    d = u - r
    np.abs(d, out=d)
    np.copyto(u, r, where=d <= SNAP)
    return u


def gt_to_snippets(seconds: np.ndarray) -> np.ndarray:
    """Ground-truth (and ambiguous) times in snippets (A2): Python's ``round`` of ``(x * 25) / 16``,
    halves to the even integer (numpy rounds the same way)."""
    return np.round(np.asarray(seconds, dtype=np.float64) * 25.0 / 16.0)


class Prepared(NamedTuple):
    det: Detections  # what the matching sees (snippet units on the grid protocols)
    gt: GroundTruth
    n_ambiguous_dropped: int
    n_short_dropped: int  # DELU's length drop
    unknown: dict  # video -> predictions on it outside the ground truth (false positives or dropped)


def _name_codes(det: Detections):
    """(codes (n,), names): ``det.video[i] == names[codes[i]]``."""
    if det.video_index is not None:
        return det.video_index, list(det.video_names)
    names, codes = np.unique(det.video.astype(str), return_inverse=True)
    return codes.reshape(-1), names.tolist()


def _subset(det: Detections, keep: np.ndarray, segment=None) -> Detections:
    """The rows ``keep`` of ``det`` (with ``segment`` instead of its segments when given)."""
    seg = det.segment if segment is None else segment
    if det.video_index is None:
        return Detections(det.video[keep], det.label[keep], det.score[keep], seg[keep])
    return Detections(det.video[keep], det.label[keep], det.score[keep], seg[keep],
                      det.video_index[keep], det.video_names)


def _ambiguous_grid(gt: GroundTruth) -> dict:
    """The ambiguous lines as index ranges ``[round(a_s * f), round(a_e * f))`` (A4)."""
    return {v: gt_to_snippets(a) for v, a in gt.ambiguous.items() if a.shape[0]}


def _check_ambiguous_ranges(det: Detections, cells: np.ndarray, amb: dict) -> None:
    """The released filter divides by zero when a prediction's index range and an ambiguous line's
    range of its video are both empty (A4): refused, naming the video."""
    empty = cells[:, 1] <= cells[:, 0]
    if not empty.any():
        return
    for v in sorted(set(det.video[empty].tolist())):
        a = amb.get(v)
        if a is not None and (a[:, 1] <= a[:, 0]).any():
            raise ValueError(f"video {v}: a prediction shorter than a snippet and an ambiguous segment "
                             "that rounds to an empty range: the released filter divides by zero there")


def _zero_length_pairs(det: Detections, gt: GroundTruth) -> Tuple[np.ndarray, np.ndarray]:
    """B2's 0/0: a zero-length prediction and a zero-length GT segment of its video and class have
    tIoU NaN, which passes every threshold and is visited first; against anything else the
    zero-length prediction's tIoU is 0. So it takes a free zero-length segment of its (video,
    class) at every threshold, whichever (they are alike to it and no other prediction can take
    one). Returns the masks (predictions, GT rows) of such pairs' members."""
    g_zero = gt.segment[:, 1] == gt.segment[:, 0]
    p_zero = det.segment[:, 1] == det.segment[:, 0]
    if not (g_zero.any() and p_zero.any()):
        return np.zeros(len(det), bool), g_zero & False
    keys = {(v, c) for v, c in zip(gt.video[g_zero].tolist(), gt.label[g_zero].tolist())}
    hit = np.array([(v, c) in keys for v, c in zip(det.video[p_zero].tolist(),
                                                   det.label[p_zero].tolist())], dtype=bool)
    p_mask = np.zeros(len(det), bool)
    p_mask[np.flatnonzero(p_zero)[hit]] = True
    return p_mask, g_zero


# Where B2's zero-length pairs are put for the matching: one unit segment left of every time (all
# predictions start at >= 0), so they meet each other with tIoU 1 and nothing else.
_ZERO_PAIR = (-2.0, -1.0)


def prepare(det: Detections, gt: GroundTruth, proto: Protocol, use_fast: bool = False) -> Prepared:
    """The protocol's input to the matching: for the grid protocols the predictions in snippets
    (A3; W-TALC's truncated to ``int``, D4), the ground truth rounded (A2), the ambiguous filter
    (A4), DELU's length drop (C2), the unknown videos (B4 / D3) and B2's zero-length pairs.
    ``use_fast``: the ambiguous filter by the compiled op."""
    codes, names = _name_codes(det)
    counts = np.bincount(codes, minlength=len(names))
    known = set(gt.videos)
    unknown = {v: int(n) for v, n in zip(names, counts.tolist()) if n and v not in known}
    if not proto.grid:
        return Prepared(det, gt, 0, 0, unknown)

    rows = None  # the predictions kept, in the protocol's order (None: all, in results order)
    if proto.unknown_videos == "drop":
        # D3: W-TALC takes the predictions video by video in its video order (A1: the videos with
        # ground truth; the others' predictions are dropped), each video's in results order
        position = {v: i for i, v in enumerate(gt.videos)}
        with_gt = set(gt.video.tolist())
        key = np.array([position[v] if v in with_gt else -1 for v in names], dtype=np.int64)[codes]
        order = np.argsort(key, kind="stable")
        order = order[key[order] >= 0]
        if order.size != len(det) or (order.size and (np.diff(order) < 0).any()):
            rows = order
    seg = to_snippets(det.segment)
    cells = np.trunc(seg)  # int(u): the index range of A4 / D4
    keep = np.ones(len(det), dtype=bool)
    amb = _ambiguous_grid(gt)
    if amb and len(det):  # (only the evaluated videos have ambiguous lines)
        _check_ambiguous_ranges(det, cells, amb)
        from . import compiled_ap as fast
        keep = (fast.ambiguous_keep if use_fast else ambiguous_keep_reference)(det, cells, amb)
    n_amb = int(len(det) - keep.sum()) if rows is None else int(rows.size - keep[rows].sum())
    n_short = 0
    if proto.min_length is not None:  # C2: after the ambiguous filter
        long_enough = (seg[:, 1] - seg[:, 0]) > proto.min_length
        n_short = int((keep & ~long_enough).sum())
        keep &= long_enough
    if rows is not None:
        rows = rows[keep[rows]]
    elif not keep.all():
        rows = np.flatnonzero(keep)
    if rows is not None:
        det, seg, cells = _subset(det, rows), seg[rows], cells[rows]
    g_seg = gt_to_snippets(gt.segment)
    videos = list(gt.videos) + [v for v in unknown if proto.unknown_videos == "false_positive"]
    if proto.first_fit:
        seg = cells
        has_gt = np.bincount(gt.label, minlength=gt.n_classes) > 0
        if (np.bincount(det.label, minlength=gt.n_classes)[has_gt] > 0).all():  # else all 0 (D3)
            _check_empty_pairs(det, seg, gt, g_seg)
    out_gt = GroundTruth(gt.video, gt.label, g_seg, videos, gt.class_names)
    out_det = _subset(det, slice(None), seg)
    if not proto.first_fit:
        p_mask, g_mask = _zero_length_pairs(out_det, out_gt)
        if p_mask.any():
            out_det.segment = out_det.segment.copy()
            out_det.segment[p_mask] = _ZERO_PAIR
            out_gt.segment[g_mask] = _ZERO_PAIR
    return Prepared(out_det, out_gt, n_amb, n_short, unknown)


def _check_empty_pairs(det: Detections, cells: np.ndarray, gt: GroundTruth, g_seg: np.ndarray) -> None:
    """W-TALC's IoU of two empty index ranges divides by zero (D4): refused, naming the video."""
    p_empty = cells[:, 1] <= cells[:, 0]
    g_empty = g_seg[:, 1] <= g_seg[:, 0]
    if not (p_empty.any() and g_empty.any()):
        return
    keys = set(zip(gt.video[g_empty].tolist(), gt.label[g_empty].tolist()))
    for v, c in zip(det.video[p_empty].tolist(), det.label[p_empty].tolist()):
        if (v, c) in keys:
            raise ValueError(f"video {v}: a prediction shorter than a snippet and a zero-length ground-"
                             f"truth segment of class {gt.class_names[c]}: the released W-TALC IoU "
                             "divides by zero there")
