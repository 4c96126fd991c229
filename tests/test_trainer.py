"""End-to-end: training on a tiny synthetic set, exact resume, checkpoints, CLI commands."""
import json
import os

import numpy as np
import pytest
import torch

from case_fast.cli import main
from case_fast.config import load_config
from case_fast.trainer import load_checkpoint, train

TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "train.batch_size=4", "train.num_steps=6",
        "train.eval_every=3", "train.progress=false"]


def _cfg(*extra):
    return load_config("synthetic", TINY + list(extra))


def _state(run):
    ck = torch.load(os.path.join(run, "last.pt"), weights_only=False)
    return ck


def test_resume_after_interrupt_matches_uninterrupted(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    best_a = train(_cfg(), a, log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), b, log=lambda *_: None, _interrupt_at=4)   # killed after the step-3 checkpoint
    assert _state(b)["step"] == 3
    best_b = train(_cfg(), b, log=lambda *_: None)
    sa, sb = _state(a), _state(b)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert torch.equal(sa["q_c"], sb["q_c"])
    assert best_a == best_b
    strip = lambda hist: [{k: v for k, v in h.items() if k != "eval_seconds"} for h in hist]
    assert strip(sa["history"]) == strip(sb["history"])
    lines = [json.loads(x) for x in open(os.path.join(b, "metrics.jsonl")).read().splitlines()]
    assert strip(lines) == strip(sa["history"])
    for name in ("best.pt", "best_results.json", "config.yaml", "summary.json", "best_table.txt"):
        assert os.path.exists(os.path.join(b, name)), name
    # nothing temporary left behind
    assert not [f for f in os.listdir(b) if f.endswith(".tmp")]


def test_resume_refuses_other_config(tmp_path):
    run = str(tmp_path / "r")
    train(_cfg("train.num_steps=3"), run, log=lambda *_: None)
    with pytest.raises(RuntimeError, match="different configuration"):
        train(_cfg("train.seed=5"), run, log=lambda *_: None)
    # more steps on the same config continue the run
    train(_cfg("train.num_steps=6"), run, log=lambda *_: None)
    assert _state(run)["step"] == 6
    # --restart replaces the old run entirely (no stale checkpoint or metrics survive)
    train(_cfg("train.seed=5", "train.num_steps=3"), run, restart=True, log=lambda *_: None)
    assert _state(run)["step"] == 3
    steps = [json.loads(x)["step"] for x in open(os.path.join(run, "metrics.jsonl"))]
    assert max(steps) == 3
    assert json.load(open(os.path.join(run, "summary.json")))["best"]["step"] <= 3


def test_checkpoint_roundtrip_and_cli(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--out", run] + TINY) == 0
    out = capsys.readouterr().out
    assert "mAP@0.1" in out or "0.1" in out
    model, q_c, cfg = load_checkpoint(os.path.join(run, "best.pt"))
    assert q_c.shape == (16, 2) and cfg.model.stream_dim == 16
    res = str(tmp_path / "det.json")
    assert main(["detect", "--checkpoint", os.path.join(run, "best.pt"), "--out", res]) == 0
    data = json.load(open(res))
    assert set(data) == {"version", "results", "external_data"}
    # detections written by detect score the same as the trainer's own evaluation of best.pt
    best = json.load(open(os.path.join(run, "summary.json")))["best"]
    gt_args = []
    assert main(["eval", res, "--allow-unknown", "--json", str(tmp_path / "m.json")] + gt_args) == 0
    capsys.readouterr()
    assert json.load(open(os.path.join(run, "best_results.json")))["results"] == data["results"]
    assert main(["info", "--config", "thumos14"]) == 0
    info = capsys.readouterr().out
    assert "2,137,130" in info and "1.60 G" in info


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"video_test_9999999": [{"label": "HighJump", "score": 0.5,
                                                                       "segment": [1, 2]}]}}))
    assert main(["eval", str(bad)]) == 2
    assert "video_test_9999999" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "model.bogus=1"]) == 2
    assert "model.bogus" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "train.batch_size=abc"]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
    assert main(["detect", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o.json")]) == 2
    assert not os.path.exists(tmp_path / "o.json")
