"""Training a run (method.md §3.6): everything checked before anything is written, the run
directory locked, the data loaded, then the loop (``loop.py``): Adam, periodic evaluation, best
checkpoint, exact resume.

Run directory layout:
  config.yaml       the resolved configuration
  metrics.jsonl     one JSON object per logged step / evaluation
  last.pt           model, optimizer, Q^C, step, best-so-far, metric history (every eval_every steps)
  best.pt           weights + Q^C + config + metrics of the best evaluation
  best_results.json detections of the best evaluation (ActivityNet-style)
  summary.json      final metrics: "best" (the evaluation at the selected step, train.select) and
                    "selection" (test mAP best over the evaluations with its step, at the
                    val-selected step - null without a val hold-out - and at the last step);
                    "environment": case-fast, Python, torch, CUDA, Triton, device, git commit
  train.log         every message and warning of the run (appended on resume), after the
                    environment and the resolved configuration of each start
  tensorboard/      TensorBoard event files (train.tensorboard and the tensorboard package):
                    the numbers of metrics.jsonl (which stays the source of truth), plus lr and steps/s
  .lock             the run's lock (fcntl.flock, held while a process trains here; released by the
                    kernel when that process ends, however it ends)
  .previous-run/    only during a --restart: the old run's files, deleted once the new run has
                    written its first checkpoint, put back if it ends before that

A second process on a locked run directory is refused; temporary files of a write interrupted by a
kill are removed when the next run starts there. Every file is written to a temporary file, synced
and renamed, so a failed or killed write never leaves a truncated checkpoint; files get the mode the
umask gives. A loss that becomes NaN or infinite ends the run at that step (the step and the loss
term named, exit status 2 from the command line) before anything of it is written.

A run from a seed is the released run (method.md §8): the initial weights are drawn in the released
layer order (``method/released_init.py``), the batch order and the snippets from the released streams
(``batches.RunStreams``): one epoch order per n // B steps, one draw per periodic evaluation,
closed-range sampling in batch order. An evaluation at the last step that is not periodic
(num_steps not a multiple of eval_every) draws nothing and is selected as best only when no
periodic evaluation is (or with select=last): the released run has no such evaluation. last.pt
holds the streams' state, so a run killed at any point and restarted resumes from last.pt and ends
bit-for-bit like an uninterrupted run (CPU); a last.pt without it is refused.

``train.cuda_graph=true`` (CUDA only) runs the step as a captured CUDA graph (``graph_step.py``);
everything else (sampling, evaluation, checkpoints, resume) is the same code.

Model selection (``train.select``): 'test' (default; the paper's protocol: the best of the
periodic test evaluations), 'val' (the best evaluation on a class-stratified hold-out of
``train.val_fraction`` of the training videos, scored against their segment annotations; training
then uses the rest), 'last'. best.pt is the checkpoint at the selected step. With
``val_fraction > 0`` the hold-out is evaluated at every periodic evaluation whatever ``select`` is.

Data parallel (``torchrun --nproc_per_node N -m case_fast train``, see ``distributed.py``): each
rank trains on its contiguous slice of the same global batch with the batch-wide pieces of the
method reduced across ranks; rank 0 alone writes (it holds the lock), the checkpoint it reads on
resume is broadcast to the others; evaluation is split across ranks and gathered.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch

from . import distributed as dist_mod
from .checkpoint import check_same_run, read_last
from ..config.schema import Config
from ..console import console
from ..data.load import load_datasets
from .periodic_eval import Evaluator
from .graph_step import require_cuda
from .run_files import check_run_dir, remove_fresh, restore_previous
from .batches import FeatureBank, SubsetView, val_split
from ..files import DirLock, OutputError
from ..runtime import resolve_device
from .loop import collective, train_loop


def _setup_determinism(on: bool, device) -> Callable[[], None]:
    """train.deterministic: deterministic algorithms (an error for an op that has none), cuDNN
    deterministic without autotuning, and CUBLAS_WORKSPACE_CONFIG (needed by cuBLAS on CUDA >= 10.2;
    set before the first cuBLAS call of the process). Returns a function restoring the previous
    settings. There are no data-loader workers to seed: batches are gathered from the resident
    FeatureBank with the step's own generator."""
    if not on:
        return lambda: None
    prev = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False

    def restore():
        torch.use_deterministic_algorithms(prev[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[1], prev[2]
    return restore


def train(cfg: Config, run_dir: str, *, restart: bool = False, log: Optional[Callable[[str], None]] = None,
          pg: Optional["dist_mod.ProcessGroup"] = None) -> dict:
    """Train (or resume) CASE; returns the summary of the evaluation at the selected step.

    Everything that can be checked is checked before anything is written: the configuration, the
    run directory (a file in the way, not writable, locked by another process), an existing run's
    last.pt (readable, same configuration) and all the data. The run directory is then locked
    (:class:`~case_fast.files.DirLock`) for the whole run; temporary files left by a killed write
    are removed; with ``restart`` the old run's files are moved into ``.previous-run`` and deleted
    only once the new run has written its first checkpoint (put back if it fails before that).
    A run directory that this call created is removed again if the run fails before its first
    checkpoint.

    ``pg``: this process's place in a data-parallel job (``distributed.init()`` under torchrun);
    rank 0 checks, locks and writes the run directory, every rank trains its slice of the batch.

    ``log``: where the run's messages are shown (default: stdout, see ``console``); rank 0 also
    records them, the environment and the resolved configuration in ``run_dir/train.log``.
    Warnings go to stderr once per distinct warning. A loss that becomes NaN or infinite stops the
    run (:class:`TrainingDiverged`, naming the step and the loss term); the last checkpoint stays."""
    cfg.validate()
    t_begin = time.time()
    tc = cfg.train
    world = 1 if pg is None else pg.world
    main = pg is None or pg.is_main
    tc.world_size = world
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size = {tc.batch_size} is not a multiple of the {world} "
                         "processes: each takes an equal slice of the global batch")
    if world > 1 and tc.cuda_graph:
        raise ValueError("train.cuda_graph is single-process only (not with torchrun)")
    show = log if log is not None else console.show
    early: list = []   # messages said before train.log is open, recorded there once it is

    def log(msg: str) -> None:
        if not main:   # rank 0 speaks for the job
            return
        show(msg)
        if early and early[-1] is None:
            console.record(msg)
        else:
            early.append(msg)
    if not main:
        tc.progress = False
    last_path = os.path.join(run_dir, "last.pt")

    def precheck():
        check_run_dir(run_dir)
        if not restart and os.path.exists(last_path):   # refuse a foreign or broken run before loading data
            check_same_run(read_last(last_path, "cpu"), cfg, run_dir)
    collective(pg, precheck if main else None)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = resolve_device(tc.device)
    if pg is not None and device.type == "cuda":
        device = torch.device("cuda", pg.local_rank)
    if tc.cuda_graph:
        require_cuda(device)   # before anything is loaded or written

    # Load and validate all data before anything is written.
    train_all, test_set = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    train_ids, val_ids = val_split(train_all.labels, tc.val_fraction)
    train_set = train_all if not len(val_ids) else SubsetView(train_all, train_ids, train_all.name)
    val_set = SubsetView(train_all, val_ids, train_all.name + " (val)") if len(val_ids) else None
    if len(train_set) < tc.batch_size:
        raise ValueError(f"{train_set.name}: {len(train_set)} training videos"
                         + (f" (after holding out {len(val_ids)} for validation)" if len(val_ids) else "")
                         + f", fewer than one batch of {tc.batch_size} (set train.batch_size lower)")
    if not tc.drop_last and len(train_set) % tc.batch_size and (world > 1 or tc.cuda_graph):
        raise ValueError(f"train.drop_last=false: {train_set.name}'s {len(train_set)} training videos "
                         f"leave an incomplete batch of {len(train_set) % tc.batch_size}, which "
                         + ("cannot be split into equal slices over processes" if world > 1 else
                            "a CUDA graph of fixed shapes cannot take (train.cuda_graph=false)"))
    t0 = time.time()
    bank = FeatureBank(train_set, device)
    evaluator = Evaluator(test_set, cfg, device)
    val_evaluator = Evaluator(val_set, cfg, device, test=False) if val_set else None
    labels_all = torch.from_numpy(train_set.labels).to(device)
    log(f"data: {len(train_set)} train"
        + (f" + {len(val_set)} val (held out)" if val_set else "")
        + f" / {len(test_set)} test videos ({train_all.name}), "
        f"T={cfg.data.num_segments}, k={cfg.k}, loaded in {time.time() - t0:.1f}s on {device}"
        + (f", {world} processes" if world > 1 else ""))

    created = not os.path.isdir(run_dir)
    holder = {"lock": None}

    def make_and_lock():
        try:
            os.makedirs(run_dir, exist_ok=True)
        except OSError as e:
            raise OutputError(e.errno, f"cannot create the run directory {run_dir}: "
                              f"{e.strerror or e}") from e
        lock = DirLock(run_dir)
        try:
            lock.acquire("--out")
        except BaseException:
            if created:
                remove_fresh(run_dir)
            raise
        holder["lock"] = lock
    collective(pg, make_and_lock if main else None)
    lock = holder["lock"]
    state = {"checkpointed": None, "aside": False, "t_begin": t_begin}
    restore_det = _setup_determinism(tc.deterministic, device)
    try:
        return train_loop(cfg, run_dir, restart, log, device, train_set, test_set,
                             bank, evaluator, labels_all, state, val_evaluator, pg, early)
    except BaseException as e:
        if not main:
            raise
        if state["aside"] and state["checkpointed"] is None:
            try:
                restore_previous(run_dir, log)
            except OSError as e2:   # pragma: no cover - the next run retries
                log(f"could not restore the previous run in {run_dir} yet ({e2}); the next "
                    "`case-fast train` there restores it")
        elif created and state["checkpointed"] is None:
            remove_fresh(run_dir, lock)
            lock = None
        if isinstance(e, OutputError) and state["checkpointed"] is not None:
            raise OutputError(e.errno, f"{e}; the last checkpoint in {run_dir} (step "
                              f"{state['checkpointed']}) is intact: fix the cause and rerun the same "
                              "command to resume") from e
        raise
    finally:
        restore_det()
        if console.bar is not None:
            console.bar.close()
        if main and early and early[-1] is None:
            console.detach()
        if lock is not None:
            lock.release()
