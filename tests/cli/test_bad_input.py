"""Every bad input refused: a table of bad inputs run through ``case_fast.cli.main.main`` (exit
status 2, one stderr line ``case-fast <cmd>: error: ...`` naming the culprit, no traceback, and the
workspace - a trained run, annotation files, results files - byte for byte unchanged: nothing
written, nothing lost), and the same through the real entry point."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, NamedTuple, Optional

import numpy as np
import pytest
import torch

from case_fast.cli.main import main
from case_fast.config.loading import load_config
from case_fast.config.schema import field_table
from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
from case_fast.files import DirBusyError, DirLock
from case_fast.training.trainer import train
from cli_workspace import (D, GT, RESULTS, TINY, WS, _basnet_test_only, _ckpt_with_config, _env, _quiet,
                           _res_pred, _truncate, _with, _wtalc_dir, cli_subprocess, snapshot)


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
