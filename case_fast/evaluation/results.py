"""Results files (method.md §5 "Output"): :class:`Detections`, the flat prediction arrays that
``evaluate`` scores, and the ActivityNet-style JSON that stores them
(``{"version", "results": {video: [{"label", "score", "segment": [s, e]}]}, "external_data"}``):
building and strict reading (written with ``utils.save_json``)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np


@dataclass
class Detections:
    """Flat prediction arrays, one row per prediction (any order).

    Optional ``video_index`` (n,) int64 with ``video_names`` (distinct names): ``video[i] ==
    video_names[video_index[i]]`` for every i, a promise of the caller (not checked beyond shape
    and range); evaluation then maps videos to codes with one dictionary look-up per name
    instead of comparing the n names. :meth:`from_proposals` and :func:`detections_from_results`
    fill them.
    """

    video: np.ndarray  # (n,) object / str
    label: np.ndarray  # (n,) int64 class index
    score: np.ndarray  # (n,) float64
    segment: np.ndarray  # (n, 2) float64 seconds [start, end]
    video_index: Optional[np.ndarray] = None  # (n,) int64 into video_names
    video_names: Optional[list] = None

    def __post_init__(self):
        self.video = np.asarray(self.video, dtype=object).reshape(-1)
        self.label = np.asarray(self.label, dtype=np.int64).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        self.segment = np.asarray(self.segment, dtype=np.float64).reshape(-1, 2)
        n = self.video.shape[0]
        if not (self.label.shape[0] == self.score.shape[0] == self.segment.shape[0] == n):
            raise ValueError(
                f"Detections: inconsistent lengths video={n} label={self.label.shape[0]} "
                f"score={self.score.shape[0]} segment={self.segment.shape[0]}"
            )
        if (self.video_index is None) != (self.video_names is None):
            raise ValueError("Detections: give video_index and video_names together")
        if self.video_index is not None:
            self.video_index = np.asarray(self.video_index, dtype=np.int64).reshape(-1)
            self.video_names = [str(v) for v in self.video_names]
            if self.video_index.shape[0] != n:
                raise ValueError(f"Detections: video_index has {self.video_index.shape[0]} "
                                 f"entries for {n} predictions")
            if n and (self.video_index.min() < 0 or self.video_index.max() >= len(self.video_names)):
                raise ValueError("Detections: video_index out of range of video_names")

    def __len__(self) -> int:
        return int(self.video.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.empty(0, object), np.empty(0, np.int64), np.empty(0), np.empty((0, 2)))

    @classmethod
    def from_proposals(cls, per_video: Mapping[str, np.ndarray]) -> "Detections":
        """From ``{video: (m, 4) rows [class, score, start, end]}`` (e.g. the proposals after NMS),
        videos in mapping order, rows in order; fills ``video_index`` / ``video_names``."""
        names = [str(v) for v in per_video]
        arrs = [np.asarray(p, dtype=np.float64).reshape(-1, 4) for p in per_video.values()]
        counts = np.array([a.shape[0] for a in arrs], dtype=np.int64)
        arr = np.concatenate(arrs) if arrs else np.zeros((0, 4))
        index = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        video = np.array(names, dtype=object)[index]
        return cls(video, arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2:4], index, names)


# --------------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------------


def results_dict(proposals: Mapping[str, np.ndarray], class_names: Sequence[str],
                 config: Optional[dict] = None, split: str = "test") -> dict:
    """The one builder of a results file: ``{video: (m, 4) rows [class index, score, start, end]}``
    -> ActivityNet-style dict. ``config`` (the run's configuration as a dict) is recorded with the
    ``split`` under ``"case_fast"``, so ``case-fast eval`` can score the file against the ground
    truth it was made for; readers of the ActivityNet format ignore the key."""
    out = {
        "version": "case-fast",
        "results": {
            str(v): [{"label": class_names[int(c)], "score": float(s), "segment": [float(a), float(b)]}
                     for c, s, a, b in np.asarray(rows, dtype=np.float64).reshape(-1, 4)]
            for v, rows in proposals.items()
        },
        "external_data": {},
    }
    if config is not None:
        out["case_fast"] = {"config": config, "split": split}
    return out


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _finite(x) -> Optional[float]:
    """``float(x)`` for a finite real number (not a bool), else None (also for ints too large for a
    float)."""
    if type(x) is float:  # what JSON gives, checked without the ABC machinery below
        return x if math.isfinite(x) else None
    if not _is_real(x):
        return None
    try:
        v = float(x)
    except (OverflowError, ValueError):
        return None
    return v if math.isfinite(v) else None


def detections_from_results(
    results: Any, class_names: Sequence[str], known_videos=None, source: str = "<results>",
    on_unknown=None,
) -> Detections:
    """Validate an ActivityNet-style results dict and flatten it into :class:`Detections`.

    Raises ``ValueError`` (:class:`~case_fast.data.annotations.DataError`) naming ``source`` and
    the video for: results not a mapping, no ``results`` mapping or an empty one, a video not in
    ``known_videos`` (when given and ``on_unknown`` is None), an empty video name, predictions that
    are not a list, a prediction that is not a mapping, a label not in ``class_names``, a score that
    is not a finite number, a segment that is not two finite numbers with 0 <= start <= end.
    Numbers too large for a float count as not finite.

    ``on_unknown``: a callable; predictions on videos not in ``known_videos`` are then dropped
    (after being validated like the others) and it is called once with ``{video: number of
    predictions dropped}`` (only when there are some).
    """
    from ..data.annotations import DataError

    if not isinstance(results, Mapping):
        raise DataError(f"{source}: results file must be a JSON object, got {type(results).__name__}")
    if "results" not in results:
        raise DataError(f"{source}: no 'results' key (expected {{\"results\": {{video: [predictions]}}}})")
    res = results.get("results")
    if not isinstance(res, Mapping):
        raise DataError(f"{source}: 'results' must be a mapping video -> list of predictions, got "
                        f"{type(res).__name__}")
    if not res:
        raise DataError(f"{source}: 'results' holds no video")
    index = {c: i for i, c in enumerate(class_names)}
    known = None if known_videos is None else set(known_videos)
    names, counts, labels, scores, segs = [], [], [], [], []
    dropped = {}
    for video, preds in res.items():
        where = f"{source}: video {video!r}"
        if not isinstance(video, str):
            raise DataError(f"{where}: video id must be a string")
        if not video.strip():
            raise DataError(f"{where}: empty video id")
        if known is not None and video not in known and on_unknown is None:
            raise DataError(f"{where}: unknown video (not in the evaluated split; --allow-unknown "
                            "drops such videos)")
        if not isinstance(preds, (list, tuple)):
            raise DataError(f"{where}: predictions must be a list, got {type(preds).__name__}")
        v_lab, v_sc, v_seg = [], [], []
        for k, p in enumerate(preds):
            if type(p) is not dict and not isinstance(p, Mapping):
                raise DataError(f"{where}, prediction {k}: not an object")
            lab = p.get("label")
            if not isinstance(lab, str) or lab not in index:
                raise DataError(f"{where}, prediction {k}: label {lab!r} is not in class_names")
            sc = _finite(p.get("score"))
            if sc is None:
                raise DataError(f"{where}, prediction {k}: score {p.get('score')!r} is not a finite number")
            seg = p.get("segment")
            pair = ([_finite(seg[0]), _finite(seg[1])]
                    if type(seg) in (list, tuple) and len(seg) == 2 else None)
            if pair is None or None in pair:
                raise DataError(f"{where}, prediction {k}: malformed segment {seg!r} "
                                "(need [start, end], finite numbers)")
            if pair[1] < pair[0]:
                raise DataError(f"{where}, prediction {k}: segment {list(seg)} ends before it starts")
            if pair[0] < 0:
                raise DataError(f"{where}, prediction {k}: segment {list(seg)} starts before 0 s")
            v_lab.append(index[lab])
            v_sc.append(sc)
            v_seg.append(pair)
        if known is not None and video not in known:
            dropped[video] = len(preds)
            continue
        labels += v_lab
        scores += v_sc
        segs += v_seg
        names.append(video)
        counts.append(len(preds))
    if dropped and on_unknown is not None:
        on_unknown(dropped)
    index = np.repeat(np.arange(len(names), dtype=np.int64), np.array(counts, dtype=np.int64))
    video_arr = np.array(names, dtype=object)[index]
    return Detections(
        video=video_arr,
        label=np.array(labels, dtype=np.int64),
        score=np.array(scores, dtype=np.float64),
        segment=np.array(segs, dtype=np.float64).reshape(-1, 2),
        video_index=index,
        video_names=names,
    )


def read_results(path, class_names, known_videos=None, on_unknown=None) -> Detections:
    """Read and validate a results JSON file (see :func:`detections_from_results`). The file is read
    strictly (:func:`case_fast.data.annotations.load_json`): a video named twice, ``NaN`` or
    ``Infinity``, an empty file or a folder are refused with the path in the message."""
    from ..data.annotations import load_json

    data = load_json(path, "results file")
    return detections_from_results(data, class_names, known_videos, source=str(path), on_unknown=on_unknown)
