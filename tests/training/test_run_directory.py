"""Run directories: ``--restart`` keeps the old run until the new one has a checkpoint (also across a
SIGKILL), SIGKILL at random points and resume end exactly like an uninterrupted run, two processes on
one run directory, a full disk (tmpfs) and a read-only one (read-only mount)."""
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
