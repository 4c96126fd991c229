"""What the reference and the compiled backend of :func:`case_fast.evaluation.metric.evaluate`
share, with the same errors: each detection's video looked up in the ground truth (an unknown video
is an error naming it), labels in range, finite scores and segments; the interval IoU; the
ambiguous-segment filter (the reference loop)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .ground_truth import GroundTruth
from .results import Detections


def unknown_videos_error(unknown) -> ValueError:
    unknown = sorted(unknown)
    return ValueError(
        f"evaluate: {len(unknown)} predicted video(s) are not in the ground truth's split "
        f"(results for the wrong split?): {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
    )


def video_lookup(video: np.ndarray, gt: GroundTruth, index=None):
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
                raise unknown_videos_error(set(bad))
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
        raise unknown_videos_error({v for v, c in zip(names, codes_h) if c < 0})
    return np.repeat(codes_h, np.diff(np.append(starts, n))), None


def video_codes(video: np.ndarray, gt: GroundTruth, index=None) -> np.ndarray:
    """Index of each entry's video in gt.videos; raise on unknown videos (:func:`video_lookup`)."""
    codes, lut = video_lookup(video, gt, index)
    return codes if lut is None else lut[codes]


LABEL_RANGE, NON_FINITE = 1, 2  # the checks of check_detections (also ap_group's status)


def detections_error(kind: int, n_cls: int) -> ValueError:
    if kind == LABEL_RANGE:
        return ValueError(f"evaluate: prediction label index out of range [0, {n_cls})")
    return ValueError("evaluate: non-finite score or segment in detections")


def check_detections(det: Detections, gt: GroundTruth) -> None:
    n_cls = gt.n_classes
    if len(det) and (det.label.min() < 0 or det.label.max() >= n_cls):
        raise detections_error(LABEL_RANGE, n_cls)
    if not (np.isfinite(det.score).all() and np.isfinite(det.segment).all()):
        raise detections_error(NON_FINITE, n_cls)


def interval_iou(s, e, gs, ge) -> np.ndarray:
    """tIoU of intervals [s, e] and [gs, ge] (broadcast arrays, float64): ``inter = min(e, ge) -
    max(s, gs)``, ``inter / ((e - s) + (ge - gs) - inter)`` where ``inter > 0``, else 0 (the
    expression of csrc/cpu/ap_cpu.cpp, bit for bit)."""
    inter = np.maximum(0.0, np.minimum(e, ge) - np.maximum(s, gs))
    union = (e - s) + (ge - gs) - inter
    out = np.zeros(np.broadcast(inter, union).shape)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def ambiguous_keep_reference(det: Detections, seg: np.ndarray, ambiguous: Mapping) -> np.ndarray:
    """keep (n,) bool: False where the prediction ``seg[i]`` (of ``det.video[i]``) overlaps (an
    intersection of positive length) one of ``ambiguous[video]``'s segments (the compiled op:
    ``compiled_ap.ambiguous_keep``)."""
    keep = np.ones(len(det), dtype=bool)
    for i in range(len(det)):
        amb = ambiguous.get(det.video[i])
        if amb is None or amb.shape[0] == 0:
            continue
        s, e = seg[i]
        inter = np.minimum(e, amb[:, 1]) - np.maximum(s, amb[:, 0])
        if (inter > 0).any():
            keep[i] = False
    return keep
