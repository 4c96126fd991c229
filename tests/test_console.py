"""What commands print and where: stdout / stderr, warnings once per run, --quiet, train.log, the
progress bar, a diverging run."""
import io
import json
import math
import os

import pytest
import torch

from case_fast.cli.main import main
from case_fast.console import Console, Progress, console

TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "train.batch_size=4", "train.num_steps=6",
        "train.eval_every=3", "train.progress=false"]


def test_warnings_once_per_run_on_stderr(tmp_path, capsys):
    c = Console()
    c.attach(str(tmp_path / "a.log"))
    assert c.warn("warning: x") and not c.warn("warning: x") and c.warn("warning: y")
    c.show("hello")
    c.record("only in the log")
    out, err = capsys.readouterr()
    assert out == "hello\n" and err == "warning: x\nwarning: y\n"
    c.attach(str(tmp_path / "b.log"))   # a new run: shown again
    assert c.warn("warning: x")
    c.detach()
    log = (tmp_path / "a.log").read_text()
    assert log.count("warning: x") == 1 and "only in the log" in log and "hello" not in log


def test_quiet_and_other_ranks_print_nothing(capsys, monkeypatch):
    c = Console()
    c.quiet = True
    c.show("hidden")
    c.warn("warning: still shown")
    assert capsys.readouterr() == ("", "warning: still shown\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    c = Console()
    c.show("rank 1")
    c.warn("warning: rank 1")
    c.result("data")
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    c.show("rank 0")
    assert capsys.readouterr().out == "rank 0\n"


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_fits_the_terminal_and_skips_evaluations(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((40, 24)))
    clock = [0.0]
    monkeypatch.setattr("case_fast.console.time.perf_counter", lambda: clock[0])
    tty = _Tty()
    bar = Progress(100, "train", stream=tty)
    for _ in range(10):   # 10 steps/s
        clock[0] += 0.1
        bar.update(1)
    clock[0] += 50.0      # an evaluation
    bar.restart_clock()
    clock[0] += 0.1
    bar.update(1)
    assert bar.rate == pytest.approx(10.0)
    lines = tty.getvalue().split("\r")
    assert all(len(x) <= 39 for x in lines) and "11/100" in lines[-1] and "10.0it/s" in lines[-1]
    # not a terminal: nothing drawn
    plain = io.StringIO()
    Progress(5, "x", stream=plain).update(5)
    assert plain.getvalue() == ""


def test_message_above_the_bar(monkeypatch, capsys):
    tty = _Tty()
    bar = Progress(10, "train", stream=tty)
    bar.update(1)
    console.show("step 1: avg mAP 1.00")
    bar.close()
    assert capsys.readouterr().out == "step 1: avg mAP 1.00\n"
    assert tty.getvalue().count("1/10") == 2    # drawn, cleared, drawn again under the message


def test_train_log_and_versions(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run)] + TINY) == 0
    out, err = capsys.readouterr()
    assert "step 3: avg mAP" in out and "selected evaluation" in out and "warning" not in out
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == len(set(warnings))        # never the same warning twice
    log = (run / "train.log").read_text()
    for text in ("environment: case-fast", "torch " + torch.__version__, "CUDA", "Triton", "device",
                 "configuration:", "train:", "step 3: avg mAP", "selected evaluation", "mAP(%)"):
        assert text in log, text
    env = json.loads((run / "summary.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and set(env) >= {"case_fast", "cuda", "triton", "device",
                                                             "git_commit"}
    assert main(["train", "-q", "--out", str(tmp_path / "q")] + TINY) == 0
    out, err = capsys.readouterr()
    assert out == "" and "step 3" in (tmp_path / "q" / "train.log").read_text()


def test_a_diverging_run_stops_at_its_step(tmp_path, capsys, monkeypatch):
    import case_fast.training.loop as T
    real = T.train_step

    def step(model, optim, feats, labels, q_c, cfg, pg=None):
        res = real(model, optim, feats, labels, q_c, cfg, pg=pg)
        if optim.state and next(iter(optim.state.values()))["step"] >= 5:   # the 5th step
            res.parts["scc"] = torch.tensor(math.nan)
            res.loss = torch.tensor(math.nan)
        return res
    monkeypatch.setattr(T, "train_step", step)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run)] + TINY) == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("warning:")]
    assert len(err) == 1 and "step 5" in err[0] and "scc = nan" in err[0] and "step 3" in err[0], err
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values())
    text = (run / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert not (run / "summary.json").exists()
    assert "diverged at step 5" in (run / "train.log").read_text()
