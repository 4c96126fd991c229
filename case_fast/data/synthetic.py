"""Synthetic THUMOS14-shaped dataset (layout ``'synthetic'``, the default of ``case-fast train``).

What is real. The video list, labels and segment times are the real THUMOS14 ones (BaS-Net split:
200 training = THUMOS14 validation videos, 210 test videos; ``assets/thumos14/``). Each video's
length is the real one, T_v = floor(duration * fps / frames_per_snippet) = floor(duration * 25 / 16)
(durations from W-TALC's ``duration.npy``, embedded as ``durations.json``; a video without a duration
would get max annotation end + 10 s - none of the 410 needs it). Ground truth for evaluation is the
real 210-video test GT, and the ambiguous segments are the real ``Ambiguous_test.txt``.

What is synthetic: the features, rendered snippet by snippet from a latent description of a
THUMOS14 broadcast. The generator is versioned (``data.synthetic_version``, recorded in every run's
config.yaml and summary.json and in every video's source string); a version, once released, never
changes what it generates:

* version 2 (``synthetic_v2.py``, the default): shots of five types with per-video looks, a weak
  venue, actions where the class shows most, run-up / preparation context, replays; calibrated on
  the baseline row to THUMOS14's range (README, "The synthetic benchmark").
* version 1 (``synthetic_v1.py``): the first set; far harder (baseline 11 avg mAP), kept so that
  the tables made on it can be reproduced.

Determinism. The shared embeddings, gains and projections are drawn from ``synthetic_seed``; each
video's latent sequence from (``synthetic_seed``, crc32 of its name), and its channel noise from the
same plus the width - so a video's features do not depend on which other videos are loaded, and
the same seed always gives the same bytes (on one machine and numpy/BLAS build; another CPU's
float32 exp/log or BLAS kernels may differ in the last bit). Generation is lazy (first access) and
cached.

Sizes. ``synthetic_size='small'``: D = ``synthetic_dim`` per stream (default 128, so
``data.feature_dim`` = 256); ``'full'``: D = 1024 (feature_dim 2048, like real I3D). Real lengths
either way; ``synthetic_max_len > 0`` time-compresses longer videos to that many snippets and scales
their annotation times by the same factor (so a snippet stays 16/25 s of the *synthetic* video and
the returned ground truth is in those compressed seconds); ``synthetic_videos = n > 0`` keeps the
first n videos of each split file.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Tuple

import numpy as np

from . import synthetic_v1, synthetic_v2
from .annotations import DataError, read_ambiguous
from .video_dataset import VideoDataset
from .layouts import read_gt_json, _read_split
from .synthetic_v1 import THUMOS14_CLASSES

__all__ = ["ASSET_DIR", "SYNTHETIC_VERSION", "RENDERERS", "THUMOS14_CLASSES", "SyntheticRenderer",
           "load_synthetic", "thumos14_annotations", "snippet_labels", "assets_dir", "embedded_thumos14_test"]

# the version ``case-fast train`` generates by default; every version this release can generate
SYNTHETIC_VERSION = 2
RENDERERS = {1: synthetic_v1.Renderer, 2: synthetic_v2.Renderer}
SyntheticRenderer = RENDERERS[SYNTHETIC_VERSION]

ASSET_DIR = pathlib.Path(__file__).resolve().parent / "assets" / "thumos14"


def thumos14_annotations() -> dict:
    """The embedded real THUMOS14 annotations: {'db' (read_gt_json), 'train', 'test' (video lists),
    'durations' {video: s}, 'ambiguous' {video: (m, 2)}}."""
    db = read_gt_json(ASSET_DIR / "gt.json")
    with open(ASSET_DIR / "durations.json") as f:
        durations = {k: float(v) for k, v in json.load(f).items()}
    return dict(db=db, train=_read_split(ASSET_DIR / "split_train.txt"),
                test=_read_split(ASSET_DIR / "split_test.txt"), durations=durations,
                ambiguous=read_ambiguous(ASSET_DIR / "Ambiguous_test.txt"))


def assets_dir(name: str = "thumos14") -> str:
    """Path (str) of an embedded annotation folder, e.g. ``assets_dir('thumos14')``."""
    path = ASSET_DIR.parent / name
    if not path.is_dir():
        raise DataError(f"no embedded asset folder {name!r} in {ASSET_DIR.parent}")
    return str(path)


def embedded_thumos14_test(fps: float = 25.0, frames_per_snippet: int = 16):
    """The real 210 THUMOS14 test videos without features: (names, lengths T_v (int64 array),
    ground truth dict as ``VideoDataset.ground_truth()`` with the W-TALC ambiguous segments)."""
    ann = thumos14_annotations()
    cidx = {c: i for i, c in enumerate(THUMOS14_CLASSES)}
    names, lengths, gv, gl, gs = ann["test"], [], [], [], []
    for v in names:
        anns = ann["db"][v]["annotations"]
        dur = ann["durations"].get(v)
        if dur is None:
            dur = max([e for _, _, e in anns], default=0.0) + 10.0
        lengths.append(max(1, int(math.floor(dur * fps / frames_per_snippet))))
        for lab, s, e in anns:
            gv.append(v); gl.append(cidx[lab]); gs.append((s, e))
    gt = dict(video=np.asarray(gv, dtype=str), label=np.asarray(gl, np.int64),
              segment=np.asarray(gs, np.float64).reshape(-1, 2), videos=list(names),
              class_names=list(THUMOS14_CLASSES),
              ambiguous={v: a for v, a in ann["ambiguous"].items() if v in set(names)})
    return list(names), np.asarray(lengths, np.int64), gt


def snippet_labels(dataset: VideoDataset, i: int, min_cover: float = 0.5) -> np.ndarray:
    """(T_v,) int64 per-snippet class from the dataset's ground truth (-1 = background): a snippet is
    class c when instances of c cover at least ``min_cover`` of it (latest instance wins).
    Diagnostics only (the data a weakly-supervised model never sees)."""
    gt = dataset._gt_video, dataset._gt_label, dataset._gt_segment
    v, T = dataset.videos[i], int(dataset.num_snippets[i])
    snip = dataset.snippet_seconds
    out = np.full(T, -1, np.int64)
    ts = np.arange(T) * snip
    for c, (s, e) in zip(gt[1][gt[0] == v], gt[2][gt[0] == v]):
        cover = (np.minimum(ts + snip, e) - np.maximum(ts, s)) / snip
        out[cover >= min_cover] = c
    return out


def load_synthetic(data_cfg, num_classes: int) -> Tuple[VideoDataset, VideoDataset]:
    if int(num_classes) != len(THUMOS14_CLASSES):
        raise DataError(f"the synthetic THUMOS14 set has {len(THUMOS14_CLASSES)} classes but "
                        f"model.num_classes = {num_classes}")
    size = str(data_cfg.synthetic_size)
    if size == "small":
        dim = int(data_cfg.synthetic_dim)
    elif size == "full":
        dim = 1024
    else:
        raise DataError(f"data.synthetic_size must be 'small' or 'full', got {size!r}")
    version = int(data_cfg.synthetic_version)
    if version not in RENDERERS:
        raise DataError(f"data.synthetic_version = {version}: this release generates versions "
                        f"{', '.join(map(str, sorted(RENDERERS)))} of the synthetic set")
    if dim < 1 or int(data_cfg.feature_dim) != 2 * dim:
        raise DataError(f"synthetic set ({size}) has {dim} channels per stream, so data.feature_dim must "
                        f"be {2 * dim}, got {data_cfg.feature_dim}")
    fps, fpsn = float(data_cfg.fps), int(data_cfg.frames_per_snippet)
    snip = fpsn / fps
    ann = thumos14_annotations()
    db, durations, amb_all = ann["db"], ann["durations"], ann["ambiguous"]
    cidx = {c: i for i, c in enumerate(THUMOS14_CLASSES)}
    renderer = RENDERERS[version](int(data_cfg.synthetic_seed), dim)
    max_len, nvid = int(data_cfg.synthetic_max_len), int(data_cfg.synthetic_videos)
    out = []
    for role in ("train", "test"):
        vids = ann[role][:nvid] if nvid > 0 else ann[role]
        lens, label_sets, per_video, gv, gl, gs, amb = [], [], [], [], [], [], {}
        for v in vids:
            entry = db[v]
            anns = [(cidx[l], s, e) for l, s, e in entry["annotations"]]
            dur = durations.get(v)
            if dur is None:   # documented fallback, unused for the 410 real videos
                dur = max([e for _, _, e in anns], default=0.0) + 10.0
            T = max(1, int(math.floor(dur * fps / fpsn)))
            a = amb_all.get(v, np.zeros((0, 2))) if role == "test" else np.zeros((0, 2))
            if max_len > 0 and T > max_len:
                f = max_len / T
                T = max_len
                anns = [(c, s * f, e * f) for c, s, e in anns]
                a = a * f
            labs = sorted({c for c, _, _ in anns})
            lens.append(T); label_sets.append(labs); per_video.append((anns, labs, a))
            for c, s, e in anns:
                gv.append(v); gl.append(c); gs.append((s, e))
            if len(a):
                amb[v] = a
        labels = np.zeros((len(vids), len(THUMOS14_CLASSES)), np.float32)
        for i, labs in enumerate(label_sets):
            labels[i, labs] = 1.0

        def loader(i, _vids=vids, _pv=per_video, _lens=lens):
            anns, labs, a = _pv[i]
            return renderer.render(_vids[i], _lens[i], anns, labs, a, snip)

        tag = f"{size}{dim}" if size == "small" else "full"
        out.append(VideoDataset(
            f"synthetic-thumos14-{role}", THUMOS14_CLASSES, vids, labels, lens, fps, fpsn, 2 * dim,
            loader, sources=[f"synthetic:v{version}:{tag}:seed{data_cfg.synthetic_seed}:{v}" for v in vids],
            gt=(gv, gl, gs), ambiguous=amb if role == "test" else None, cache=True))
    return out[0], out[1]
