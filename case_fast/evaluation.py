"""Detection evaluation (ActivityNet-style mAP, SPEC §6) and results-file IO (SPEC §5 "Output").

Two backends compute the same average precisions, bit for bit:

* ``backend="reference"`` — :func:`_evaluate_reference`, the straightforward per-prediction loop.
  It is the specification in executable form; read it first.
* ``backend="fast"`` (default) — the compiled ops (csrc/cpu/ap_cpu.cpp): ``ap_group`` checks
  the predictions and groups them by class; then, per batch of classes on a few threads, each
  class is ranked in NumPy (the same ``np.argsort`` call on the same array as the reference,
  which fixes the tie order) and ``ap_classes`` finds each prediction's candidate GT segments
  (tIoU and the number of thresholds reached), runs the greedy matching for all thresholds in
  one walk of the ranking and sums the AP like the reference (numpy's pairwise summation
  reproduced); the ambiguous filter by ``ambiguous_keep``. The rare predictions whose candidate
  GT segments tie in tIoU are returned by ``ap_classes`` and their classes computed again with
  numpy's order of those candidates (below). Without the compiled extension (or for more than 64
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

import json
import math
import numbers
import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "THUMOS_TIOU",
    "ANET_TIOU",
    "Detections",
    "GroundTruth",
    "ground_truth_from_gt_json",
    "ground_truth_from_wtalc",
    "ground_truth_from_anet_json",
    "detections_from_results",
    "read_results",
    "write_results",
    "results_dict",
    "evaluate",
    "format_table",
]

THUMOS_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ANET_TIOU = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


# --------------------------------------------------------------------------------------------
# Data containers
# --------------------------------------------------------------------------------------------


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


@dataclass
class GroundTruth:
    """Ground-truth segments of one evaluated split."""

    video: np.ndarray  # (n,) str
    label: np.ndarray  # (n,) int64
    segment: np.ndarray  # (n, 2) float64
    videos: list  # all videos of the split (also those without ground truth of some class)
    class_names: list
    ambiguous: dict = field(default_factory=dict)  # video -> (m, 2) float64 (W-TALC protocol)

    def __post_init__(self):
        self.video = np.asarray(self.video, dtype=object).reshape(-1)
        self.label = np.asarray(self.label, dtype=np.int64).reshape(-1)
        self.segment = np.asarray(self.segment, dtype=np.float64).reshape(-1, 2)
        self.videos = [str(v) for v in self.videos]
        self.class_names = [str(c) for c in self.class_names]
        self.ambiguous = {
            str(k): np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in self.ambiguous.items()
        }
        n = self.video.shape[0]
        if not (self.label.shape[0] == self.segment.shape[0] == n):
            raise ValueError("GroundTruth: inconsistent array lengths")
        if len(set(self.videos)) != len(self.videos):
            raise ValueError("GroundTruth: duplicate names in videos")
        if n:
            if self.label.min() < 0 or self.label.max() >= len(self.class_names):
                raise ValueError("GroundTruth: label index out of range of class_names")
            known = set(self.videos)
            missing = sorted({v for v in self.video.tolist() if v not in known})
            if missing:
                raise ValueError(f"GroundTruth: segments on videos not in `videos`: {missing[:5]}")
            if not np.isfinite(self.segment).all():
                raise ValueError("GroundTruth: non-finite segment")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------------------------
# Ground-truth loaders (the file formats are parsed by case_fast.data.annotations, shared with
# training, so that eval and training read a file the same way and refuse the same mistakes)
# --------------------------------------------------------------------------------------------


def _build_gt(rows, videos, class_names, ambiguous=None, source="") -> GroundTruth:
    """rows: iterable of (video, label_name, start, end)."""
    from .data.annotations import DataError

    index = {c: i for i, c in enumerate(class_names)}
    vid, lab, seg = [], [], []
    for v, name, s, e in rows:
        if name not in index:
            raise DataError(f"{source}: video {v!r}: label {name!r} is not in the class list")
        vid.append(v)
        lab.append(index[name])
        seg.append((float(s), float(e)))
    keep = set(videos)
    return GroundTruth(
        video=np.array(vid, dtype=object),
        label=np.array(lab, dtype=np.int64),
        segment=np.array(seg, dtype=np.float64).reshape(-1, 2),
        videos=list(videos),
        class_names=list(class_names),
        ambiguous={k: v for k, v in (ambiguous or {}).items() if k in keep},
    )


def _select_videos(known: Sequence[str], subsets: Mapping[str, str], split_file, subset, source):
    """The evaluated videos: the split file's (in its order; each must be known) when given, else
    those of ``subset`` (sorted; ``None``: all). Zero videos is an error."""
    from .data import annotations as A

    if split_file is not None:
        names = A.read_video_list(split_file)
        return A.videos_from_list(names, known, split_file, source)
    if subset is None:
        return sorted(known)
    videos = sorted(v for v in known if subsets[v] == subset)
    if not videos:
        raise A.DataError(f"{source}: no video in subset {subset!r} (subsets present: "
                          f"{sorted(set(subsets.values()))})")
    return videos


def _gt_from_json(path, split_file, subset, class_names, class_list_file, ambiguous_file) -> GroundTruth:
    from .data import annotations as A

    db = A.read_database_json(path, "ground-truth file")
    if class_names is None:
        if class_list_file is not None:
            class_names = A.read_class_list(class_list_file)
        else:
            class_names = sorted({a[0] for e in db.values() for a in e.annotations})
    videos = _select_videos(list(db), {v: e.subset for v, e in db.items()}, split_file, subset, path)
    rows = ((v, lab, s, e) for v in videos for lab, s, e in db[v].annotations)
    ambiguous = A.read_ambiguous(ambiguous_file) if ambiguous_file is not None else None
    return _build_gt(rows, videos, class_names, ambiguous, source=str(path))


def ground_truth_from_gt_json(path, split_file=None, class_names=None, subset="test", *,
                              class_list_file=None, ambiguous_file=None) -> GroundTruth:
    """BaS-Net-style ``gt.json`` (``{"database": {video: {"subset", "annotations": [{"segment":
    [s, e] (numbers or strings), "label"}]}}}``), read by
    :func:`case_fast.data.annotations.read_database_json` (the training loader's parser).

    Videos: with ``split_file`` (one name per line, e.g. ``split_test.txt``) exactly the listed
    videos, in that order (each must be in the database), whatever the entries carry; otherwise
    those whose ``subset`` equals ``subset`` (``None``: all; none at all is an error).
    ``class_names`` defaults to ``class_list_file`` (one class per line) if given, else the sorted
    labels found in the whole database. ``ambiguous_file``: ``Ambiguous_test.txt`` lines attached
    as ``GroundTruth.ambiguous``.
    """
    return _gt_from_json(path, split_file, subset, class_names, class_list_file, ambiguous_file)


def ground_truth_from_anet_json(path, subset="validation", class_names=None, *, split_file=None,
                                class_list_file=None, ambiguous_file=None) -> GroundTruth:
    """ActivityNet json (``{"database": {video: {"subset", "duration", "annotations": [{"segment",
    "label"}]}}}``): the same parser and rules as :func:`ground_truth_from_gt_json`, default subset
    ``validation``. Video ids are used as written in the file. ``class_names`` defaults to the
    sorted labels of the whole database (pass the model's class list to be sure the indices agree)."""
    return _gt_from_json(path, split_file, subset, class_names, class_list_file, ambiguous_file)


def _as_str(x) -> str:
    return x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x)


def ground_truth_from_wtalc(annotation_dir, prefix="Thumos14reduced", subset="test", *,
                            split_file=None) -> GroundTruth:
    """W-TALC layout: ``videoname.npy``, ``subset.npy``, ``segments.npy``, ``labels.npy`` (one label
    per segment), ``classlist.npy`` and optionally ``Ambiguous_test.txt`` (lines ``video start end``),
    read by :func:`case_fast.data.annotations.read_wtalc_annotations` (the training loader's parser).

    ``annotation_dir`` may be the folder holding these files or one containing
    ``<prefix>-Annotations/``. ``subset`` (str or bytes) selects the videos (``test``: 212 for
    THUMOS14); ``split_file`` (one name per line) instead selects exactly the listed videos. The
    ambiguous segments (looked for in the annotation folder, then its parent) of the selected
    videos are attached to ``GroundTruth.ambiguous``.
    """
    from .data import annotations as A

    ann = A.read_wtalc_annotations(A.find_wtalc_annotations(annotation_dir, prefix))
    subsets = dict(zip(ann.names, ann.subsets))
    want = None if subset is None else _as_str(subset)
    videos = _select_videos(ann.names, subsets, split_file, want, ann.folder / "subset.npy")
    row = {v: j for j, v in enumerate(ann.names)}
    rows = ((v, lab, s, e) for v in videos
            for lab, (s, e) in zip(ann.seg_labels[row[v]], ann.segments[row[v]]))
    return _build_gt(rows, videos, ann.classes, ann.ambiguous, source=str(ann.folder))


# --------------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------------


def results_dict(per_video: Mapping[str, Iterable], version: str = "case-fast") -> dict:
    """``{video: [(label_name, score, start, end), ...]}`` -> ActivityNet-style results dict."""
    return {
        "version": version,
        "results": {
            str(v): [
                {"label": str(lab), "score": float(s), "segment": [float(a), float(b)]}
                for lab, s, a, b in preds
            ]
            for v, preds in per_video.items()
        },
        "external_data": {},
    }


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
    from .data.annotations import DataError

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
    from .data.annotations import load_json

    data = load_json(path, "results file")
    return detections_from_results(data, class_names, known_videos, source=str(path), on_unknown=on_unknown)


def write_results(path, results_dict: Mapping) -> None:
    """Write ``results_dict`` as JSON atomically: serialise into a temporary file beside ``path``
    and ``os.replace`` it; on any error the temporary file is removed and ``path`` is untouched.
    NaN/inf are refused (they are not JSON)."""
    path = pathlib.Path(path)
    d = path.parent if str(path.parent) else pathlib.Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(results_dict, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
    thr = _check_tiou(tiou)
    if backend == "fast" and _ap_ops() is not None and len(thr) <= 64:  # the op keeps 64-bit masks
        ap, extra = _evaluate_fast(detections, gt, thr, ambiguous_filter)
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
            by_iou = np.argsort(ious)[::-1]  # highest tIoU first, ties in numpy's order (SPEC §6)
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


# --------------------------------------------------------------------------------------------
# Fast backend
# --------------------------------------------------------------------------------------------


class _ApOps(NamedTuple):
    group: Any  # torch.ops.case_fast.ap_group
    classes: Any  # torch.ops.case_fast.ap_classes
    ambiguous_keep: Any  # torch.ops.case_fast.ambiguous_keep


def _ap_ops() -> Optional[_ApOps]:
    """The compiled AP ops when the extension is built, else None."""
    import torch

    from .ops import _extension

    if not _extension.available():
        return None
    ops = torch.ops.case_fast
    return _ApOps(ops.ap_group, ops.ap_classes, ops.ambiguous_keep)


def extension_available() -> bool:
    """True when the compiled AP ops are available (``backend='fast'`` uses them)."""
    from .ops import _extension

    return _extension.available()


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


_POOL: dict = {}


def _rank_pool():
    """A few threads for per-class work (numpy's sort and the compiled ops release the GIL); a
    forked child (whose copy of the pool has no threads) makes its own."""
    if _POOL.get("pid") != os.getpid():
        from concurrent.futures import ThreadPoolExecutor
        _POOL["workers"] = max(1, min(4, os.cpu_count() or 1))
        _POOL["pool"] = ThreadPoolExecutor(max_workers=_POOL["workers"],
                                           thread_name_prefix="case-fast-rank")
        _POOL["pid"] = os.getpid()
    return _POOL["pool"]


def _evaluate_fast(det: Detections, gt: GroundTruth, thr: np.ndarray, ambiguous_filter: bool):
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


def _class_batches(sizes: np.ndarray, classes: np.ndarray, n_workers: int) -> list:
    """``classes`` in batches for the workers: largest first, a class alone when it is big, small
    ones together (about 8 batches per worker at least; one call per batch)."""
    order = classes[np.argsort(-sizes[classes], kind="stable")].tolist()
    target = max(int(sizes[classes].sum()) // (8 * n_workers), 1)
    batches, cur, acc = [], [], 0
    for c in order:
        cur.append(c)
        acc += int(sizes[c])
        if acc >= target:
            batches.append(cur)
            cur, acc = [], 0
    if cur:
        batches.append(cur)
    return batches


def _ap_compiled(ops: _ApOps, label, score, seg, codes, lut, g_codes, gt: GroundTruth, thr):
    """AP (n_thr, n_cls) by the compiled ops (csrc/cpu/ap_cpu.cpp); prediction i's video is
    ``lut[codes[i]]`` (``lut`` None: ``codes[i]``).

    ``ap_group`` checks the predictions and groups them by class (input order inside a class).
    The classes with ground truth and predictions then go in batches to a few threads (numpy's
    sort and torch ops release the GIL): each class is ranked by ``np.argsort`` of its scores —
    the very array the reference sorts, hence the same tie order — and ``ap_classes`` walks each
    ranking reversed and computes the batch's APs. It also lists the predictions whose candidate
    GT segments tie in tIoU; their classes are computed again with numpy's order of those
    candidates (``_tie_orders``), the reference's ``np.argsort(tiou)[::-1]``.
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

    def run(batch):
        for c in batch:
            a, b = cls_off[c], cls_off[c + 1]
            rank[a:b] = np.argsort(cls_score[a:b])
        ap_b, tied = ops.classes(*args, torch.tensor(batch, dtype=torch.int64), *rest)
        ap_b, tied = ap_b.numpy(), tied.numpy()
        if tied.size:
            tied.sort()
            redo = np.unique(np.searchsorted(cls_off, tied, side="right") - 1)
            ties = _tie_orders(tied, cls_off, cls_order_t.numpy(), seg, codes, lut, gt.segment[g_order],
                               g_off, n_vid, float(np.min(thr)))
            ap_r, _ = ops.classes(*args, torch.from_numpy(redo), *rest, *map(torch.from_numpy, ties))
            at = {c: i for i, c in enumerate(batch)}
            ap_b[[at[c] for c in redo.tolist()]] = ap_r.numpy()
        return ap_b

    sizes = cls_off[1:] - cls_off[:-1]
    todo = np.flatnonzero((sizes > 0) & (g_off[n_vid::n_vid] > g_off[:-1:n_vid]))
    pool = _rank_pool()
    ap = np.zeros((len(thr), n_cls))
    batches = _class_batches(sizes, todo, _POOL["workers"])
    for batch, out in zip(batches, pool.map(run, batches)):
        ap[:, batch] = out.T
    return ap


def _ap_numpy(label, vid, s0, s1, perm, cls_bounds, g_codes, gt: GroundTruth, thr, n_gt, ap):
    """AP (n_thr, n_cls), vectorised NumPy (filled into ``ap``)."""
    n_cls, n_vid, n_thr = gt.n_classes, len(gt.videos), len(thr)
    n_det = vid.shape[0]
    # Thresholds are processed in ascending order (u = 0..n_thr-1); a pair's "level" is the number
    # of thresholds it reaches, so it is eligible at threshold u iff level > u.
    t_order = np.argsort(thr, kind="stable")
    thr_s = thr[t_order]
    p_s, p_e = s0[perm], s1[perm]
    p_key = (label * n_vid + vid)[perm]  # (class, video) group of each ranked prediction

    # 2. ground truth "slots": sorted by (class, video) group, then GroundTruth order
    g_key_raw = gt.label * n_vid + g_codes
    g_order = np.argsort(g_key_raw, kind="stable")
    g_key = g_key_raw[g_order]
    g_s, g_e = gt.segment[:, 0][g_order], gt.segment[:, 1][g_order]
    n_g = g_key.shape[0]
    g_head = np.ones(n_g, dtype=bool)
    g_head[1:] = g_key[1:] != g_key[:-1]
    g_grp = np.cumsum(g_head) - 1  # dense group id per slot, non-decreasing
    n_grp = int(g_grp[-1]) + 1

    # 3. overlapping (prediction rank, slot) pairs, tIoU (same formula as the reference), level
    pi, gi = _overlap_pairs(p_key, p_s, p_e, g_key, g_s, g_e, n_cls * n_vid, exact=False)
    # order them by (slot, rank) with one integer sort, then tIoU (same formula as the reference)
    # and level; pairs below the lowest threshold stay (level 0 is never eligible)
    B = max(int(n_det).bit_length(), 1)
    key = np.sort((gi << B) | pi)
    gi = key >> B
    pi = key & ((1 << B) - 1)
    ps0, ps1 = p_s[pi], p_e[pi]
    gs0, gs1 = g_s[gi], g_e[gi]
    inter = np.minimum(ps1, gs1) - np.maximum(ps0, gs0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / ((ps1 - ps0) + (gs1 - gs0) - inter)  # candidates without overlap: <= 0 or nan
    lev8 = (iou >= thr_s[0]).view(np.int8).copy()
    for u in range(1, n_thr):
        lev8 += (iou >= thr_s[u]).view(np.int8)
    lev = lev8.astype(np.int64)
    P = pi.shape[0]

    tp_u = tp_r = None
    if P:
        # 4a. first eligible pair of every (threshold, slot): segmented running max of the level
        rm = np.maximum.accumulate(gi * (n_thr + 1) + lev)
        qv = np.arange(n_g)[None, :] * (n_thr + 1) + np.arange(1, n_thr + 1)[:, None]  # (u, g)
        j = np.searchsorted(rm, qv.reshape(-1))
        seg_end = np.searchsorted(gi, np.arange(1, n_g + 1))
        slots = np.flatnonzero(j < np.tile(seg_end, n_thr))
        # 4b. greedy matching, all (threshold, class, video) groups at once
        tp_u, tp_r = _greedy_match(slots, j[slots], pi, lev, iou, seg_end, n_thr, n_g, n_grp, g_grp)

    # 5. AP per (threshold, class) from the TP ranks only. The reference's sum runs over the
    #    positions where recall changes — exactly the TPs — with terms (k/n - (k-1)/n) * P_k,
    #    P_k = max over TPs k' >= k of k'/rank_k' (precision between TPs only falls), plus a
    #    final (1 - recall) * 0 term when recall stays below 1. The same 1-D array is summed.
    if tp_u is not None and tp_u.size:
        tu, tr = tp_u, tp_r
        tc = np.searchsorted(cls_bounds, tr, side="right") - 1
        o = np.lexsort((tr, tc, tu))
        tu, tr, tc = tu[o], tr[o], tc[o]
        heads = np.flatnonzero(np.concatenate(([True], (tu[1:] != tu[:-1]) | (tc[1:] != tc[:-1]))))
        ends = np.append(heads[1:], tu.size)
        rank1 = (tr - cls_bounds[tc] + 1).astype(np.float64)
        for h, e in zip(heads.tolist(), ends.tolist()):
            u, c = int(tu[h]), int(tc[h])
            npos = int(n_gt[c])
            k = np.arange(1, e - h + 1, dtype=np.float64)
            prec = k / rank1[h:e]
            prec = np.maximum.accumulate(prec[::-1])[::-1]
            terms = (k / npos - (k - 1) / npos) * prec
            if e - h < npos:
                terms = np.append(terms, 0.0)
            ap[t_order[u], c] = float(np.sum(terms))
    return ap


def _next_eligible(j, u, end, lev, window=64):
    """For each query: the first pair index > j[i] and < end[i] with lev > u[i], or -1.
    Scans `window` pairs at a time (2-D gather), which is short for all but a few queries."""
    out = np.full(j.shape[0], -1, dtype=np.int64)
    cur = j + 1
    idx = np.arange(j.shape[0])
    w = np.arange(window)
    P = lev.shape[0]
    while idx.size:
        offs = cur[:, None] + w
        hit = (offs < end[:, None]) & (lev[np.minimum(offs, P - 1)] > u[:, None])
        found = hit.any(axis=1)
        out[idx[found]] = cur[found] + hit[found].argmax(axis=1)
        more = ~found & (cur + window < end)
        idx, cur, u, end = idx[more], cur[more] + window, u[more], end[more]
    return out


def _greedy_match(slots, jn, pi, lev, iou, seg_end, n_thr, n_g, n_grp, g_grp):
    """Exact greedy matching, all (threshold, class, video) groups at once.

    A *slot* is (threshold u, GT segment g) = u * n_g + g; its group is u * n_grp + g_grp[g].
    Pairs (pi = prediction rank, lev, iou) are sorted by GT then rank; slot (u, g)'s eligible
    predictions are the pairs of g's segment (ending at seg_end[g]) with lev > u. ``slots`` are
    the slots with any eligible prediction, ``jn`` the pair index of their first one.

    State per group: a pointer (everything at or before it is settled) and, per free slot, nxt =
    its first eligible rank after the pointer (a slot without one is dead for good). A prediction
    at rank q is eligible for a free slot s only if nxt(s) <= q. So, walking a group's free slots
    by nxt: predictions before the smallest nxt are FP; a rank that is the nxt of exactly one free
    slot is a TP consuming that slot; the first rank q* that is the nxt of several slots is a TP
    consuming the best of them (max tIoU, ties: lowest GT index); pointer := q*. Slots with
    nxt > q* keep their nxt; the others that shared q* move on to their next eligible pair. A
    group without a shared rank is finished in that round.
    Returns the TPs as (threshold index u, rank).
    """
    tp_u, tp_r = [], []
    B = max(int(pi.max()).bit_length(), 1) if pi.size else 1
    active, jn = slots, jn
    while active.size:
        su = active // n_g
        sg = active - su * n_g
        G = su * n_grp + g_grp[sg]
        nxt = pi[jn]
        o = np.argsort((G << B) | nxt)  # by group, then rank
        active, jn, su, sg, G, nxt = active[o], jn[o], su[o], sg[o], G[o], nxt[o]
        same = (G[1:] == G[:-1]) & (nxt[1:] == nxt[:-1])
        # first shared rank q* of each group; everything of the group before it is a plain TP
        dfirst = np.flatnonzero(same)  # index of the first of a shared pair
        n = active.size
        if dfirst.size:
            dg = G[dfirst]
            fd = dfirst[np.concatenate(([True], dg[1:] != dg[:-1]))]  # first shared per group
            gstart = np.flatnonzero(np.concatenate(([True], G[1:] != G[:-1])))
            gid = np.repeat(np.arange(gstart.size), np.diff(np.append(gstart, n)))
            qs_g = np.full(gstart.size, np.iinfo(np.int64).max, dtype=np.int64)
            qs_g[gid[fd]] = nxt[fd]
            qs = qs_g[gid]
        else:
            qs = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        acc = nxt < qs
        tp_u.append(su[acc])
        tp_r.append(nxt[acc])
        tie = np.flatnonzero(nxt == qs)
        if tie.size == 0:
            break
        # shared rank: the slot with the highest tIoU wins, ties -> lowest GT index
        t_iou = iou[jn[tie]]
        t_G = G[tie]
        oo = np.lexsort((sg[tie], -t_iou, t_G))
        win = tie[oo[np.concatenate(([True], t_G[oo][1:] != t_G[oo][:-1]))]]
        tp_u.append(su[win])
        tp_r.append(nxt[win])
        # survivors: free slots of groups with a shared rank, after q* (nxt kept) or at q* (moved on)
        keep = nxt >= qs
        keep[win] = False
        move = keep & (nxt == qs)
        mi = np.flatnonzero(move)
        if mi.size:
            nj = _next_eligible(jn[mi], su[mi], seg_end[sg[mi]], lev)
            ok = nj >= 0
            jn[mi[ok]] = nj[ok]
            keep[mi[~ok]] = False
        active, jn = active[keep], jn[keep]
    if not tp_u:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(tp_u), np.concatenate(tp_r)
