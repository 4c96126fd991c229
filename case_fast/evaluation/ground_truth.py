"""Ground truth for evaluation: :class:`GroundTruth` and its loaders for the BaS-Net ``gt.json``,
ActivityNet-style JSON and W-TALC annotation layouts. The files are parsed by
``case_fast.data.annotations`` (the parsers training uses too), so that eval and training read a
file the same way and refuse the same mistakes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


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
    from ..data.annotations import DataError

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
    from ..data import annotations as A

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
    from ..data import annotations as A

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
    read by :func:`case_fast.data.wtalc_annotations.read_wtalc_annotations` (the training loader's parser).

    ``annotation_dir`` may be the folder holding these files or one containing
    ``<prefix>-Annotations/``. ``subset`` (str or bytes) selects the videos (``test``: 212 for
    THUMOS14); ``split_file`` (one name per line) instead selects exactly the listed videos. The
    ambiguous segments (looked for in the annotation folder, then its parent) of the selected
    videos are attached to ``GroundTruth.ambiguous``.
    """
    from ..data.wtalc_annotations import find_wtalc_annotations, read_wtalc_annotations

    ann = read_wtalc_annotations(find_wtalc_annotations(annotation_dir, prefix))
    subsets = dict(zip(ann.names, ann.subsets))
    want = None if subset is None else _as_str(subset)
    videos = _select_videos(ann.names, subsets, split_file, want, ann.folder / "subset.npy")
    row = {v: j for j, v in enumerate(ann.names)}
    rows = ((v, lab, s, e) for v in videos
            for lab, (s, e) in zip(ann.seg_labels[row[v]], ann.segments[row[v]]))
    return _build_gt(rows, videos, ann.classes, ann.ambiguous, source=str(ann.folder))


def ground_truth_of_run(results, results_path: str):
    """(GroundTruth, the configuration) a case-fast results file was made for, or None for a file of
    another method. The file says it under ``"case_fast": {"config", "split"}`` (trainer, detect,
    ablate write it); a run's ``best_results.json`` written without it uses the ``config.yaml``
    beside it. Only the annotations and the feature files' headers are read."""
    import os

    import yaml

    from ..config.loading import config_from_dict
    from ..config.values import ConfigError
    from ..data.annotations import DataError
    from ..data.load import load_splits

    meta = results.get("case_fast") if isinstance(results, Mapping) else None
    split = "test"
    if isinstance(meta, Mapping):
        config, split = meta.get("config"), meta.get("split", "test")
        where = f"{results_path} ('case_fast' key)"
    else:
        beside = os.path.join(os.path.dirname(os.path.abspath(results_path)), "config.yaml")
        if os.path.basename(results_path) != "best_results.json" or not os.path.isfile(beside):
            return None
        with open(beside, encoding="utf-8") as f:
            try:
                config = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise DataError(f"{beside}: not a run's config.yaml ({' '.join(str(e).split())})") from None
        where = beside
    if split not in ("test", "train"):
        raise DataError(f"{where}: split {split!r} is neither 'test' nor 'train'")
    try:
        cfg = config_from_dict(config)
    except ConfigError as e:
        raise DataError(f"{where}: the run's configuration is invalid ({e})") from None
    try:
        (dataset,) = load_splits(cfg.data, cfg.model.num_classes, cfg.k, (split,), validate=False)
    except DataError as e:
        raise DataError(f"{results_path}: the ground truth of the run it comes from cannot be read "
                        f"({e}); pass --gt") from None
    return GroundTruth(**dataset.ground_truth()), cfg, split
