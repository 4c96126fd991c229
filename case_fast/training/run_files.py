"""A run directory's files: what a run writes, the checks before it starts, and the ``--restart``
staging (the old run moved into ``.previous-run`` until the new one has a checkpoint)."""
from __future__ import annotations

import os
import shutil
from typing import Optional

from ..files import DirLock, OutputError, check_writable_dir, remove_stale_temps

RUN_FILES = ("last.pt", "best.pt", "best_results.json", "best_table.txt", "metrics.jsonl",
             "summary.json", "config.yaml", "train.log")
RUN_DIRS = ("tensorboard",)   # folders of a run (moved aside by --restart with the files)


class RunError(RuntimeError):
    """The run directory cannot be used as asked (another config, a broken checkpoint, a file in the
    way, in use by another process); the message says what to do."""


PREVIOUS = ".previous-run"   # where --restart keeps the old run until the new one has a checkpoint


def restore_previous(run_dir: str, log) -> None:
    """Settle what an earlier --restart left (under the run lock): the old run moved aside is put back
    when the new run never reached a checkpoint (``last.pt``), and deleted when it did."""
    staging = os.path.join(run_dir, PREVIOUS + ".partial")
    if os.path.isdir(staging):   # killed while moving the old files aside: nothing new written yet
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(run_dir, name))
        os.rmdir(staging)
        log(f"restored the previous run in {run_dir} (a --restart there was interrupted)")
    prev = os.path.join(run_dir, PREVIOUS)
    if not os.path.isdir(prev):
        return
    if os.path.exists(os.path.join(run_dir, "last.pt")):
        shutil.rmtree(prev, ignore_errors=True)
        return
    for name in RUN_FILES:   # the new run's files before its first checkpoint
        p = os.path.join(run_dir, name)
        if os.path.lexists(p):
            os.remove(p)
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
    for name in os.listdir(prev):
        os.replace(os.path.join(prev, name), os.path.join(run_dir, name))
    os.rmdir(prev)
    log(f"restored the previous run in {run_dir} (a --restart there ended before its first checkpoint)")


def move_aside(run_dir: str) -> bool:
    """Move the run's files into ``.previous-run`` (renames in one folder); False if there were none."""
    present = [n for n in RUN_FILES + RUN_DIRS if os.path.lexists(os.path.join(run_dir, n))]
    if not present:
        return False
    staging = os.path.join(run_dir, PREVIOUS + ".partial")
    os.makedirs(staging, exist_ok=True)
    for name in present:
        os.replace(os.path.join(run_dir, name), os.path.join(staging, name))
    os.replace(staging, os.path.join(run_dir, PREVIOUS))
    return True


def check_run_dir(run_dir: str) -> None:
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"--out {run_dir} is a file, not a run directory; choose another --out")
    try:
        check_writable_dir(run_dir, "run directory")
    except OutputError as e:
        raise RunError(str(e)) from None
    for name in RUN_FILES:
        if os.path.isdir(os.path.join(run_dir, name)):
            raise RunError(f"{os.path.join(run_dir, name)} is a directory where the run keeps a file; "
                           "move it away or choose another --out")
    if os.path.isdir(run_dir):
        pid = DirLock.holder(run_dir)
        if pid is not None:
            raise RunError(f"{run_dir} is in use by another case-fast process (pid {pid}); wait for it "
                           "to end or choose another --out")


def remove_fresh(run_dir: str, lock: Optional[DirLock] = None) -> None:
    """Remove a run directory this process created, with what it wrote before its first checkpoint."""
    for name in RUN_FILES + (DirLock.NAME,):
        try:
            os.remove(os.path.join(run_dir, name))
        except OSError:
            pass
    remove_stale_temps(run_dir, RUN_FILES)
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
    if lock is not None:
        lock.release()
    try:
        os.rmdir(run_dir)
    except OSError:
        pass

