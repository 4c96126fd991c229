"""TensorBoard event files of a run: readable by TensorBoard's own event reader and holding the
numbers of metrics.jsonl (the source of truth); a resumed run's files hold each step once; without
the tensorboard package one line says so and training goes on."""
import builtins
import json
import os

import pytest

from case_fast.config.loading import load_config
from case_fast.training.trainer import train

TINY = ["train.num_steps=4", "train.eval_every=2", "data.synthetic_videos=20", "data.synthetic_max_len=200",
        "data.num_segments=64", "train.progress=false", "train.batch_size=4", "train.val_fraction=0.15"]


def _events(run):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={ea_mod.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run):
    """tag -> [(step, value)] from metrics.jsonl, as the trainer names them."""
    out = {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        h = json.loads(line)
        step = h["step"]
        for split in ("eval", "val"):
            if split in h:
                e = h[split]
                prefix = "test" if split == "eval" else "val"
                vals = {"avg": e["avg"], **{k: e[k] for k in ("avg_0.1:0.5", "avg_0.3:0.7") if k in e}}
                vals.update({f"mAP@{t:g}": m for t, m in zip(e["tiou"], e["map"])})
                for k, v in vals.items():
                    out.setdefault(f"{prefix}/{k}", []).append((step, v))
        if "eval" not in h:
            for k, v in h.items():
                if k != "step":
                    out.setdefault(f"train/{k}", []).append((step, v))
    return out


def _check_same(run):
    got, want = _events(run), _expected(run)
    assert set(want) <= set(got)
    assert {"train/lr", "train/steps_per_s"} <= set(got)
    for tag, pts in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in pts], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in pts], rel=1e-6, abs=1e-7), tag
    lr = load_config("synthetic", TINY).train.lr
    assert all(v == pytest.approx(lr) for _, v in got["train/lr"])


def test_event_files_hold_the_numbers_of_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    run = str(tmp_path / "run")
    train(load_config("synthetic", TINY), run, log=lambda *_: None)
    _check_same(run)


def test_resumed_run_holds_each_step_once(tmp_path, interrupt_at):
    pytest.importorskip("tensorboard")
    run = str(tmp_path / "run")
    cfg = TINY + ["train.num_steps=6"]
    with pytest.raises(KeyboardInterrupt), interrupt_at(3):
        train(load_config("synthetic", cfg), run, log=lambda *_: None)
    train(load_config("synthetic", cfg), run, log=lambda *_: None)
    _check_same(run)


def test_without_tensorboard_one_line_and_training_goes_on(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tb(name, *a, **k):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    logs = []
    run = tmp_path / "run"
    train(load_config("synthetic", TINY), str(run), log=logs.append)
    err = capsys.readouterr().err   # a warning: stderr, once, and in train.log
    assert err.count("warning: tensorboard is not installed") == 1
    assert not any("tensorboard is not installed" in m for m in logs)   # not a message
    assert (run / "train.log").read_text().count("tensorboard is not installed") == 1
    assert (run / "summary.json").is_file() and not (run / "tensorboard").exists()
