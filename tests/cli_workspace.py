"""Shared by the CLI and run-directory tests: a tiny configuration, a workspace of a trained run
with annotation and results files, and helpers that make bad inputs. Not a test module."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys
from typing import List

import numpy as np
import torch

from case_fast.data.synthetic_v1 import THUMOS14_CLASSES

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "data.synthetic_max_len=200", "train.batch_size=4",
        "train.num_steps=6", "train.eval_every=3", "train.progress=false"]
D = 16          # per-stream feature width of TINY


def _quiet(*_):
    pass


def snapshot(root: pathlib.Path) -> dict:
    """Every file and folder under root (hidden ones too): path -> sha256 (None for folders)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CASE_FAST_DEBUG", None)
    return env


def cli_subprocess(args, **kw):
    return subprocess.run([sys.executable, "-m", "case_fast"] + list(args), capture_output=True, text=True,
                          env=_env(), **kw)


GT = {"database": {
    "va": {"subset": "test", "duration": 30.0, "annotations": [{"segment": [1.0, 2.0], "label": "Run"}]},
    "vb": {"subset": "test", "duration": 20.0, "annotations": [{"segment": ["0.5", "1.5"], "label": "Jump"}]},
    "vc": {"subset": "train", "annotations": [{"segment": [3.0, 4.0], "label": "Run"}]}}}
RESULTS = {"version": "x", "results": {
    "va": [{"label": "Run", "score": 0.9, "segment": [1.0, 2.0]}],
    "vb": [{"label": "Jump", "score": 0.8, "segment": [0.5, 1.5]}]}, "external_data": {}}


class WS:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.run = root / "run"
        self.gt = root / "gt.json"
        self.res = root / "res.json"
        self.out = root / "new"            # a path that must stay absent

    def p(self, name) -> str:
        return str(self.root / name)

    def write(self, name, data) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data)
        else:
            path.write_text(json.dumps(data))
        return str(path)


def _with(d: dict, path: List, value):
    d = json.loads(json.dumps(d))
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return d


def _res_pred(**kw):
    p = {"label": "Run", "score": 0.9, "segment": [1.0, 2.0]}
    p.update(kw)
    return {"results": {"va": [p]}}


def _truncate(path: pathlib.Path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _ckpt_with_config(ws, **changes):
    ck = torch.load(ws.run / "best.pt", weights_only=True)
    for key, v in changes.items():
        sec, f = key.split("__")
        ck["config"][sec][f] = v
    path = ws.root / "edited.pt"
    torch.save(ck, path)
    return str(path)


def _wtalc_dir(ws, names=(b"va", b"vb"), corrupt=False):
    ann = ws.root / "wt" / "Tiny-Annotations"
    ann.mkdir(parents=True)
    obj = lambda xs: np.array(list(xs) + [None], dtype=object)[:-1]
    if corrupt:
        (ann / "videoname.npy").write_bytes(b"\x93NUMPY garbage")
    else:
        np.save(ann / "videoname.npy", np.array(list(names)))
    np.save(ann / "subset.npy", np.array([b"test"] * len(names)))
    np.save(ann / "segments.npy", obj([[[1.0, 2.0]] for _ in names]), allow_pickle=True)
    np.save(ann / "labels.npy", obj([[b"Run"] for _ in names]), allow_pickle=True)
    np.save(ann / "classlist.npy", np.array([b"Jump", b"Run"]))
    return str(ws.root / "wt")


def _basnet_test_only(root: pathlib.Path):
    """A BaS-Net layout with the 20 THUMOS14 classes whose training features are absent."""
    root.mkdir(parents=True, exist_ok=True)
    db = {"t a": {"subset": "test", "annotations": [{"segment": ["1.0", "5.0"], "label": "HighJump"}]},
          "t_b": {"subset": "test", "annotations": [{"segment": [2.0, 6.0], "label": "Diving"}]},
          "v_a": {"subset": "train", "annotations": [{"segment": [0.0, 3.0], "label": "Diving"}]}}
    (root / "gt.json").write_text(json.dumps({"database": db}))
    (root / "classlist.txt").write_text("\n".join(THUMOS14_CLASSES) + "\n")
    (root / "split_test.txt").write_text("t a\nt_b\n")
    (root / "split_train.txt").write_text("v_a\n")
    rng = np.random.default_rng(0)
    for v, t in (("t a", 30), ("t_b", 20)):
        for s in ("rgb", "flow"):
            d = root / "features" / "test" / s
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{v}.npy", rng.random((t, D), dtype=np.float32))
