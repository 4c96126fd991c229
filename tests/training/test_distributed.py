"""Data-parallel training on torch.distributed (gloo, CPU): two torchrun processes train the same
method as one process at the same global batch, resume after a SIGKILL, and `case-fast ablate`
spreads its runs over the processes of a launch.

Tolerances (float32, CPU, observed on the tiny config over 4-6 steps): loss parts and Q^S / Q^C agree
to ~1e-6, parameters to ~2e-6 (Adam's normalised step turns ~1e-7 gradient differences on entries
with a near-zero gradient into up to a few 1e-6); asserted with atol 1e-5 (losses, Q) and 5e-5
(parameters)."""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[2]
REF = REPO / "tests" / "reference" / "released_run"
TINY = ["data.synthetic_videos=20", "data.synthetic_max_len=200", "data.num_segments=64",
        "train.batch_size=4", "train.progress=false", "train.num_steps=6", "train.eval_every=2",
        "train.val_fraction=0.15"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _torchrun(args, n=2, timeout=240, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(**env), cwd=REPO)


def _one(args, timeout=240):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=REPO)


def test_two_processes_equal_one_losses_qs_qc_parameters(tmp_path):
    """Four steps through train_step: every step's loss parts, the full Q^S (ranks' slices
    concatenated) and Q^C, and the parameters after the steps; Q^C and the parameters are also
    identical on both ranks (checked inside the helper)."""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    r1 = _one([str(REPO / "tests" / "training" / "ddp_steps.py"), str(one)])
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _torchrun([str(REPO / "tests" / "training" / "ddp_steps.py"), str(two)])
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert a["part_names"] == b["part_names"]
    for s in range(len(a["parts"])):
        torch.testing.assert_close(b["parts"][s], a["parts"][s], rtol=0, atol=1e-5)
        assert b["q_s"][s].shape == a["q_s"][s].shape
        torch.testing.assert_close(b["q_s"][s], a["q_s"][s], rtol=0, atol=1e-5)
        torch.testing.assert_close(b["q_c"][s], a["q_c"][s], rtol=0, atol=1e-5)
    for k in a["params"]:
        torch.testing.assert_close(b["params"][k], a["params"][k], rtol=0, atol=5e-5, msg=k)


def test_torchrun_train_equals_one_process_and_resumes_after_a_kill(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    r = _one(["-m", "case_fast", "train", "--out", str(single)] + TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    # rank 0 is SIGKILLed at step 3 (after the step-2 checkpoint); torchrun ends the other rank
    r = _torchrun([str(REPO / "tests" / "training" / "watched_train.py"), "--kill-at", "3", "--", "train", "--out", str(multi)]
                  + TINY)
    assert r.returncode != 0
    assert torch.load(multi / "last.pt", weights_only=True)["step"] == 2
    r = _torchrun(["-m", "case_fast", "train", "--out", str(multi)] + TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout + r.stderr
    assert r.stdout.count("step 6: avg mAP") == 1 and r.stdout.count("selected evaluation") == 1  # rank 0 alone
    assert "step 6: avg mAP" not in r.stderr
    a = torch.load(single / "last.pt", weights_only=True)
    b = torch.load(multi / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=5e-5, msg=k)
    torch.testing.assert_close(b["q_c"], a["q_c"], rtol=0, atol=1e-5)
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["step"] == hb["step"] and set(ha) == set(hb)
        for key in ("loss", "video", "att_rgb", "att_flow", "scc", "ccc", "H_QS", "H_mean_QS", "H_QC"):
            if key in ha:
                assert hb[key] == pytest.approx(ha[key], abs=1e-5), (ha["step"], key)
    summ = json.loads((multi / "summary.json").read_text())
    assert summ["world_size"] == 2 and b["config"]["train"]["world_size"] == 2
    assert all(summ["selection"][k] is not None for k in ("test_best", "test_at_val", "test_at_last"))
    # only rank 0 wrote: one set of files, no temporaries, one TensorBoard writer per launch
    assert not [n for n in os.listdir(multi) if n.endswith(".tmp")]
    lines = (multi / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [h["step"] for h in b["history"]]


def test_torchrun_aicl_with_case_head_equals_one_process(tmp_path):
    """AICL + CASE (the head's Sinkhorn and CCC through the collectives): two processes train the
    same run as one: losses, Q^C and parameters. (β is not probed: every video's Q^A has the same
    foreground share k/T, so the local and global β agree.)"""
    aicl = ["model.baseline=aicl", "train.use_scc=true", "train.use_ccc=true", "infer.use_cat=true",
            "infer.fg_score=PM", "model.hidden_dim=64", "train.tensorboard=false"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    r = _one(["-m", "case_fast", "train", "--out", str(single)] + TINY + aicl)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _torchrun(["-m", "case_fast", "train", "--out", str(multi)] + TINY + aicl)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(single / "last.pt", weights_only=True)
    b = torch.load(multi / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and "head.prototypes.rgb" in a["model"]
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=5e-5, msg=k)
    torch.testing.assert_close(b["q_c"], a["q_c"], rtol=0, atol=1e-5)
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["step"] == hb["step"] and set(ha) == set(hb)
        for key in ("loss", "scc", "ccc", "H_QS", "H_QC"):
            if key in ha:
                assert hb[key] == pytest.approx(ha[key], abs=1e-5), (ha["step"], key)
    assert any(h.get("scc", 0) > 0 for h in a["history"])


@pytest.mark.parametrize("seed", (1, 2))
def test_torchrun_is_the_released_run(tmp_path, seed):
    """Two processes on tests/reference/released_run (50 of the 200 steps: two evaluations inside
    epochs, ten epoch orders): the ranks' slices make up every released global batch (videos and
    snippets), the logged losses are the released ones and the evaluations score the released mAP."""
    d = np.load(REF / f"seed{seed}.npz")
    run, rec = tmp_path / "run", tmp_path / "rec"
    rec.mkdir()
    args = [f"data.root={REF / 'data'}", f"data.num_segments={int(d['num_segments'])}",
            f"data.feature_dim={2 * int(d['stream_dim'])}", f"model.stream_dim={int(d['stream_dim'])}",
            f"train.batch_size={int(d['batch_size'])}", "train.num_steps=50",
            f"train.eval_every={int(d['eval_every'])}", f"train.seed={seed}", "train.device=cpu",
            "train.progress=false", "train.tensorboard=false"]
    r = _torchrun([str(REPO / "tests" / "training" / "watched_train.py"), "--record", str(rec), "--", "train",
                   "--config", "thumos14", "--out", str(run)] + args)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [torch.load(rec / f"rank{i}.pt", weights_only=False) for i in range(2)]
    for s in range(50):
        np.testing.assert_array_equal(np.concatenate([x["videos"][s] for x in ranks]), d["batch_videos"][s])
        np.testing.assert_array_equal(np.concatenate([x["snippets"][s] for x in ranks]), d["sampled_indices"][s])
    last = torch.load(run / "last.pt", weights_only=True)
    done = 0
    for h in last["history"]:
        if "loss" in h:   # the mean loss of the steps since the previous entry
            want = d["loss_per_step"][done:h["step"]].mean()
            assert h["loss"] == pytest.approx(want, rel=1e-5, abs=1e-6), h["step"]
            done = h["step"]
    evals = [h for h in last["history"] if "eval" in h]
    assert [h["step"] for h in evals] == [23, 46, 50] and evals[-1]["periodic"] is False
    for h, ref in zip(evals[:2], d["eval_map"]):
        np.testing.assert_allclose(h["eval"]["map"], ref, rtol=0, atol=1e-4)


def test_torchrun_ablate_runs_every_run_once(tmp_path):
    out = tmp_path / "abl"
    r = _torchrun(["-m", "case_fast", "ablate", "--quick", "--rows", "case", "scc_ccc", "--seeds", "1", "2",
                   "--out", str(out), "train.val_fraction=0.15"])
    assert r.returncode == 0, r.stderr[-3000:]
    done = re.findall(r"\[rank (\d)\] (\w+) seed (\d): avg mAP", r.stdout)
    trained = [(row, seed) for _, row, seed in done if row == "case"]
    assert sorted(trained) == [("case", "1"), ("case", "2")]                 # each run once
    assert {rank for rank, row, _ in done if row == "case"} == {"0", "1"}   # on both processes
    report = json.loads((out / "ablation.json").read_text())
    assert report["torchrun_processes"] == 2
    rows = {row["row"]: row for row in report["rows"]}
    assert rows["case"]["n"] == 2 and rows["scc_ccc"]["n"] == 2
    assert rows["case"]["selection_mean"]["test_at_val"] is not None
    assert rows["scc_ccc"]["selection_mean"]["test_best"] is None          # a test-time row has none
    assert "best test" in (out / "ablation.txt").read_text()
