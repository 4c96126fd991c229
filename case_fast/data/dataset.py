"""Video datasets and the loaders of the three on-disk layouts of SPEC §1 (plus the synthetic set).

``load_datasets(data_cfg, num_classes, k)`` returns ``(train, test)`` :class:`VideoDataset` objects
for ``data_cfg.layout`` in

* ``'synthetic'`` - the embedded THUMOS14-shaped set (see :mod:`case_fast.data.synthetic`);
* ``'basnet'``    - BaS-Net/ASL THUMOS14 layout: ``root/gt.json``, ``root/split_<subset>.txt`` and
  ``root/features/<subset>/{rgb,flow}/<video>.npy`` (each (T_v, D) float32; RGB|flow concatenated).
  ``<subset>`` is ``data_cfg.train_subset`` / ``test_subset`` (defaults 'train' / 'test', i.e. the
  usual ``split_train.txt`` / ``split_test.txt``). Optional ``root/Ambiguous_test.txt`` gives the
  ambiguous segments; optional ``root/classlist.txt`` (one class per line) fixes the class list and
  order, otherwise it is the sorted unique labels of ``gt.json`` (THUMOS14: the 20 classes in
  alphabetical order);
* ``'wtalc'``     - W-TALC/CO2-Net/DELU layout: ``root/<prefix>-I3D-JOINTFeatures.npy`` (object array of
  (T_v, 2D) arrays) and ``root/<prefix>-Annotations/*.npy``, ``<prefix>`` = ``data_cfg.dataset_name``.
  Classes are ``classlist.npy`` in its order; video labels ``labels_all.npy`` (else the segment labels);
* ``'anet_json'`` - ActivityNet-style JSON (``data_cfg.annotation_file``, default ``root/annotations.json``)
  with per-video ``<id>.npy`` or ``v_<id>.npy`` feature files (T_v, 2D) in ``data_cfg.feature_dir``
  (default ``root/features``). Classes: sorted unique labels of the whole JSON.

Subset names. A configured subset name that appears in the files is used as is. Otherwise the
defaults are mapped: for ``anet_json`` 'train' -> 'training' and 'test' -> 'validation'; for ``wtalc``
'train' -> 'training' if present else 'validation' (THUMOS14: the validation videos are the training
set) and 'test' -> 'validation' (ActivityNet1.2, which has no 'test' subset).

Validation and errors. Every problem raises :class:`DataError` (a ``ValueError``) whose message names
the file and/or the video. What is checked, and when:

* at load time (``load_datasets``), before anything is trained or written: missing/unreadable
  annotation files, malformed JSON, a split file naming a video absent from ``gt.json``, labels not in
  the class list, malformed segments (not two finite numbers, or end < start), a class count other than
  ``num_classes``, k outside [1, T]; and for the feature files, from their ``.npy`` headers: a missing
  file, a corrupt/unreadable/truncated file, a width other than ``data_cfg.feature_dim`` (per stream
  ``feature_dim/2`` for 'basnet'), zero snippets, RGB and flow of different lengths;
* NaN/inf values need the data itself: by default ``load_datasets(..., validate=True)`` reads every
  feature file once at load time (keeping it in the in-memory cache when the whole set fits in
  ``cache_bytes``), so a trainer that calls ``load_datasets`` before creating its output folder never
  writes partial outputs because of bad data. With ``validate=False`` the same check runs on the
  first access of that video's features (``VideoDataset.features``); ``VideoDataset.validate()`` runs
  it for all videos on demand. The synthetic set is generated, so it is not re-scanned.

Videos shorter than k snippets are *not* an error: every video is resampled to T snippets
(SPEC §1, indices repeat when T_v < T) and top-k acts on the T sampled snippets; real THUMOS14 has 60
videos with T_v < 93. What must hold is 1 <= k <= T (checked).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DataError", "VideoDataset", "load_datasets", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 8 << 30   # cache all features in memory when the whole split fits in this
_MAX_LISTED = 8                 # missing files listed by name in one error message


class DataError(ValueError):
    """A dataset is missing, malformed or inconsistent; the message names the file and/or video."""


# ----------------------------------------------------------------------------------------------
# the dataset object

class VideoDataset:
    """A list of videos with multi-hot labels, lengths and (lazily read) features.

    Attributes: ``name``, ``class_names`` (G), ``videos`` (V), ``labels`` (V, G) float32 multi-hot,
    ``num_snippets`` (V,) int64, ``fps``, ``frames_per_snippet``, ``feature_dim`` (2D), ``sources``
    (V, where each video's features come from, for messages).
    ``features(i)`` returns a read-only (T_v, 2D) float32 array (RGB first half, flow second half).
    """

    def __init__(self, name: str, class_names: Sequence[str], videos: Sequence[str],
                 labels: np.ndarray, num_snippets: Sequence[int], fps: float, frames_per_snippet: int,
                 feature_dim: int, loader: Callable[[int], np.ndarray],
                 sources: Optional[Sequence[str]] = None,
                 gt: Optional[Tuple[Sequence[str], Sequence[int], Sequence[Tuple[float, float]]]] = None,
                 ambiguous: Optional[Dict[str, np.ndarray]] = None,
                 cache: bool = True, trusted: bool = False):
        self.name = str(name)
        self.class_names = [str(c) for c in class_names]
        self.videos = [str(v) for v in videos]
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.videos), len(self.class_names))
        self.num_snippets = np.asarray(num_snippets, dtype=np.int64).reshape(len(self.videos))
        self.fps = float(fps)
        self.frames_per_snippet = int(frames_per_snippet)
        self.feature_dim = int(feature_dim)
        self.sources = list(sources) if sources is not None else [self.name] * len(self.videos)
        self._loader = loader
        self._cache_enabled = bool(cache)
        self._cache: Dict[int, np.ndarray] = {}
        self._trusted = bool(trusted)
        gv, gl, gs = gt if gt is not None else ([], [], [])
        self._gt_video = np.asarray([str(v) for v in gv], dtype=str)
        self._gt_label = np.asarray(gl, dtype=np.int64).reshape(-1)
        self._gt_segment = np.asarray(gs, dtype=np.float64).reshape(-1, 2)
        self._ambiguous = {str(k): np.asarray(v, dtype=np.float64).reshape(-1, 2)
                           for k, v in (ambiguous or {}).items()}
        self.index = {v: i for i, v in enumerate(self.videos)}

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        return (f"VideoDataset({self.name!r}, {len(self)} videos, {len(self.class_names)} classes, "
                f"feature_dim={self.feature_dim}, snippets={int(self.num_snippets.sum())})")

    @property
    def snippet_seconds(self) -> float:
        """Seconds per snippet (frames_per_snippet / fps, 0.64 s for THUMOS14 I3D features)."""
        return self.frames_per_snippet / self.fps

    def _check(self, i: int, arr) -> np.ndarray:
        v, src = self.videos[i], self.sources[i]
        try:
            arr = np.asarray(arr)
        except Exception as e:  # pragma: no cover - ragged objects etc.
            raise DataError(f"{self.name}: features of video {v!r} ({src}) are not an array: {e}") from e
        if arr.ndim != 2:
            raise DataError(f"{self.name}: features of video {v!r} ({src}) have shape {arr.shape}, "
                            f"expected (T_v, {self.feature_dim})")
        if arr.shape[0] == 0:
            raise DataError(f"{self.name}: video {v!r} ({src}) has zero snippets")
        if arr.shape[1] != self.feature_dim:
            raise DataError(f"{self.name}: features of video {v!r} ({src}) are {arr.shape[1]} wide, "
                            f"expected data.feature_dim = {self.feature_dim}")
        if arr.shape[0] != self.num_snippets[i]:
            raise DataError(f"{self.name}: video {v!r} ({src}) has {arr.shape[0]} snippets, "
                            f"expected {int(self.num_snippets[i])}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataError(f"{self.name}: features of video {v!r} ({src}) have dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not self._trusted:
            bad = ~np.isfinite(arr)
            if bad.any():
                t, c = np.argwhere(bad)[0]
                raise DataError(f"{self.name}: features of video {v!r} ({src}) contain "
                                f"{int(bad.sum())} NaN/inf values (first at snippet {t}, channel {c})")
        return arr

    def features(self, i: int) -> np.ndarray:
        """(T_v, 2D) float32, read-only; validated on first access (DataError if bad)."""
        i = int(i)
        got = self._cache.get(i)
        if got is not None:
            return got
        if not 0 <= i < len(self.videos):
            raise IndexError(f"{self.name}: video index {i} out of range [0, {len(self.videos)})")
        try:
            raw = self._loader(i)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.name}: cannot read features of video {self.videos[i]!r} "
                            f"({self.sources[i]}): {type(e).__name__}: {e}") from e
        arr = self._check(i, raw)
        arr.flags.writeable = False
        if self._cache_enabled:
            self._cache[i] = arr
        return arr

    def validate(self) -> "VideoDataset":
        """Read (and check) every video's features now; raises DataError on the first bad one."""
        for i in range(len(self.videos)):
            self.features(i)
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    def ground_truth(self) -> dict:
        """Ground-truth segments of this set (seconds), for evaluation.

        video (n,) str, label (n,) int64 class index, segment (n, 2) float64, videos (all V videos of
        the set, including those without segments), class_names, ambiguous {video: (m, 2) float64}.
        """
        return dict(video=self._gt_video.copy(), label=self._gt_label.copy(),
                    segment=self._gt_segment.copy(), videos=list(self.videos),
                    class_names=list(self.class_names),
                    ambiguous={k: v.copy() for k, v in self._ambiguous.items()})


# ----------------------------------------------------------------------------------------------
# shared parsing helpers

def _decode(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return _decode(x.item())
    return str(x)


def _require_file(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.is_file():
        raise DataError(f"missing {what}: {path}")
    return path


def _read_json(path: pathlib.Path, what: str) -> dict:
    _require_file(path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot parse {what} {path}: {e}") from e


def _read_split(path: pathlib.Path) -> List[str]:
    _require_file(path, "split file")
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split file {path}: {e}") from e
    seen, out = set(), []
    for v in lines:
        if v in seen:
            raise DataError(f"split file {path} names video {v!r} twice")
        seen.add(v)
        out.append(v)
    if not out:
        raise DataError(f"split file {path} is empty")
    return out


def parse_segment(seg, where: str) -> Tuple[float, float]:
    """Two finite numbers (numbers or numeric strings), end >= start; DataError naming ``where``."""
    if isinstance(seg, (str, bytes)) or not hasattr(seg, "__len__") or len(seg) != 2:
        raise DataError(f"{where}: malformed segment {seg!r} (expected [start, end])")
    try:
        s, e = float(seg[0]), float(seg[1])
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: non-numeric segment {list(seg)!r}") from err
    if not (math.isfinite(s) and math.isfinite(e)):
        raise DataError(f"{where}: non-finite segment {list(seg)!r}")
    if e < s:
        raise DataError(f"{where}: segment ends before it starts {list(seg)!r}")
    return s, e


def read_gt_json(path: pathlib.Path) -> Dict[str, dict]:
    """BaS-Net/ActivityNet-style JSON -> {video: {'subset', 'duration' (float or None),
    'annotations': [(label, start, end)]}}, every segment validated."""
    raw = _read_json(path, "annotation file")
    db = raw.get("database") if isinstance(raw, dict) else None
    if not isinstance(db, dict):
        raise DataError(f"annotation file {path}: expected {{'database': {{video: ...}}}}")
    out = {}
    for vid, entry in db.items():
        where = f"{path}: video {vid!r}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: entry is not an object")
        anns = []
        for j, a in enumerate(entry.get("annotations") or []):
            if not isinstance(a, dict) or "segment" not in a or "label" not in a:
                raise DataError(f"{where}: annotation {j} needs 'segment' and 'label'")
            if not isinstance(a["label"], str):
                raise DataError(f"{where}: annotation {j} has a non-string label {a['label']!r}")
            s, e = parse_segment(a["segment"], f"{where}, annotation {j}")
            anns.append((a["label"], s, e))
        dur = entry.get("duration")
        try:
            dur = None if dur is None else float(dur)
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: non-numeric duration {dur!r}") from err
        out[str(vid)] = dict(subset=str(entry.get("subset", "")), duration=dur, annotations=anns)
    return out


def read_ambiguous(path: pathlib.Path) -> Dict[str, np.ndarray]:
    """``video start end`` per line -> {video: (m, 2) float64}."""
    _require_file(path, "ambiguous-segment file")
    amb: Dict[str, list] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DataError(f"{path}:{n}: expected 'video start end', got {line!r}")
        s, e = parse_segment(parts[1:], f"{path}:{n} (video {parts[0]!r})")
        amb.setdefault(parts[0], []).append((s, e))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in amb.items()}


def _class_list(names: Iterable[str], num_classes: int, source: str) -> List[str]:
    names = [str(c) for c in names]
    if len(set(names)) != len(names):
        raise DataError(f"{source}: duplicate class names in the class list")
    if len(names) != int(num_classes):
        shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        raise DataError(f"{source}: {len(names)} classes found but model.num_classes = {num_classes} "
                        f"(classes: {shown})")
    return names


def _check_label(label: str, cidx: Dict[str, int], where: str) -> int:
    if label not in cidx:
        raise DataError(f"{where}: label {label!r} is not in the class list")
    return cidx[label]


def _npy_shape(path: pathlib.Path, video: str) -> Tuple[int, ...]:
    """Shape from the .npy header (memory-mapped, validates the file size too)."""
    if not path.is_file():
        raise DataError(f"missing feature file for video {video!r}: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        shape = tuple(arr.shape)
        dtype = arr.dtype
        del arr
    except Exception as e:
        raise DataError(f"corrupt or unreadable feature file for video {video!r}: {path} "
                        f"({type(e).__name__}: {e})") from e
    if not np.issubdtype(dtype, np.floating) and not np.issubdtype(dtype, np.integer):
        raise DataError(f"feature file for video {video!r}: {path} has dtype {dtype}")
    return shape


def _check_2d(shape, width: int, video: str, path) -> int:
    if len(shape) != 2:
        raise DataError(f"feature file for video {video!r}: {path} has shape {shape}, expected (T_v, {width})")
    if shape[0] == 0:
        raise DataError(f"video {video!r} has zero snippets: {path}")
    if shape[1] != width:
        raise DataError(f"feature file for video {video!r}: {path} is {shape[1]} wide, expected {width}")
    return int(shape[0])


def _resolve_subset(requested: str, present: Iterable[str], aliases: Dict[str, List[str]],
                    source: str) -> str:
    present = set(present)
    if requested in present:
        return requested
    for alt in aliases.get(requested, []):
        if alt in present:
            return alt
    raise DataError(f"{source}: subset {requested!r} not found (subsets present: {sorted(present)})")


def _missing_error(missing: List[Tuple[str, str]], name: str) -> DataError:
    shown = "; ".join(f"{v!r}: {p}" for v, p in missing[:_MAX_LISTED])
    more = f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
    return DataError(f"{name}: {len(missing)} missing feature file(s): {shown}{more}")


def _root(data_cfg, required: bool = True) -> Optional[pathlib.Path]:
    if data_cfg.root is None:
        if required:
            raise DataError(f"data.root must be set for layout {data_cfg.layout!r}")
        return None
    root = pathlib.Path(os.path.expanduser(str(data_cfg.root)))
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory")
    return root


def _multi_hot(label_sets: Sequence[Iterable[int]], g: int) -> np.ndarray:
    out = np.zeros((len(label_sets), g), np.float32)
    for i, ls in enumerate(label_sets):
        for c in ls:
            out[i, c] = 1.0
    return out


def _cache_fits(num_snippets: np.ndarray, width: int, cache_bytes: int) -> bool:
    return int(num_snippets.sum()) * int(width) * 4 <= int(cache_bytes)


# ----------------------------------------------------------------------------------------------
# basnet layout

def load_basnet(data_cfg, num_classes: int, cache_bytes: int = DEFAULT_CACHE_BYTES
                ) -> Tuple[VideoDataset, VideoDataset]:
    root = _root(data_cfg)
    gt_path = root / "gt.json"
    db = read_gt_json(gt_path)
    cl_path = root / "classlist.txt"
    if cl_path.is_file():
        classes = _class_list([c for c in cl_path.read_text().split("\n") if c.strip()],
                              num_classes, str(cl_path))
    else:
        classes = _class_list(sorted({a[0] for e in db.values() for a in e["annotations"]}),
                              num_classes, str(gt_path))
    cidx = {c: i for i, c in enumerate(classes)}
    amb_path = root / "Ambiguous_test.txt"
    ambiguous = read_ambiguous(amb_path) if amb_path.is_file() else {}
    d = int(data_cfg.feature_dim)
    if d % 2:
        raise DataError(f"data.feature_dim = {d} must be even (RGB + flow halves)")
    half = d // 2
    out = []
    for role, subset in (("train", data_cfg.train_subset), ("test", data_cfg.test_subset)):
        split_path = root / f"split_{subset}.txt"
        vids = _read_split(split_path)
        name = f"thumos14-{role}" if subset in ("train", "test") else f"{root.name}-{subset}"
        for v in vids:
            if v not in db:
                raise DataError(f"split file {split_path} names video {v!r}, which is absent from {gt_path}")
        lens, srcs, missing, label_sets = [], [], [], []
        gv, gl, gs = [], [], []
        for v in vids:
            paths = [root / "features" / subset / s / f"{v}.npy" for s in ("rgb", "flow")]
            for p in paths:
                if not p.is_file():
                    missing.append((v, str(p)))
            labs = [_check_label(a[0], cidx, f"{gt_path}: video {v!r}") for a in db[v]["annotations"]]
            label_sets.append(sorted(set(labs)))
            for (lab, s, e), c in zip(db[v]["annotations"], labs):
                gv.append(v); gl.append(c); gs.append((s, e))
        if missing:
            raise _missing_error(missing, name)
        for v in vids:
            rgb_p, flow_p = (root / "features" / subset / s / f"{v}.npy" for s in ("rgb", "flow"))
            t_rgb = _check_2d(_npy_shape(rgb_p, v), half, v, rgb_p)
            t_flow = _check_2d(_npy_shape(flow_p, v), half, v, flow_p)
            if t_rgb != t_flow:
                raise DataError(f"video {v!r}: RGB has {t_rgb} snippets ({rgb_p}) but flow has "
                                f"{t_flow} ({flow_p})")
            lens.append(t_rgb)
            srcs.append(str(root / "features" / subset / "{rgb,flow}" / f"{v}.npy"))

        def loader(i, _vids=vids, _subset=subset):
            v = _vids[i]
            base = root / "features" / _subset
            rgb = np.load(base / "rgb" / f"{v}.npy", allow_pickle=False)
            flow = np.load(base / "flow" / f"{v}.npy", allow_pickle=False)
            if rgb.shape != flow.shape:
                raise DataError(f"video {v!r}: RGB {rgb.shape} and flow {flow.shape} features differ "
                                f"in shape ({base})")
            return np.concatenate([rgb, flow], axis=1)

        lens = np.asarray(lens, np.int64)
        out.append(VideoDataset(
            name, classes, vids, _multi_hot(label_sets, len(classes)), lens, data_cfg.fps,
            data_cfg.frames_per_snippet, d, loader, sources=srcs,
            gt=(gv, gl, gs),
            ambiguous={v: a for v, a in ambiguous.items() if v in set(vids)} if role == "test" else None,
            cache=_cache_fits(lens, d, cache_bytes)))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# wtalc layout

def _load_npy_obj(path: pathlib.Path, what: str, required: bool = True):
    if not path.is_file():
        if required:
            raise DataError(f"missing {what}: {path}")
        return None
    try:
        return np.load(path, allow_pickle=True, encoding="bytes")
    except Exception as e:
        raise DataError(f"corrupt or unreadable {what}: {path} ({type(e).__name__}: {e})") from e


def load_wtalc(data_cfg, num_classes: int) -> Tuple[VideoDataset, VideoDataset]:
    root = _root(data_cfg)
    prefix = str(data_cfg.dataset_name)
    ann = root / f"{prefix}-Annotations"
    if not ann.is_dir():
        raise DataError(f"missing annotation folder {ann} (data.dataset_name = {prefix!r})")
    names = [_decode(x) for x in np.ravel(_load_npy_obj(ann / "videoname.npy", "video-name file"))]
    subsets = [_decode(x) for x in np.ravel(_load_npy_obj(ann / "subset.npy", "subset file"))]
    segments = _load_npy_obj(ann / "segments.npy", "segment file")
    seg_labels = _load_npy_obj(ann / "labels.npy", "segment-label file")
    labels_all = _load_npy_obj(ann / "labels_all.npy", "video-label file", required=False)
    cl_path = ann / "classlist.npy"
    classes = _class_list([_decode(x) for x in np.ravel(_load_npy_obj(cl_path, "class-list file"))],
                          num_classes, str(cl_path))
    cidx = {c: i for i, c in enumerate(classes)}
    n = len(names)
    for what, arr in (("subset.npy", subsets), ("segments.npy", segments), ("labels.npy", seg_labels),
                      ("labels_all.npy", labels_all)):
        if arr is not None and len(arr) != n:
            raise DataError(f"{ann / what} has {len(arr)} entries but videoname.npy has {n}")
    amb_path = ann / "Ambiguous_test.txt"
    ambiguous = read_ambiguous(amb_path) if amb_path.is_file() else {}

    aliases_train = {"train": ["training", "validation"]}
    aliases_test = {"test": ["validation"]}
    tr = _resolve_subset(str(data_cfg.train_subset), subsets, aliases_train, str(ann / "subset.npy"))
    te = _resolve_subset(str(data_cfg.test_subset), subsets, aliases_test, str(ann / "subset.npy"))

    feat_path = root / f"{prefix}-I3D-JOINTFeatures.npy"
    feats = _load_npy_obj(feat_path, "feature file")
    if feats.ndim == 0 or len(feats) != n:
        raise DataError(f"{feat_path} holds {len(feats) if feats.ndim else 0} videos but "
                        f"{ann / 'videoname.npy'} names {n}")
    d = int(data_cfg.feature_dim)
    out = []
    for role, subset in (("train", tr), ("test", te)):
        rows = [j for j in range(n) if subsets[j] == subset]
        name = f"{prefix}-{role}"
        vids, lens, label_sets, arrays = [], [], [], []
        gv, gl, gs = [], [], []
        for j in rows:
            v = names[j]
            where = f"{ann}: video {v!r}"
            segs = list(segments[j]) if segments[j] is not None else []
            labs = [_decode(x) for x in (seg_labels[j] if seg_labels[j] is not None else [])]
            if len(segs) != len(labs):
                raise DataError(f"{where}: {len(segs)} segments but {len(labs)} segment labels")
            lab_idx = [_check_label(l, cidx, where) for l in labs]
            for s_, c in zip(segs, lab_idx):
                s, e = parse_segment(s_, where)
                gv.append(v); gl.append(c); gs.append((s, e))
            if labels_all is not None:
                vl = [_check_label(_decode(x), cidx, where) for x in np.ravel(np.asarray(
                    labels_all[j], dtype=object))] if labels_all[j] is not None else []
            else:
                vl = lab_idx
            label_sets.append(sorted(set(vl)))
            try:
                f = np.asarray(feats[j])
            except Exception as e:
                raise DataError(f"{feat_path}: features of video {v!r} unreadable: {e}") from e
            if f.dtype == object:
                raise DataError(f"{feat_path}: features of video {v!r} are not numeric")
            _check_2d(f.shape, d, v, feat_path)
            vids.append(v); lens.append(f.shape[0]); arrays.append(f)
        if not vids:
            raise DataError(f"{ann / 'subset.npy'}: no video in subset {subset!r}")
        lens = np.asarray(lens, np.int64)
        ds = VideoDataset(name, classes, vids, _multi_hot(label_sets, len(classes)), lens, data_cfg.fps,
                          data_cfg.frames_per_snippet, d, lambda i, _a=arrays: _a[i],
                          sources=[f"{feat_path}[{j}]" for j in rows],
                          gt=(gv, gl, gs),
                          ambiguous={v: a for v, a in ambiguous.items() if v in set(vids)}
                          if role == "test" else None, cache=True)
        ds.validate()       # all in memory already: check and convert now, keep only the float32 copies
        arrays[:] = [ds.features(i) for i in range(len(vids))]
        out.append(ds)
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# anet_json layout

def _feature_candidates(feat_dir: pathlib.Path, vid: str) -> List[pathlib.Path]:
    names = [vid, "v_" + vid]
    if vid.startswith("v_"):
        names.append(vid[2:])
    return [feat_dir / f"{n}.npy" for n in names]


def load_anet_json(data_cfg, num_classes: int, cache_bytes: int = DEFAULT_CACHE_BYTES
                   ) -> Tuple[VideoDataset, VideoDataset]:
    root = _root(data_cfg, required=data_cfg.annotation_file is None or data_cfg.feature_dir is None)
    ann_path = pathlib.Path(os.path.expanduser(data_cfg.annotation_file)) if data_cfg.annotation_file \
        else root / "annotations.json"
    feat_dir = pathlib.Path(os.path.expanduser(data_cfg.feature_dir)) if data_cfg.feature_dir \
        else root / "features"
    db = read_gt_json(ann_path)
    if not feat_dir.is_dir():
        raise DataError(f"feature folder {feat_dir} is not a directory")
    classes = _class_list(sorted({a[0] for e in db.values() for a in e["annotations"]}),
                          num_classes, str(ann_path))
    cidx = {c: i for i, c in enumerate(classes)}
    present = {e["subset"] for e in db.values()}
    tr = _resolve_subset(str(data_cfg.train_subset), present, {"train": ["training"]}, str(ann_path))
    te = _resolve_subset(str(data_cfg.test_subset), present, {"test": ["validation"]}, str(ann_path))
    d = int(data_cfg.feature_dim)
    stem = ann_path.stem
    out = []
    for role, subset in (("train", tr), ("test", te)):
        vids = [v for v, e in db.items() if e["subset"] == subset]
        if not vids:
            raise DataError(f"{ann_path}: no video in subset {subset!r}")
        name = f"{stem}-{role}"
        paths, missing = [], []
        for v in vids:
            cands = _feature_candidates(feat_dir, v)
            p = next((c for c in cands if c.is_file()), None)
            if p is None:
                missing.append((v, str(cands[0]) + " (or v_<id>.npy)"))
            paths.append(p)
        if missing:
            raise _missing_error(missing, name)
        lens, label_sets, gv, gl, gs = [], [], [], [], []
        for v, p in zip(vids, paths):
            lens.append(_check_2d(_npy_shape(p, v), d, v, p))
            labs = [_check_label(a[0], cidx, f"{ann_path}: video {v!r}") for a in db[v]["annotations"]]
            label_sets.append(sorted(set(labs)))
            for (lab, s, e), c in zip(db[v]["annotations"], labs):
                gv.append(v); gl.append(c); gs.append((s, e))
        lens = np.asarray(lens, np.int64)
        out.append(VideoDataset(
            name, classes, vids, _multi_hot(label_sets, len(classes)), lens, data_cfg.fps,
            data_cfg.frames_per_snippet, d, lambda i, _p=paths: np.load(_p[i], allow_pickle=False),
            sources=[str(p) for p in paths], gt=(gv, gl, gs),
            cache=_cache_fits(lens, d, cache_bytes)))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------

LAYOUTS = ("synthetic", "basnet", "wtalc", "anet_json")


def load_datasets(data_cfg, num_classes: int, k: int, *, validate: bool = True,
                  cache_bytes: int = DEFAULT_CACHE_BYTES) -> Tuple[VideoDataset, VideoDataset]:
    """(train, test) datasets of ``data_cfg.layout``; every data problem raises DataError here
    (with ``validate=True``, also NaN/inf in feature files), before any training."""
    T = int(data_cfg.num_segments)
    if T < 1:
        raise DataError(f"data.num_segments must be positive, got {T}")
    if not 1 <= int(k) <= T:
        raise DataError(f"top-k size k = {k} must be in [1, data.num_segments = {T}]")
    layout = str(data_cfg.layout)
    if layout == "synthetic":
        from .synthetic import load_synthetic
        return load_synthetic(data_cfg, num_classes)
    if layout == "basnet":
        train, test = load_basnet(data_cfg, num_classes, cache_bytes)
    elif layout == "wtalc":
        train, test = load_wtalc(data_cfg, num_classes)
    elif layout == "anet_json":
        train, test = load_anet_json(data_cfg, num_classes, cache_bytes)
    else:
        raise DataError(f"unknown data.layout {layout!r} (expected one of {LAYOUTS})")
    if validate:
        train.validate()
        test.validate()
    return train, test
