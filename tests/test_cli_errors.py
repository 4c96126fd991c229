"""Issue 13: no run lost or mixed; every bad input refused before anything is written.

* a table of bad inputs run through ``case_fast.cli.main.main``: exit status 2, one stderr line
  ``case-fast <cmd>: error: ...`` naming the culprit, no traceback, and the workspace (a trained
  run, annotation files, results files) byte-for-byte unchanged - nothing written, nothing lost;
* the options that were broken (``eval --allow-unknown``, ``--split-file``, ``detect --split``,
  ``detect`` overrides, ``1e-3``, names with spaces, ``info --fields``);
* run directories: ``--restart`` keeps the old run until the new one has a checkpoint (also across
  a SIGKILL), SIGKILL at random points and resume end exactly like an uninterrupted run, two
  processes on one run directory, a full disk (tmpfs) and a read-only one (read-only mount).
"""
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, List, NamedTuple, Optional

import numpy as np
import pytest
import torch

from case_fast.cli.main import main
from case_fast.config.loading import load_config
from case_fast.config.schema import field_table
from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
from case_fast.training.trainer import train
from case_fast.files import DirBusyError, DirLock

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


# ---------------------------------------------------------------------------------------------
# workspace: a trained run + annotation and results files

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("base") / "run"
    train(load_config("synthetic", TINY), str(run), log=_quiet)
    return run


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


@pytest.fixture
def ws(tmp_path, base_run):
    w = WS(tmp_path)
    shutil.copytree(base_run, w.run)
    w.write("gt.json", GT)
    w.write("res.json", RESULTS)
    w.write("split.txt", "va\n")
    return w


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


class Case(NamedTuple):
    id: str
    argv: Callable            # ws -> argv list
    fragment: str             # in the error line
    prepare: Optional[Callable] = None   # ws -> None, before the snapshot


def C(id, argv, fragment, prepare=None):
    return Case(id, argv, fragment, prepare)


def _cfg_file(text):
    return lambda ws: ws.write("c.yaml", text)


def _train(*extra, out=None):
    return lambda ws: ["train", "--out", str(out(ws) if out else ws.out)] + TINY + list(extra)


def _train_cfg(*extra):
    return lambda ws: ["train", "--out", str(ws.out), "--config", ws.p("c.yaml")] + list(extra)


def _detect(*extra, ckpt=None):
    return lambda ws: ["detect", "--checkpoint", ckpt(ws) if ckpt else str(ws.run / "best.pt"),
                       "--out", ws.p("det.json")] + list(extra)


def _eval_res(data):
    return lambda ws: ws.write("bad_res.json", data)


def _eval(*extra, res="bad_res.json"):
    return lambda ws: ["eval", ws.p(res), "--gt", str(ws.gt)] + list(extra)


BAD = [
    # --- configuration values (range, type, syntax): refused before the run directory exists
    C("eval_every=0", _train("train.eval_every=0"), "train.eval_every"),
    C("eval_every=-1", _train("train.eval_every=-1"), "train.eval_every"),
    C("temperature=0", _train("model.temperature=0"), "model.temperature"),
    C("k_divisor=0", _train("train.k_divisor=0"), "train.k_divisor"),
    C("fps=0", _train("data.fps=0"), "data.fps"),
    C("num_clusters=0", _train("model.num_clusters=0"), "model.num_clusters"),
    C("num_steps=-5", _train("train.num_steps=-5"), "train.num_steps"),
    C("lr=0", _train("train.lr=0"), "train.lr"),
    C("lr=nan", _train("train.lr=nan"), "train.lr"),
    C("lr=-inf", _train("train.lr=-.inf"), "train.lr"),
    C("act_thresholds=[]", _train("infer.act_thresholds=[]"), "infer.act_thresholds"),
    C("act_thresholds>1", _train("infer.act_thresholds=[0.5, 1.5]"), "infer.act_thresholds[1]"),
    C("tiou=0", _train("infer.tiou=[0, 0.5]"), "infer.tiou[0]"),
    C("epsilon=0", _train("train.sinkhorn_epsilon=0"), "train.sinkhorn_epsilon"),
    C("gce_q=2", _train("train.gce_q=2"), "train.gce_q"),
    C("class_threshold=-1", _train("infer.class_threshold=-1"), "infer.class_threshold"),
    C("seed=-1", _train("train.seed=-1"), "train.seed"),
    C("batch_size=abc", _train("train.batch_size=abc"), "train.batch_size"),
    C("num_steps=1.5", _train("train.num_steps=1.5"), "train.num_steps"),
    C("use_scc=maybe", _train("train.use_scc=maybe"), "train.use_scc"),
    C("layout=nope", _train("data.layout=nope"), "data.layout"),
    C("device=gpu", _train("train.device=gpu"), "train.device"),
    C("unknown key", _train("model.bogus=1"), "model.bogus"),
    C("unknown section", _train("bogus.x=1"), "bogus.x"),
    C("override without =", _train("train.lr"), "train.lr"),
    C("unparsable value", _train("infer.tiou=[0.1,"), "infer.tiou"),
    C("feature_dim mismatch", _train("data.feature_dim=30"), "data.feature_dim"),
    C("yaml syntax error", _train_cfg(), "c.yaml, line 3", _cfg_file("train:\n  lr: [1\nmodel: {}\n")),
    C("empty config", _train_cfg(), "empty", _cfg_file("")),
    C("config is a list", _train_cfg(), "mapping", _cfg_file("- 1\n- 2\n")),
    C("config unknown section", _train_cfg(), "'trian'", _cfg_file("trian:\n  lr: 0.1\n")),
    C("config section not a mapping", _train_cfg(), "'train'", _cfg_file("train: 5\n")),
    C("config wrong type", _train_cfg(), "train.num_steps", _cfg_file("train:\n  num_steps: many\n")),
    C("config negative", _train_cfg(), "train.batch_size", _cfg_file("train:\n  batch_size: -4\n")),
    C("config missing", lambda ws: ["train", "--out", str(ws.out), "--config", ws.p("nope.yaml")], "nope.yaml"),
    C("config is a folder", lambda ws: ["train", "--out", str(ws.out), "--config", str(ws.run)], "directory"),
    C("info bad config", lambda ws: ["info", "model.hidden_dim=0"], "model.hidden_dim"),
    # --- data problems found before anything is written
    C("batch larger than the set", _train("train.batch_size=50"), "train.batch_size"),
    C("layout without root", _train("data.layout=basnet"), "data.root"),
    C("root missing", _train("data.layout=basnet", "data.root=/nonexistent/x"), "/nonexistent/x"),
    C("video in both splits", lambda ws: _train("data.layout=basnet", f"data.root={ws.root / 'thumos'}")(ws),
      "both the training split",
      lambda ws: (_basnet_test_only(ws.root / "thumos"), ws.write("thumos/split_train.txt", "v_a\nt_b\n"))),
    C("training gt.json names a video twice", lambda ws: _train("data.layout=basnet",
                                                                f"data.root={ws.root / 'thumos'}")(ws), "'t_b'",
      lambda ws: (_basnet_test_only(ws.root / "thumos"), ws.write(
          "thumos/gt.json", (ws.root / "thumos" / "gt.json").read_text()[:-2]
          + ', "t_b": {"subset": "test", "annotations": []}}}'))),
    C("training split file with a name twice", lambda ws: _train("data.layout=basnet",
                                                                 f"data.root={ws.root / 'thumos'}")(ws), "'t a'",
      lambda ws: (_basnet_test_only(ws.root / "thumos"), ws.write("thumos/split_test.txt", "t a\nt_b\nt a\n"))),
    # --- run directory: a file in the way, the previous run kept intact
    C("--out is a file", _train(out=lambda ws: ws.run / "best_table.txt"), "best_table.txt"),
    C("--out under a file", _train(out=lambda ws: ws.run / "best_table.txt" / "sub"), "best_table.txt"),
    C("run file is a folder", _train(out=lambda ws: ws.run), "best_table.txt",
      lambda ws: ((ws.run / "best_table.txt").unlink(), (ws.run / "best_table.txt").mkdir())),
    C("resume other config", _train("train.seed=5", out=lambda ws: ws.run), "different configuration"),
    C("resume beyond num_steps", _train("train.num_steps=3", out=lambda ws: ws.run), "train.num_steps"),
    C("--restart, override failing late", lambda ws: ["train", "--restart", "--out", str(ws.run)] + TINY
      + ["train.eval_every=0"], "train.eval_every"),
    C("--restart, bad data", lambda ws: ["train", "--restart", "--out", str(ws.run)] + TINY
      + ["train.batch_size=50"], "train.batch_size"),
    C("truncated last.pt", _train(out=lambda ws: ws.run), "--restart",
      lambda ws: _truncate(ws.run / "last.pt")),
    C("empty last.pt", _train(out=lambda ws: ws.run), "last.pt", lambda ws: ws.write("run/last.pt", b"")),
    C("foreign last.pt", _train(out=lambda ws: ws.run), "not a case-fast training checkpoint",
      lambda ws: torch.save({"weights": torch.zeros(2)}, ws.run / "last.pt")),
    # --- detect
    C("detect: no checkpoint", _detect(ckpt=lambda ws: ws.p("nope.pt")), "nope.pt"),
    C("detect: checkpoint is a folder", _detect(ckpt=lambda ws: str(ws.run)), "directory"),
    C("detect: truncated checkpoint", _detect(), "best.pt", lambda ws: _truncate(ws.run / "best.pt")),
    C("detect: empty checkpoint", _detect(ckpt=lambda ws: ws.write("e.pt", b"")), "e.pt"),
    C("detect: JSON as checkpoint", _detect(ckpt=lambda ws: str(ws.gt)), "gt.json"),
    C("detect: foreign torch file", _detect(ckpt=lambda ws: ws.p("f.pt")), "missing model/config",
      lambda ws: torch.save([1, 2, 3], ws.root / "f.pt")),
    C("detect: weights from another config", _detect(ckpt=lambda ws: _ckpt_with_config(ws, model__hidden_dim=8)),
      "do not fit"),
    C("detect: invalid config inside", _detect(ckpt=lambda ws: _ckpt_with_config(ws, train__lr=-1.0)),
      "train.lr"),
    C("detect: model override contradicts", _detect("model.hidden_dim=64"), "model.hidden_dim"),
    C("detect: bad infer override", _detect("infer.nms=bogus"), "infer.nms"),
    C("detect: unknown override", _detect("infer.bogus=1"), "infer.bogus"),
    C("detect: --out is a folder", lambda ws: ["detect", "--checkpoint", str(ws.run / "best.pt"),
                                                "--out", str(ws.run)], "directory"),
    C("detect: --out is the checkpoint", lambda ws: ["detect", "--checkpoint", str(ws.run / "best.pt"),
                                                     "--out", str(ws.run / "best.pt")], "checkpoint"),
    C("detect: empty --out", lambda ws: ["detect", "--checkpoint", str(ws.run / "best.pt"), "--out", ""],
      "--out"),
    C("detect: unknown device", _detect("--device", "bogus"), "bogus"),
    # --- eval: results files
    C("results missing", _eval(res="nope.json"), "nope.json"),
    C("results is a folder", lambda ws: ["eval", str(ws.run), "--gt", str(ws.gt)], "directory"),
    C("results empty", _eval(), "empty", _eval_res(b"")),
    C("results not JSON", _eval(), "bad_res.json", _eval_res("{'results': 1}")),
    C("results not UTF-8", _eval(), "UTF-8", _eval_res(b'{"results": {"\xff": []}}')),
    C("results a list", _eval(), "JSON object", _eval_res([1, 2])),
    C("results without 'results'", _eval(), "'results'", _eval_res({"version": 1})),
    C("results 'results' a list", _eval(), "'results'", _eval_res({"results": []})),
    C("results no video", _eval(), "no video", _eval_res({"results": {}})),
    C("results video twice", _eval(), "'va'", _eval_res(
        '{"results": {"va": [], "va": [{"label": "Run", "score": 1, "segment": [1, 2]}]}}')),
    C("results NaN score", _eval(), "NaN", _eval_res('{"results": {"va": [{"label": "Run", "score": NaN, '
                                                     '"segment": [1, 2]}]}}')),
    C("results Infinity segment", _eval(), "Infinity", _eval_res(
        '{"results": {"va": [{"label": "Run", "score": 1, "segment": [1, Infinity]}]}}')),
    C("results huge int score", _eval(), "score", _eval_res(
        '{"results": {"va": [{"label": "Run", "score": 1' + "0" * 400 + ', "segment": [1, 2]}]}}')),
    C("results huge int segment", _eval(), "segment", _eval_res(
        '{"results": {"va": [{"label": "Run", "score": 1, "segment": [1, 1' + "0" * 400 + ']}]}}')),
    C("results string score", _eval(), "score", _eval_res(_res_pred(score="0.9"))),
    C("results bool score", _eval(), "score", _eval_res(_res_pred(score=True))),
    C("results end before start", _eval(), "ends before", _eval_res(_res_pred(segment=[2.0, 1.0]))),
    C("results negative start", _eval(), "before 0", _eval_res(_res_pred(segment=[-1.0, 1.0]))),
    C("results 3-number segment", _eval(), "segment", _eval_res(_res_pred(segment=[0, 1, 2]))),
    C("results unknown label", _eval(), "'Swim'", _eval_res(_res_pred(label="Swim"))),
    C("results prediction not object", _eval(), "prediction 0", _eval_res({"results": {"va": [5]}})),
    C("results predictions not list", _eval(), "'va'", _eval_res({"results": {"va": {"a": 1}}})),
    C("results unknown video", _eval(), "'vz'", _eval_res({"results": {"vz": []}})),
    # --- eval: ground truth and options
    C("gt missing", lambda ws: ["eval", str(ws.res), "--gt", ws.p("nope.json")], "nope.json"),
    C("gt end < start", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "ends before",
      lambda ws: ws.write("g.json", _with(GT, ["database", "va", "annotations", 0, "segment"], [3, 2]))),
    C("gt negative start", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "before 0",
      lambda ws: ws.write("g.json", _with(GT, ["database", "va", "annotations", 0, "segment"], [-3, 2]))),
    C("gt non-numeric segment", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "'va'",
      lambda ws: ws.write("g.json", _with(GT, ["database", "va", "annotations", 0, "segment"], ["a", 2]))),
    C("gt video twice", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "'va'",
      lambda ws: ws.write("g.json", '{"database": {"va": {"subset": "test", "annotations": []}, '
                                    '"va": {"subset": "test", "annotations": []}}}')),
    C("gt a list", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "g.json",
      lambda ws: ws.write("g.json", [1])),
    C("gt database a list", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "'database'",
      lambda ws: ws.write("g.json", {"database": []})),
    C("gt annotations not a list", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "'va'",
      lambda ws: ws.write("g.json", _with(GT, ["database", "va", "annotations"], {"a": 1}))),
    C("gt label not a string", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "'va'",
      lambda ws: ws.write("g.json", _with(GT, ["database", "va", "annotations", 0, "label"], 3))),
    C("gt duration NaN", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "NaN",
      lambda ws: ws.write("g.json", json.dumps(GT).replace("30.0", "NaN"))),
    C("gt empty", lambda ws: ["eval", str(ws.res), "--gt", ws.p("g.json")], "empty",
      lambda ws: ws.write("g.json", "")),
    C("split file names unknown video", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--split-file",
                                                    ws.p("s.txt")], "'vq'",
      lambda ws: ws.write("s.txt", "va\nvq\n")),
    C("split file empty", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--split-file", ws.p("s.txt")],
      "empty", lambda ws: ws.write("s.txt", "\n\n")),
    C("split file names a video twice", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--split-file",
                                                    ws.p("s.txt")], "'va'", lambda ws: ws.write("s.txt", "va\nva\n")),
    C("split file and subset", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--split-file",
                                           ws.p("split.txt"), "--subset", "test"], "--split-file"),
    C("subset absent", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--subset", "nosuch"], "nosuch"),
    C("tiou not numbers", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--tiou", "a,b"], "--tiou"),
    C("tiou out of range", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--tiou", "0.5,1.5"], "--tiou"),
    C("tiou nan", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--tiou", "nan"], "--tiou"),
    C("--ambiguous without segments", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--ambiguous"],
      "--ambiguous-file"),
    C("ambiguous file malformed", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--ambiguous",
                                              "--ambiguous-file", ws.p("amb.txt")], "amb.txt:1",
      lambda ws: ws.write("amb.txt", "va 2.0\n")),
    C("--json is a folder", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--json", str(ws.run)],
      "--json"),
    C("--json is the results file", lambda ws: ["eval", str(ws.res), "--gt", str(ws.gt), "--json", str(ws.res)],
      "results file"),
    C("wtalc212 without --gt", lambda ws: ["eval", str(ws.res), "--protocol", "wtalc212"], "--gt"),
    C("wtalc folder without annotations", lambda ws: ["eval", str(ws.res), "--gt", str(ws.run)], "videoname.npy"),
    C("wtalc corrupt videoname.npy", lambda ws: ["eval", str(ws.res), "--gt", _wtalc_dir(ws, corrupt=True),
                                                 "--prefix", "Tiny"], "videoname.npy"),
    C("wtalc video twice", lambda ws: ["eval", str(ws.res), "--gt", _wtalc_dir(ws, names=(b"va", b"va")),
                                       "--prefix", "Tiny"], "'va'"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_refused(case, ws, capsys):
    if case.prepare is not None:
        case.prepare(ws)
    argv = case.argv(ws)
    before = snapshot(ws.root)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"case-fast {argv[0]}: error: "), err
    assert case.fragment in lines[0], err
    assert "Traceback" not in err
    assert snapshot(ws.root) == before        # nothing written, nothing lost


def test_entry_point_reports_without_traceback(ws):
    """The real entry point (``python -m case_fast``): exit 2, one line, no traceback."""
    _truncate(ws.run / "best.pt")
    ws.write("bad_res.json", '{"results": {"va": [{"label": "Run", "score": NaN, "segment": [1, 2]}]}}')
    for args, fragment in [(["train", "--out", str(ws.out), "train.eval_every=0"], "train.eval_every"),
                           (["detect", "--checkpoint", str(ws.run / "best.pt"), "--out", ws.p("d.json")],
                            "best.pt"),
                           (["eval", ws.p("bad_res.json"), "--gt", str(ws.gt)], "NaN")]:
        before = snapshot(ws.root)
        p = cli_subprocess(args, timeout=120)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert fragment in p.stderr
        assert snapshot(ws.root) == before


# ---------------------------------------------------------------------------------------------
# options that work

def test_scientific_notation_and_config_types(tmp_path):
    assert load_config("synthetic", ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)
    assert load_config("synthetic", ["train.lr=5E-4", "infer.oic_lambda=1e-1"]).infer.oic_lambda == 0.1
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  lr: 1e-3\n  num_steps: 1e3\ninfer:\n  act_thresholds: [1e-1, 0.5]\n")
    cfg = load_config(str(cfg_file))
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.num_steps == 1000
    assert cfg.infer.act_thresholds == [0.1, 0.5]
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.train.num_steps, int)


def test_info_fields_documents_every_field(capsys):
    assert main(["info", "--fields"]) == 0   # the values of the default config, synthetic
    out = capsys.readouterr().out
    rows = field_table(load_config("synthetic"))
    for key, tp, default, doc in rows:
        line = next((ln for ln in out.splitlines() if ln.split() and ln.split()[0] == key), None)
        assert line is not None, key
        assert json.dumps(default) in line, key
        assert doc and doc in line, key         # every field carries its meaning (config.schema)


def test_allow_unknown_drops_with_a_note(ws, capsys):
    res = json.loads(json.dumps(RESULTS))
    res["results"]["vz"] = [{"label": "Run", "score": 0.5, "segment": [0.0, 1.0]}]
    ws.write("res2.json", res)
    assert main(["eval", ws.p("res2.json"), "--gt", str(ws.gt)]) == 2
    assert "'vz'" in capsys.readouterr().err
    assert main(["eval", ws.p("res2.json"), "--gt", str(ws.gt), "--allow-unknown"]) == 0
    out, err = capsys.readouterr()
    assert "dropped 1 prediction(s) on 1 video(s)" in err and "vz" in err
    assert "2 predictions, 2 videos" in out and "100.0" in out


def test_split_file_is_honoured_whatever_the_entries_carry(ws, capsys):
    # the entries carry 'duration' (ActivityNet-style): the split file still decides the videos
    assert main(["eval", str(ws.res), "--gt", str(ws.gt), "--allow-unknown", "--split-file",
                 ws.p("split.txt")]) == 0
    out, err = capsys.readouterr()
    assert "1 predictions, 1 videos" in out and "'vb'" not in out
    assert "vb" in err                        # vb is not in the split: dropped with a note
    # a split file listing a video of another subset: it is evaluated all the same
    ws.write("s2.txt", "vc\n")
    ws.write("r3.json", {"results": {"vc": [{"label": "Run", "score": 1.0, "segment": [3.0, 4.0]}]}})
    assert main(["eval", ws.p("r3.json"), "--gt", str(ws.gt), "--split-file", ws.p("s2.txt"),
                 "--json", ws.p("m.json")]) == 0
    m = json.loads((ws.root / "m.json").read_text())
    assert m["ap"][0][m["class_names"].index("Run")] == 1.0 and m["ap"][0][m["class_names"].index("Jump")] == 0
    # without a split file: the 'test' subset
    assert main(["eval", str(ws.res), "--gt", str(ws.gt)]) == 0
    assert "2 predictions, 2 videos" in capsys.readouterr().out


def test_wtalc_ground_truth_with_split_file_and_ambiguous_segments(ws, capsys):
    wt = _wtalc_dir(ws)
    ws.write("s.txt", "vb\n")
    assert main(["eval", str(ws.res), "--gt", wt, "--prefix", "Tiny", "--split-file", ws.p("s.txt"),
                 "--allow-unknown"]) == 0
    assert "1 predictions, 1 videos, 2 classes" in capsys.readouterr().out
    assert main(["eval", str(ws.res), "--gt", wt, "--prefix", "Tiny", "--protocol", "wtalc"]) == 2
    assert "--ambiguous-file" in capsys.readouterr().err
    # CO2-Net (wtalc212 names it) evaluates unfiltered without the file, and says so
    assert main(["eval", str(ws.res), "--gt", wt, "--prefix", "Tiny", "--protocol", "wtalc212"]) == 0
    out = capsys.readouterr()
    assert "evaluates unfiltered" in out.err and "protocol co2net" in out.out
    assert main(["eval", str(ws.res), "--gt", wt, "--prefix", "Tiny", "--json", ws.p("m0.json")]) == 0
    assert json.loads((ws.root / "m0.json").read_text())["map"][0] == pytest.approx(0.25)
    ws.write("wt/Ambiguous_test.txt", "va 0.0 5.0\n")          # beside the annotation folder
    assert main(["eval", str(ws.res), "--gt", wt, "--prefix", "Tiny", "--protocol", "wtalc212",
                 "--json", ws.p("m1.json")]) == 0
    assert json.loads((ws.root / "m1.json").read_text())["map"][0] == 0.0   # va's prediction dropped


def test_names_with_spaces_read_alike_by_training_and_eval(tmp_path):
    from case_fast.data import annotations as A
    from case_fast.evaluation.ground_truth import ground_truth_from_gt_json

    (tmp_path / "split.txt").write_text("my video\n  other one \n")
    (tmp_path / "amb.txt").write_text("my video 1.0 2.5\n")
    db = {"database": {"my video": {"subset": "test", "annotations": [{"segment": [0, 1], "label": "Run"}]},
                       "other one": {"subset": "test", "annotations": []}}}
    (tmp_path / "gt.json").write_text(json.dumps(db))
    assert A.read_video_list(tmp_path / "split.txt") == ["my video", "other one"]
    assert list(A.read_ambiguous(tmp_path / "amb.txt")) == ["my video"]
    gt = ground_truth_from_gt_json(tmp_path / "gt.json", tmp_path / "split.txt",
                                   ambiguous_file=tmp_path / "amb.txt")
    assert gt.videos == ["my video", "other one"] and list(gt.ambiguous) == ["my video"]


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


def test_detect_reads_only_its_split_and_applies_infer_overrides(ws, capsys):
    data = ws.root / "thumos"
    data.mkdir()
    _basnet_test_only(data)
    best = str(ws.run / "best.pt")
    det = ws.p("det.json")
    over = ["data.layout=basnet", f"data.root={data}"]
    assert main(["detect", "--checkpoint", best, "--out", det, "--split", "test"] + over) == 0
    res = json.loads(pathlib.Path(det).read_text())["results"]
    assert set(res) == {"t a", "t_b"} and max(len(v) for v in res.values()) > 1
    # infer.* overrides apply, model.* overrides that agree with the checkpoint are accepted
    assert main(["detect", "--checkpoint", best, "--out", det] + over
                + ["infer.max_per_video=1", "model.hidden_dim=32"]) == 0
    res = json.loads(pathlib.Path(det).read_text())["results"]
    assert all(len(v) == 1 for v in res.values())
    # the detections score against the same files (a name with a space read alike)
    assert main(["eval", det, "--gt", str(data / "gt.json"), "--split-file", str(data / "split_test.txt")]) == 0
    assert "2 videos, 20 classes" in capsys.readouterr().out
    # the training split has no features: only --split train needs them
    assert main(["detect", "--checkpoint", best, "--out", ws.p("det2.json"), "--split", "train"] + over) == 2
    assert "missing feature file" in capsys.readouterr().err and not os.path.exists(ws.p("det2.json"))


# ---------------------------------------------------------------------------------------------
# run directories

def _model_state(run):
    return torch.load(os.path.join(run, "last.pt"), weights_only=True)


def _strip(hist):
    return [{k: v for k, v in h.items() if k != "eval_seconds"} for h in hist]


def test_restart_keeps_the_old_run_until_the_new_one_has_a_checkpoint(ws, interrupt_at):
    run = str(ws.run)
    before = snapshot(ws.run)
    with pytest.raises(KeyboardInterrupt), interrupt_at(1):   # a restarted run that stops before its first checkpoint
        train(load_config("synthetic", TINY + ["train.seed=5"]), run, restart=True, log=_quiet)
    assert snapshot(ws.run) == before
    # a restart over a truncated last.pt starts over; the old files go once the new one checkpoints
    _truncate(ws.run / "last.pt")
    train(load_config("synthetic", TINY + ["train.seed=5"]), run, restart=True, log=_quiet)
    assert _model_state(run)["config"]["train"]["seed"] == 5
    assert not any(n.startswith(".previous-run") for n in os.listdir(run))
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_fresh_run_directory_is_removed_when_the_run_fails_before_a_checkpoint(tmp_path, interrupt_at):
    run = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt), interrupt_at(1):
        train(load_config("synthetic", TINY), str(run), log=_quiet)
    assert not run.exists()


def _start_training(run, extra, restart=False, **kw):
    return subprocess.Popen([sys.executable, "-m", "case_fast", "train", "--out", str(run)]
                            + (["--restart"] if restart else []) + TINY + list(extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), **kw)


def _wait_for(cond, proc, timeout=60.0):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            return False
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)
    return True


def test_sigkill_during_restart_then_resume_restores_the_old_run(ws):
    run = ws.run
    old = _model_state(run)
    before = snapshot(run)
    p = _start_training(run, ["train.seed=7", "train.num_steps=3000", "train.eval_every=3000"], restart=True)
    try:
        moved = _wait_for(lambda: (run / ".previous-run").is_dir(), p)
        assert moved, p.stderr.read() if p.stderr else ""
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not (run / "last.pt").exists()       # killed before the new run's first checkpoint
    logs = []
    train(load_config("synthetic", TINY), str(run), log=logs.append)   # the old run, complete: resumes at its end
    assert any("restored the previous run" in m for m in logs)
    new = _model_state(run)
    assert new["step"] == old["step"] and all(torch.equal(new["model"][k], old["model"][k]) for k in old["model"])
    after = snapshot(run)
    volatile = ("summary.json", "config.yaml", ".lock", "train.log")   # train.log: the resume appended to it
    assert {k: v for k, v in after.items() if k not in volatile} == \
        {k: v for k, v in before.items() if k not in volatile}
    assert "restored the previous run" in (run / "train.log").read_text()


def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    extra = ["train.num_steps=12", "train.eval_every=2"]
    ref = tmp_path / "ref"
    train(load_config("synthetic", TINY + extra), str(ref), log=_quiet)
    run = tmp_path / "killed"
    rng = np.random.default_rng(13)
    kills = 0
    for _ in range(3):
        p = _start_training(run, extra)
        started = _wait_for(lambda: (run / ".lock").exists(), p)
        if started:
            time.sleep(float(rng.uniform(0.0, 1.5)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += p.returncode == -signal.SIGKILL
        if (run / "last.pt").exists():          # whatever the moment, the checkpoint is whole
            assert _model_state(run)["step"] % 2 == 0
    assert kills >= 1
    train(load_config("synthetic", TINY + extra), str(run), log=_quiet)
    a, b = _model_state(ref), _model_state(run)
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["q_c"], b["q_c"]) and a["best"] == b["best"]
    assert _strip(a["history"]) == _strip(b["history"])
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_two_processes_on_one_run_directory(tmp_path, capsys):
    run = tmp_path / "shared"
    p = _start_training(run, ["train.num_steps=100000", "train.eval_every=100000"])
    try:
        # the holder takes the lock, then writes its pid: wait for both
        assert _wait_for(lambda: DirLock.holder(str(run)) not in (None, "?"), p), p.stderr.read()
        before = snapshot(run)
        assert main(["train", "--out", str(run)] + TINY) == 2
        err = capsys.readouterr().err
        assert f"pid {p.pid}" in err and "in use by another case-fast process" in err
        assert main(["train", "--restart", "--out", str(run)] + TINY) == 2
        assert "in use" in capsys.readouterr().err
        with pytest.raises(DirBusyError):          # the lock itself, past the early check
            DirLock(str(run)).acquire(retry_seconds=0.1)
        assert snapshot(run) == before
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the killed holder's lock file stays, but the kernel released the lock: the next run proceeds
    assert (run / ".lock").exists() and DirLock.holder(str(run)) is None
    assert main(["train", "--out", str(run), "--restart"] + TINY) == 0
    assert _model_state(run)["step"] == 6


# ---------------------------------------------------------------------------------------------
# full and read-only disks (need mount: skipped where the machine does not allow it)

@pytest.fixture
def mount_point(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = []

    def do_mount(size: str):
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield do_mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_full_disk_keeps_the_last_checkpoint(mount_point, base_run, capsys):
    sizes = {n: os.path.getsize(base_run / n) for n in os.listdir(base_run)}
    # room for one set of run files and a new best.pt, not for a second last.pt beside the first
    room = sum(sizes.values()) + sizes["best.pt"] + 16 * 4096
    mnt = mount_point(str(room))
    run = mnt / "run"
    rc = main(["train", "--out", str(run)] + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err
    assert len([x for x in err.strip().splitlines() if not x.startswith("warning:")]) == 1
    assert "intact" in err and "resume" in err
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
    ck = _model_state(run)                     # the last good checkpoint loads
    assert ck["step"] == 3
    # with room again, the same command resumes and ends like the uninterrupted run
    subprocess.run(["mount", "-o", f"remount,size={room * 4}", str(mnt)], check=True)
    assert main(["train", "--out", str(run)] + TINY) == 0
    a, b = _model_state(base_run), _model_state(run)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_read_only_disk_is_refused_before_anything_is_done(mount_point, ws, capsys):
    mnt = mount_point("1m")
    shutil.copytree(ws.run, mnt / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    before = snapshot(mnt)
    for argv, fragment in [
        (["train", "--out", str(mnt / "new")] + TINY, "read-only"),
        (["train", "--out", str(mnt / "run")] + TINY + ["train.num_steps=9"], "read-only"),
        (["detect", "--checkpoint", str(mnt / "run" / "best.pt"), "--out", str(mnt / "d.json")], "read-only"),
        (["eval", str(ws.res), "--gt", str(ws.gt), "--json", str(mnt / "m.json")], "read-only"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err and str(mnt) in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(mnt) == before
