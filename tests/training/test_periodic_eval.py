"""Model selection (train.select, train.val_fraction), the three test numbers of summary.json, and
train.deterministic."""
import json

import numpy as np
import pytest
import torch

from case_fast.config.values import ConfigError
from case_fast.config.loading import load_config
from case_fast.training.periodic_eval import selection_summary
from case_fast.training.trainer import train
from case_fast.training.batches import val_split

TINY = ["train.num_steps=6", "train.eval_every=2", "data.synthetic_videos=20", "data.synthetic_max_len=200",
        "data.num_segments=64", "train.progress=false", "train.batch_size=4", "train.tensorboard=false"]


def test_val_split_is_stratified_and_fixed():
    rng = np.random.default_rng(0)
    labels = np.zeros((200, 20), np.float32)
    labels[np.arange(200), rng.integers(0, 20, 200)] = 1
    tr, va = val_split(labels, 0.15)
    tr2, va2 = val_split(labels, 0.15)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 200
    assert 25 <= len(va) <= 40
    for c in range(20):   # every class with >= 2 videos is in both parts
        members = np.flatnonzero(labels[:, c] > 0)
        if len(members) >= 2:
            assert np.isin(members, va).any() and np.isin(members, tr).any()
    assert len(val_split(labels, 0.0)[1]) == 0


def test_select_val_needs_a_hold_out():
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config("synthetic", ["train.select=val"])
    with pytest.raises(ConfigError, match="train.select"):
        load_config("synthetic", ["train.select=best"])
    with pytest.raises(ConfigError, match="train.val_fraction"):
        load_config("synthetic", ["train.val_fraction=1"])


def test_selection_summary_picks_first_best():
    ev = lambda a: {"avg": a, "map": [a], "tiou": [0.5]}   # noqa: E731
    hist = [{"step": 2, "eval": ev(0.1), "val": ev(0.5)}, {"step": 3, "loss": 1.0},
            {"step": 4, "eval": ev(0.3), "val": ev(0.2)}, {"step": 6, "eval": ev(0.3), "val": ev(0.5)}]
    s = selection_summary(hist)
    assert s["test_best"]["step"] == 4 and s["test_at_val"]["step"] == 2
    assert s["test_at_val"]["avg"] == 0.1 and s["test_at_val"]["val_avg"] == 0.5
    assert s["test_at_last"]["step"] == 6
    assert selection_summary([{"step": 2, "eval": ev(0.1)}])["test_at_val"] is None


@pytest.mark.parametrize("select", ["val", "last"])
def test_best_pt_is_the_selected_step(tmp_path, select):
    run = tmp_path / select
    best = train(load_config("synthetic", TINY + ["train.val_fraction=0.15", f"train.select={select}"]),
                 str(run), log=lambda *_: None)
    summ = json.loads((run / "summary.json").read_text())
    sel = summ["selection"]
    assert summ["select"] == select and all(sel[k] is not None for k in sel)
    want = sel["test_at_val"] if select == "val" else sel["test_at_last"]
    assert best["step"] == summ["best"]["step"] == want["step"]
    assert summ["best"]["avg"] == pytest.approx(want["avg"])
    assert torch.load(run / "best.pt", weights_only=True)["step"] == want["step"]
    hist = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(h["eval"]["avg"] for h in hist if "eval" in h) == pytest.approx(sel["test_best"]["avg"])
    assert all("val" in h for h in hist if "eval" in h)


def test_default_select_test_has_no_val_number(tmp_path):
    run = tmp_path / "r"
    train(load_config("synthetic", TINY), str(run), log=lambda *_: None)
    summ = json.loads((run / "summary.json").read_text())
    assert summ["selection"]["test_at_val"] is None
    assert summ["best"]["step"] == summ["selection"]["test_best"]["step"]
    assert summ["world_size"] == 1


def test_deterministic_switch_same_result_on_cpu(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(load_config("synthetic", TINY + ["train.num_steps=2"]), str(a), log=lambda *_: None)
    train(load_config("synthetic", TINY + ["train.num_steps=2", "train.deterministic=true"]), str(b),
          log=lambda *_: None)
    assert not torch.are_deterministic_algorithms_enabled()   # restored after the run
    sa = torch.load(a / "last.pt", weights_only=True)
    sb = torch.load(b / "last.pt", weights_only=True)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k


def test_checkpoint_written_before_the_selection_fields_resumes(tmp_path):
    run = tmp_path / "old"
    train(load_config("synthetic", TINY + ["train.num_steps=2"]), str(run), log=lambda *_: None)
    ck = torch.load(run / "last.pt", weights_only=True)
    for key in ("select", "val_fraction", "deterministic", "tensorboard", "world_size"):
        ck["config"]["train"].pop(key)
    torch.save(ck, run / "last.pt")
    logs = []
    train(load_config("synthetic", TINY + ["train.num_steps=4"]), str(run), log=logs.append)
    assert any("resuming" in m for m in logs)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 4


def test_never_predicted_classes_are_reported():
    from case_fast.experiments import ablate_table
    from case_fast.training.periodic_eval import never_predicted_warning, summarize

    ap = np.zeros((2, 3))
    ap[:, 0] = [0.5, 0.3]
    metrics = {"avg": 0.1, "map": [0.2, 0.1], "tiou": [0.3, 0.5], "ap": ap,
               "class_names": ["A", "B", "C"], "n_pred": np.array([4, 0, 0]),
               "n_gt": np.array([2, 3, 0])}
    summ = summarize(metrics)
    assert summ["class_ap"] == {"A": 0.4, "B": 0.0, "C": 0.0}
    assert summ["never_predicted"] == ["B"]          # C has no ground truth: not a lost class
    msg = never_predicted_warning(summ, 300)
    assert msg.startswith("warning: step 300: 1 class(es)") and msg.endswith(": B")
    assert never_predicted_warning(dict(summ, never_predicted=[]), 300) is None
    row = {"row": "baseline", "runs": [{"seed": 1, "class_ap": {"A": 40.0, "B": 0.0, "C": 0.0},
                                        "never_predicted": ["B"]}]}
    text = ablate_table.format_class_ap([row])
    assert "  0.0!" in text and " 40.0 " in text
