"""Annotation files: one parser per format, shared by training (``load.py``) and ``case-fast eval``
(``evaluation.ground_truth.ground_truth_from_*``), so that both read a file the same way and refuse the same
mistakes.

Formats
-------
* ``gt.json`` / ActivityNet-style JSON: ``{"database": {video: {"subset": str, "duration": number
  (optional), "annotations": [{"segment": [start, end], "label": str}]}}}``. Segment times may be
  numbers or numeric strings (BaS-Net writes strings). :func:`read_database_json`.
* Split files (``split_train.txt``, ``split_test.txt``) and W-TALC style name lists: one video name
  per line; surrounding whitespace is stripped, blank lines are skipped, a name may contain inner
  spaces. :func:`read_video_list`.
* Ambiguous segments (``Ambiguous_test.txt``): ``video start end`` per line; the last two fields are
  the times and everything before them is the video name (so a name with a space reads the same as
  in a split file). :func:`read_ambiguous`.
* W-TALC annotation folder (``<prefix>-Annotations/``): ``videoname.npy``, ``subset.npy``,
  ``segments.npy``, ``labels.npy``, ``classlist.npy``, optional ``labels_all.npy`` and
  ``Ambiguous_test.txt``. :func:`case_fast.data.wtalc_annotations.read_wtalc_annotations`.
* Class lists: ``classlist.txt`` (one class per line). :func:`read_class_list`.

Checks (everywhere)
-------------------
Every problem raises :class:`DataError` (a ``ValueError``) whose message names the file and, where
there is one, the video: a missing file, a folder where a file is expected, an empty or non-UTF-8
file, malformed JSON, ``NaN``/``Infinity`` in JSON, a key named twice in one JSON object (``json``
would silently keep the last copy), a value of the wrong JSON type at any level, a segment that is not
two finite numbers with ``0 <= start <= end``, a non-string label, a duration that is not a finite
non-negative number, a video named twice in a list, a video in both the training and the test split
(:func:`check_disjoint`).
"""
from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DataError", "VideoEntry", "load_json", "load_npy", "read_text", "read_video_list", "parse_segment",
           "read_database_json", "read_ambiguous", "read_class_list", "check_disjoint", "subsets_of",
           "select_subset", "videos_from_list"]


class DataError(ValueError):
    """A dataset is missing, malformed or inconsistent; the message names the file and/or video."""


def _shown(names: Sequence[str], n: int = 5) -> str:
    names = list(names)
    return ", ".join(repr(v) for v in names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


# ----------------------------------------------------------------------------------------------
# files

def _check_file(path: pathlib.Path, what: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory, expected a file")
    if not path.is_file():
        raise DataError(f"missing {what}: {path}")
    return path


def read_text(path, what: str = "file", allow_empty: bool = False) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); DataError naming ``path`` if it is
    missing, a folder, unreadable, not UTF-8 or (unless ``allow_empty``) empty."""
    path = _check_file(path, what)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not allow_empty and not text.strip():
        raise DataError(f"{what} {path} is empty")
    return text


def load_npy(path, what: str, required: bool = True):
    """The array of a ``.npy`` file (object arrays allowed: W-TALC's files hold lists); ``None``
    for a missing file that is not ``required``; DataError naming ``path`` otherwise."""
    if not required and not pathlib.Path(path).exists():
        return None
    path = _check_file(path, what)
    try:
        return np.load(path, allow_pickle=True, encoding="bytes")
    except Exception as e:
        raise DataError(f"corrupt or unreadable {what}: {path} ({type(e).__name__}: {e})") from e


def _no_duplicates(source: str):
    def hook(pairs):
        out = dict(pairs)
        if len(out) != len(pairs):  # rare: find the key named twice for the message
            seen = set()
            for k, _ in pairs:
                if k in seen:
                    raise DataError(f"{source}: key {k!r} appears twice in one JSON object "
                                    "(the last copy would silently win)")
                seen.add(k)
        return out
    return hook


def _no_constants(source: str):
    def hook(name):
        raise DataError(f"{source}: {name} is not a number JSON allows")
    return hook


def load_json(path, what: str = "JSON file") -> Any:
    """Strict JSON: DataError naming ``path`` for a missing/empty/unreadable file, a syntax error
    (with line and column), NaN/Infinity, or a key named twice in one object."""
    text = read_text(path, what)
    src = f"{what} {path}"
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates(src), parse_constant=_no_constants(src))
    except json.JSONDecodeError as e:
        raise DataError(f"cannot parse {what} {path}: {e.msg} (line {e.lineno}, column {e.colno})") from e
    except RecursionError as e:
        raise DataError(f"cannot parse {what} {path}: nested too deeply") from e


def read_video_list(path, what: str = "split file") -> List[str]:
    """One video name per line (stripped; blank lines skipped); DataError on an empty file or a name
    listed twice."""
    path = pathlib.Path(path)
    out, seen = [], {}
    for n, line in enumerate(read_text(path, what).splitlines(), 1):
        v = line.strip()
        if not v:
            continue
        if v in seen:
            raise DataError(f"{what} {path}:{n} names video {v!r} again (first on line {seen[v]})")
        seen[v] = n
        out.append(v)
    return out


# ----------------------------------------------------------------------------------------------
# values

def _number(x, where: str, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str, bytes, np.number)):
        raise DataError(f"{where}: {what} {x!r} is not a number")
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{where}: {what} {x!r} is not a number") from e
    if not math.isfinite(v):
        raise DataError(f"{where}: {what} {x!r} is not a finite number")
    return v


def parse_segment(seg, where: str) -> Tuple[float, float]:
    """``[start, end]``: two finite numbers (numbers or numeric strings) with 0 <= start <= end;
    DataError naming ``where`` otherwise."""
    if isinstance(seg, (str, bytes, dict)) or not hasattr(seg, "__len__") or len(seg) != 2:
        raise DataError(f"{where}: malformed segment {seg!r} (expected [start, end])")
    try:
        s, e = float(seg[0]), float(seg[1])
        if isinstance(seg[0], bool) or isinstance(seg[1], bool):
            raise TypeError
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{where}: non-numeric segment {list(seg)!r}") from err
    if not (math.isfinite(s) and math.isfinite(e)):
        raise DataError(f"{where}: non-finite segment {list(seg)!r}")
    if s < 0:
        raise DataError(f"{where}: segment {list(seg)!r} starts before 0 s")
    if e < s:
        raise DataError(f"{where}: segment ends before it starts {list(seg)!r}")
    return s, e


def _name(x, where: str, what: str = "video name") -> str:
    if isinstance(x, (bytes, np.bytes_)):
        try:
            x = bytes(x).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: {what} {x!r} is not UTF-8") from e
    elif isinstance(x, np.ndarray) and x.ndim == 0:
        return _name(x.item(), where, what)
    elif not isinstance(x, (str, np.str_)):
        raise DataError(f"{where}: {what} {x!r} is not a string")
    x = str(x)
    if not x.strip():
        raise DataError(f"{where}: empty {what}")
    if x != x.strip():
        raise DataError(f"{where}: {what} {x!r} has leading or trailing whitespace")
    return x


# ----------------------------------------------------------------------------------------------
# database JSON (BaS-Net gt.json, ActivityNet)

@dataclass
class VideoEntry:
    subset: str
    duration: Optional[float]
    annotations: List[Tuple[str, float, float]]    # (label, start, end)

    # dict-style access (the loaders were written against plain dicts)
    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


def read_database_json(path, what: str = "annotation file") -> Dict[str, VideoEntry]:
    """``{"database": {video: {...}}}`` -> {video: VideoEntry}, every field checked (module doc)."""
    path = pathlib.Path(path)
    raw = load_json(path, what)
    if not isinstance(raw, dict):
        raise DataError(f"{what} {path}: expected a JSON object {{\"database\": {{video: ...}}}}, "
                        f"got {type(raw).__name__}")
    if "database" not in raw:
        raise DataError(f"{what} {path}: no 'database' key (expected {{\"database\": {{video: ...}}}})")
    db = raw["database"]
    if not isinstance(db, dict):
        raise DataError(f"{what} {path}: 'database' must be an object video -> entry, got "
                        f"{type(db).__name__}")
    if not db:
        raise DataError(f"{what} {path}: 'database' holds no video")
    out: Dict[str, VideoEntry] = {}
    for vid, entry in db.items():
        where = f"{path}: video {vid!r}"
        _name(vid, where)
        if not isinstance(entry, dict):
            raise DataError(f"{where}: entry is not an object (got {type(entry).__name__})")
        subset = entry.get("subset", "")
        if not isinstance(subset, str):
            raise DataError(f"{where}: 'subset' {subset!r} is not a string")
        anns_raw = entry.get("annotations", [])
        if anns_raw is None:
            anns_raw = []
        if not isinstance(anns_raw, list):
            raise DataError(f"{where}: 'annotations' must be a list, got {type(anns_raw).__name__}")
        anns = []
        for j, a in enumerate(anns_raw):
            if not isinstance(a, dict) or "segment" not in a or "label" not in a:
                raise DataError(f"{where}: annotation {j} needs 'segment' and 'label'")
            if not isinstance(a["label"], str) or not a["label"].strip():
                raise DataError(f"{where}: annotation {j} has a non-string or empty label {a['label']!r}")
            s, e = parse_segment(a["segment"], f"{where}, annotation {j}")
            anns.append((a["label"], s, e))
        dur = entry.get("duration")
        if dur is not None:
            dur = _number(dur, where, "duration")
            if dur < 0:
                raise DataError(f"{where}: negative duration {dur!r}")
        out[vid] = VideoEntry(subset=subset, duration=dur, annotations=anns)
    return out


def subsets_of(db: Dict[str, VideoEntry]) -> List[str]:
    return sorted({e.subset for e in db.values()})


def select_subset(db: Dict[str, VideoEntry], subset: str, source) -> List[str]:
    """Videos of ``subset`` (file order); DataError listing the subsets present when there is none."""
    vids = [v for v, e in db.items() if e.subset == subset]
    if not vids:
        raise DataError(f"{source}: no video in subset {subset!r} (subsets present: {subsets_of(db)})")
    return vids


def videos_from_list(names: Sequence[str], known: Iterable[str], list_path, source) -> List[str]:
    """``names`` (a split file's), each of which must be one of ``known``."""
    known = set(known)
    missing = [v for v in names if v not in known]
    if missing:
        raise DataError(f"split file {list_path} names {len(missing)} video(s) absent from {source}: "
                        f"{_shown(missing)}")
    return list(names)


def check_disjoint(train: Sequence[str], test: Sequence[str], train_src, test_src) -> None:
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(f"{len(both)} video(s) are in both the training split ({train_src}) and the "
                        f"test split ({test_src}): {_shown(both)}")


# ----------------------------------------------------------------------------------------------
# ambiguous segments, class lists

def read_ambiguous(path) -> Dict[str, np.ndarray]:
    """``video start end`` per line -> {video: (m, 2) float64}; the name is everything before the
    last two fields."""
    path = pathlib.Path(path)
    amb: Dict[str, list] = {}
    for n, line in enumerate(read_text(path, "ambiguous-segment file", allow_empty=True).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 2)
        if len(parts) != 3:
            raise DataError(f"{path}:{n}: expected 'video start end', got {line!r}")
        s, e = parse_segment(parts[1:], f"{path}:{n} (video {parts[0]!r})")
        amb.setdefault(parts[0], []).append((s, e))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in amb.items()}


def read_class_list(path) -> List[str]:
    """``classlist.txt``: one class per line (stripped, blank lines skipped), no duplicates."""
    path = pathlib.Path(path)
    names = [ln.strip() for ln in read_text(path, "class-list file").splitlines() if ln.strip()]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DataError(f"class-list file {path} names class(es) twice: {_shown(dup)}")
    return names
