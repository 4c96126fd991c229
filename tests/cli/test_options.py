"""Options that work as documented: ``eval --allow-unknown``, ``--split-file``, W-TALC ground
truth with a split file, ``detect --split`` and its overrides, ``1e-3``, names with spaces,
``info --fields``."""
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
