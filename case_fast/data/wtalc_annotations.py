"""The W-TALC annotation folder (``videoname.npy``, ``subset.npy``, ``segments.npy``, ``labels.npy``,
optional ``labels_all.npy``, ``classlist.npy``, optional ``Ambiguous_test.txt``): read and checked
into :class:`WtalcAnnotations`; every problem is a :class:`DataError` naming the file and video."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .annotations import DataError, _name, _shown, load_npy, parse_segment, read_ambiguous


@dataclass
class WtalcAnnotations:
    folder: pathlib.Path
    names: List[str]
    subsets: List[str]
    segments: List[List[Tuple[float, float]]]
    seg_labels: List[List[str]]
    labels_all: Optional[List[List[str]]]     # per video (labels_all.npy), None when absent
    classes: List[str]
    ambiguous: Dict[str, np.ndarray]
    ambiguous_path: Optional[pathlib.Path]

    def rows(self, subset: str) -> List[int]:
        return [j for j, s in enumerate(self.subsets) if s == subset]


def find_wtalc_annotations(path, prefix: str) -> pathlib.Path:
    """The folder holding ``videoname.npy``: ``path`` itself or ``path/<prefix>-Annotations``."""
    root = pathlib.Path(path)
    if (root / "videoname.npy").is_file():
        return root
    cand = root / f"{prefix}-Annotations"
    if (cand / "videoname.npy").is_file():
        return cand
    raise DataError(f"{root}: no W-TALC annotations (videoname.npy) here nor in {prefix}-Annotations/")


def _seq(x, where: str, what: str) -> list:
    if x is None:
        return []
    if isinstance(x, (str, bytes, dict)) or not hasattr(x, "__len__"):
        raise DataError(f"{where}: {what} {x!r} is not a list")
    return list(x)


def read_wtalc_annotations(folder) -> WtalcAnnotations:
    """The W-TALC annotation files of ``folder`` (see :func:`find_wtalc_annotations`), checked."""
    ann = pathlib.Path(folder)
    if not ann.is_dir():
        raise DataError(f"missing W-TALC annotation folder {ann}")
    vn = ann / "videoname.npy"
    raw_names = load_npy(vn, "video-name file")
    names = [_name(x, f"{vn} entry {j}") for j, x in enumerate(np.ravel(raw_names))]
    seen: Dict[str, int] = {}
    for j, v in enumerate(names):
        if v in seen:
            raise DataError(f"{vn} names video {v!r} twice (entries {seen[v]} and {j})")
        seen[v] = j
    n = len(names)
    if n == 0:
        raise DataError(f"{vn} names no video")
    sp = ann / "subset.npy"
    subsets = [_name(x, f"{sp} entry {j}", "subset") for j, x in enumerate(np.ravel(load_npy(sp, "subset file")))]
    segments = load_npy(ann / "segments.npy", "segment file")
    seg_labels = load_npy(ann / "labels.npy", "segment-label file")
    labels_all = load_npy(ann / "labels_all.npy", "video-label file", required=False)
    cl = ann / "classlist.npy"
    classes = [_name(x, f"{cl} entry {j}", "class name")
               for j, x in enumerate(np.ravel(load_npy(cl, "class-list file")))]
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise DataError(f"class-list file {cl} names class(es) twice: {_shown(dup)}")
    for what, arr in (("subset.npy", subsets), ("segments.npy", segments), ("labels.npy", seg_labels),
                      ("labels_all.npy", labels_all)):
        if arr is not None and (getattr(arr, "ndim", 1) == 0 or len(arr) != n):
            got = len(arr) if getattr(arr, "ndim", 1) else 0
            raise DataError(f"{ann / what} has {got} entries but videoname.npy has {n}")
    segs_out, labs_out, all_out = [], [], ([] if labels_all is not None else None)
    for j, v in enumerate(names):
        where = f"{ann}: video {v!r}"
        segs = _seq(segments[j], where, "segments")
        labs = [_name(x, where, "segment label") for x in _seq(seg_labels[j], where, "segment labels")]
        if len(segs) != len(labs):
            raise DataError(f"{where}: {len(segs)} segments but {len(labs)} segment labels")
        segs_out.append([parse_segment(s, f"{where}, segment {k}") for k, s in enumerate(segs)])
        labs_out.append(labs)
        if all_out is not None:
            la = labels_all[j]
            la = [] if la is None else np.ravel(np.asarray(la, dtype=object)).tolist()
            all_out.append([_name(x, where, "video label") for x in la])
    amb_path = next((p for p in (ann / "Ambiguous_test.txt", ann.parent / "Ambiguous_test.txt")
                     if p.is_file()), None)
    ambiguous = read_ambiguous(amb_path) if amb_path is not None else {}
    return WtalcAnnotations(ann, names, subsets, segs_out, labs_out, all_out, classes, ambiguous, amb_path)
