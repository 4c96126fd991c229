import os

# Triton kernels are exercised on the CPU through the interpreter; this must be set before any
# kernel is defined (i.e. before case_fast.kernels is imported anywhere).
os.environ.setdefault("TRITON_INTERPRET", "1")

import json
import pathlib
import types

import numpy as np
import pytest

from case_fast.config.schema import DataConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared (reference outputs, THUMOS14 annotations) is not beside the checkout")
    return SHARED


@pytest.fixture
def interrupt_at(monkeypatch):
    """``with interrupt_at(step): train(...)``: the run raises KeyboardInterrupt when it is about to
    draw the batch of ``step`` (as if killed between two steps); outside the block training is
    untouched."""
    import contextlib

    from case_fast.training.batches import RunStreams

    @contextlib.contextmanager
    def arm(step: int):
        real = RunStreams.batch_videos

        def batch_videos(self, s):
            if s == step:
                raise KeyboardInterrupt(f"interrupted at step {s} (test)")
            return real(self, s)
        with monkeypatch.context() as m:
            m.setattr(RunStreams, "batch_videos", batch_videos)
            yield
    return arm


# released parameter name -> ours (per stream)
_NAMES = {"cas_module_{s}.0": "{s}.cls_conv1", "cas_module_{s}.2": "{s}.cls_conv2",
          "base_module_{s}.0": "{s}.att_conv1", "att_module_{s}": "{s}.att_conv2"}


@pytest.fixture(scope="session")
def released_to_ours():
    """The released code's parameter name -> ours (``clu_head_rgb.prototypes.weight`` ->
    ``rgb.prototypes``, ...), for the reference tests of the released run."""
    def to_ours(name: str) -> str:
        for s in ("rgb", "flow"):
            if name == f"clu_head_{s}.prototypes.weight":
                return f"{s}.prototypes"
            for theirs, ours in _NAMES.items():
                theirs = theirs.format(s=s)
                if name.startswith(theirs + "."):
                    return ours.format(s=s) + name[len(theirs):]
        raise KeyError(name)
    return to_ours


# ------------------------------------------------------------- tiny datasets on disk, three layouts
D = 4           # per-stream width of the fixtures
FD = 2 * D


TRAIN = {"v_a": (6, [("Run", 0.0, 1.0)]), "v_b": (5, [("Jump", 0.5, 2.0), ("Run", 2.0, 3.0)]),
         "v_c": (9, [("Jump", 1.0, 1.5)])}


TEST = {"t_a": (7, [("Run", 0.1, 2.2)]), "t_b": (4, [("Jump", "0.3", "1.9")])}


def _feat(t, width, seed):
    return np.random.default_rng(seed).random((t, width), dtype=np.float32)


def make_basnet(root: pathlib.Path) -> DataConfig:
    db = {}
    for sub, vids in (("train", TRAIN), ("test", TEST)):
        (root / f"split_{sub}.txt").write_text("\n".join(vids) + "\n")
        for n, (v, (t, anns)) in enumerate(vids.items()):
            db[v] = {"subset": sub, "annotations": [{"segment": [str(s), str(e)], "label": l}
                                                     for l, s, e in anns]}
            for k, s in enumerate(("rgb", "flow")):
                d = root / "features" / sub / s
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{v}.npy", _feat(t, D, 10 * n + k))
    (root / "gt.json").write_text(json.dumps({"database": db}))
    (root / "Ambiguous_test.txt").write_text("t_a 3.0 3.5\n")
    return DataConfig(layout="basnet", root=str(root), feature_dim=FD, num_segments=8)


def make_wtalc(root: pathlib.Path, prefix="Tiny") -> DataConfig:
    ann = root / f"{prefix}-Annotations"
    ann.mkdir(parents=True)
    allv = [(v, b"validation", x) for v, x in TRAIN.items()] + [(v, b"test", x) for v, x in TEST.items()]
    obj = lambda xs: np.array(xs + [None], dtype=object)[:-1]     # 1-d object array of lists
    np.save(ann / "videoname.npy", np.array([v.encode() for v, _, _ in allv]))
    np.save(ann / "subset.npy", np.array([s for _, s, _ in allv]))
    np.save(ann / "segments.npy", obj([[[float(s), float(e)] for _, s, e in x[1]] for _, _, x in allv]))
    np.save(ann / "labels.npy", obj([[l.encode() for l, _, _ in x[1]] for _, _, x in allv]))
    np.save(ann / "labels_all.npy", obj([sorted({l.encode() for l, _, _ in x[1]}) for _, _, x in allv]))
    np.save(ann / "classlist.npy", np.array([b"Run", b"Jump"]))      # file order, not alphabetical
    np.save(ann / "duration.npy", np.ones((len(allv), 1)))
    (ann / "Ambiguous_test.txt").write_text("t_b 0.0 0.2\n")
    feats = obj([_feat(x[0], FD, n) for n, (_, _, x) in enumerate(allv)])
    np.save(root / f"{prefix}-I3D-JOINTFeatures.npy", feats, allow_pickle=True)
    return DataConfig(layout="wtalc", root=str(root), dataset_name=prefix, feature_dim=FD, num_segments=8)


def make_anet(root: pathlib.Path) -> DataConfig:
    db = {}
    (root / "features").mkdir(parents=True)
    for sub, vids in (("training", TRAIN), ("validation", TEST)):
        for n, (v, (t, anns)) in enumerate(vids.items()):
            db[v] = {"subset": sub, "duration": t * 0.64,
                     "annotations": [{"segment": [float(s), float(e)], "label": l} for l, s, e in anns]}
            name = f"v_{v}" if n % 2 else v          # both naming conventions
            np.save(root / "features" / f"{name}.npy", _feat(t, FD, n))
    db["x_test"] = {"subset": "testing", "annotations": []}          # unlabelled, never loaded
    (root / "annotations.json").write_text(json.dumps({"version": "1.3", "database": db}))
    return DataConfig(layout="anet_json", root=str(root), feature_dim=FD, num_segments=8)


@pytest.fixture
def layouts():
    """Builders of tiny datasets in the basnet, wtalc and anet_json layouts (``layouts.wtalc(root)``
    returns its DataConfig) and what they hold (TRAIN, TEST, the widths D and FD, ``feat``)."""
    return types.SimpleNamespace(D=D, FD=FD, TRAIN=TRAIN, TEST=TEST, feat=_feat, basnet=make_basnet,
                                 wtalc=make_wtalc, anet=make_anet)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A run of the tiny configuration (cli_workspace.TINY), trained once per test module."""
    from case_fast.config.loading import load_config
    from case_fast.training.trainer import train
    from cli_workspace import TINY, _quiet

    run = tmp_path_factory.mktemp("base") / "run"
    train(load_config("synthetic", TINY), str(run), log=_quiet)
    return run


@pytest.fixture
def ws(tmp_path, base_run):
    """A workspace: a copy of base_run, a ground truth, a results file and a split file."""
    import shutil

    from cli_workspace import GT, RESULTS, WS

    w = WS(tmp_path)
    shutil.copytree(base_run, w.run)
    w.write("gt.json", GT)
    w.write("res.json", RESULTS)
    w.write("split.txt", "va\n")
    return w
