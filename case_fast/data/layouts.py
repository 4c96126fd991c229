"""The loaders of the three on-disk layouts (basnet, wtalc, anet_json; described in
:mod:`case_fast.data.load`), each returning one :class:`VideoDataset` per role, with the checks
they share (class list, labels, feature-file headers, subsets, missing files)."""
from __future__ import annotations

import os
import pathlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .annotations import (DataError, VideoEntry, check_disjoint, load_npy, read_ambiguous,
                          read_class_list, read_database_json, read_video_list, select_subset)
from .video_dataset import VideoDataset
from .wtalc_annotations import read_wtalc_annotations

DEFAULT_CACHE_BYTES = 8 << 30   # cache all features in memory when the whole split fits in this
_MAX_LISTED = 8                 # missing files listed by name in one error message


def read_gt_json(path: pathlib.Path) -> Dict[str, VideoEntry]:
    """BaS-Net/ActivityNet-style JSON -> {video: VideoEntry(subset, duration, annotations [(label,
    start, end)])}, every field validated (:func:`annotations.read_database_json`)."""
    return read_database_json(path)


def _read_split(path: pathlib.Path) -> List[str]:
    return read_video_list(path, "split file")


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
    if not root.exists():
        raise DataError(f"data.root {root} does not exist")
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

ROLES = ("train", "test")


def _roles(roles: Sequence[str]) -> Tuple[str, ...]:
    roles = tuple(roles)
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be a non-empty subset of {ROLES}, got {roles}")
    return roles


def load_basnet(data_cfg, num_classes: int, cache_bytes: int = DEFAULT_CACHE_BYTES,
                roles: Sequence[str] = ROLES) -> List[VideoDataset]:
    """One dataset per role in ``roles``; only those roles' split files and features are read."""
    roles = _roles(roles)
    root = _root(data_cfg)
    gt_path = root / "gt.json"
    db = read_gt_json(gt_path)
    cl_path = root / "classlist.txt"
    if cl_path.exists():
        classes = _class_list(read_class_list(cl_path), num_classes, str(cl_path))
    else:
        classes = _class_list(sorted({a[0] for e in db.values() for a in e["annotations"]}),
                              num_classes, str(gt_path))
    cidx = {c: i for i, c in enumerate(classes)}
    amb_path = root / "Ambiguous_test.txt"
    ambiguous = read_ambiguous(amb_path) if amb_path.exists() else {}
    d = int(data_cfg.feature_dim)
    if d % 2:
        raise DataError(f"data.feature_dim = {d} must be even (RGB + flow halves)")
    half = d // 2
    subsets = {"train": data_cfg.train_subset, "test": data_cfg.test_subset}
    splits = {}
    for role in roles:
        split_path = root / f"split_{subsets[role]}.txt"
        vids = _read_split(split_path)
        for v in vids:
            if v not in db:
                raise DataError(f"split file {split_path} names video {v!r}, which is absent from {gt_path}")
        splits[role] = (split_path, vids)
    if len(splits) == 2:
        check_disjoint(splits["train"][1], splits["test"][1], splits["train"][0], splits["test"][0])
    out = []
    for role in roles:
        subset = subsets[role]
        split_path, vids = splits[role]
        name = f"thumos14-{role}" if subset in ("train", "test") else f"{root.name}-{subset}"
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
    return out


# ----------------------------------------------------------------------------------------------
# wtalc layout

def load_wtalc(data_cfg, num_classes: int, roles: Sequence[str] = ROLES) -> List[VideoDataset]:
    roles = _roles(roles)
    root = _root(data_cfg)
    prefix = str(data_cfg.dataset_name)
    ann_dir = root / f"{prefix}-Annotations"
    if not ann_dir.is_dir():
        raise DataError(f"missing annotation folder {ann_dir} (data.dataset_name = {prefix!r})")
    ann = read_wtalc_annotations(ann_dir)
    cl_path = ann_dir / "classlist.npy"
    classes = _class_list(ann.classes, num_classes, str(cl_path))
    cidx = {c: i for i, c in enumerate(classes)}
    n = len(ann.names)

    aliases = {"train": {"train": ["training", "validation"]}, "test": {"test": ["validation"]}}
    requested = {"train": str(data_cfg.train_subset), "test": str(data_cfg.test_subset)}
    subset_of = {r: _resolve_subset(requested[r], ann.subsets, aliases[r], str(ann_dir / "subset.npy"))
                 for r in ROLES}
    if subset_of["train"] == subset_of["test"] and len(roles) == 2:
        raise DataError(f"{ann_dir / 'subset.npy'}: data.train_subset and data.test_subset both select "
                        f"subset {subset_of['train']!r}: the training and test videos would be the same")

    feat_path = root / f"{prefix}-I3D-JOINTFeatures.npy"
    feats = load_npy(feat_path, "feature file")
    if feats.ndim == 0 or len(feats) != n:
        raise DataError(f"{feat_path} holds {len(feats) if feats.ndim else 0} videos but "
                        f"{ann_dir / 'videoname.npy'} names {n}")
    d = int(data_cfg.feature_dim)
    out = []
    for role in roles:
        subset = subset_of[role]
        rows = ann.rows(subset)
        name = f"{prefix}-{role}"
        vids, lens, label_sets, arrays = [], [], [], []
        gv, gl, gs = [], [], []
        for j in rows:
            v = ann.names[j]
            where = f"{ann_dir}: video {v!r}"
            lab_idx = [_check_label(l, cidx, where) for l in ann.seg_labels[j]]
            for (s, e), c in zip(ann.segments[j], lab_idx):
                gv.append(v); gl.append(c); gs.append((s, e))
            if ann.labels_all is not None:
                vl = [_check_label(x, cidx, where) for x in ann.labels_all[j]]
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
            raise DataError(f"{ann_dir / 'subset.npy'}: no video in subset {subset!r}")
        lens = np.asarray(lens, np.int64)
        ds = VideoDataset(name, classes, vids, _multi_hot(label_sets, len(classes)), lens, data_cfg.fps,
                          data_cfg.frames_per_snippet, d, lambda i, _a=arrays: _a[i],
                          sources=[f"{feat_path}[{j}]" for j in rows],
                          gt=(gv, gl, gs),
                          ambiguous={v: a for v, a in ann.ambiguous.items() if v in set(vids)}
                          if role == "test" else None, cache=True)
        ds.validate()       # all in memory already: check and convert now, keep only the float32 copies
        arrays[:] = [ds.features(i) for i in range(len(vids))]
        out.append(ds)
    return out


# ----------------------------------------------------------------------------------------------
# anet_json layout

def _feature_candidates(feat_dir: pathlib.Path, vid: str) -> List[pathlib.Path]:
    names = [vid, "v_" + vid]
    if vid.startswith("v_"):
        names.append(vid[2:])
    return [feat_dir / f"{n}.npy" for n in names]


def _user_path(p) -> pathlib.Path:
    return pathlib.Path(os.path.expanduser(str(p)))


def load_anet_json(data_cfg, num_classes: int, cache_bytes: int = DEFAULT_CACHE_BYTES,
                   roles: Sequence[str] = ROLES) -> List[VideoDataset]:
    roles = _roles(roles)
    root = _root(data_cfg, required=data_cfg.annotation_file is None or data_cfg.feature_dir is None)
    ann_path = _user_path(data_cfg.annotation_file) if data_cfg.annotation_file else root / "annotations.json"
    feat_dir = _user_path(data_cfg.feature_dir) if data_cfg.feature_dir else root / "features"
    db = read_gt_json(ann_path)
    if not feat_dir.is_dir():
        raise DataError(f"feature folder {feat_dir} is not a directory")
    classes = _class_list(sorted({a[0] for e in db.values() for a in e["annotations"]}),
                          num_classes, str(ann_path))
    cidx = {c: i for i, c in enumerate(classes)}
    present = {e["subset"] for e in db.values()}
    tr = _resolve_subset(str(data_cfg.train_subset), present, {"train": ["training"]}, str(ann_path))
    te = _resolve_subset(str(data_cfg.test_subset), present, {"test": ["validation"]}, str(ann_path))
    if tr == te and len(roles) == 2:
        raise DataError(f"{ann_path}: data.train_subset and data.test_subset both select subset {tr!r}: "
                        "the training and test videos would be the same")
    d = int(data_cfg.feature_dim)
    stem = ann_path.stem
    out = []
    for role in roles:
        subset = tr if role == "train" else te
        vids = select_subset(db, subset, ann_path)
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
    return out
