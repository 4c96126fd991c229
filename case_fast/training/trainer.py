"""Training loop (method.md §3.6): Adam, periodic evaluation, best checkpoint, exact resume.

Run directory layout:
  config.yaml       the resolved configuration
  metrics.jsonl     one JSON object per logged step / evaluation
  last.pt           model, optimizer, Q^C, step, best-so-far, metric history (every eval_every steps)
  best.pt           weights + Q^C + config + metrics of the best evaluation
  best_results.json detections of the best evaluation (ActivityNet-style)
  summary.json      final metrics: "best" (the evaluation at the selected step, train.select) and
                    "selection" (test mAP best over the evaluations with its step, at the
                    val-selected step - null without a val hold-out - and at the last step)
  tensorboard/      TensorBoard event files (train.tensorboard and the tensorboard package):
                    the numbers of metrics.jsonl (which stays the source of truth), plus lr and steps/s
  .lock             the run's lock (fcntl.flock, held while a process trains here; released by the
                    kernel when that process ends, however it ends)
  .previous-run/    only during a --restart: the old run's files, deleted once the new run has
                    written its first checkpoint, put back if it ends before that

A second process on a locked run directory is refused; temporary files of a write interrupted by a
kill are removed when the next run starts there. Every file is written to a temporary file and
renamed, so a failed or killed write never leaves a truncated checkpoint.

A run from a seed is the released run (method.md §8): the initial weights are drawn in the released
layer order (``released_init.py``), the batch order and the snippets from the released streams
(``train_data.RunStreams``): one epoch order per n // B steps, one draw per periodic evaluation,
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

import json
import os
import shutil
import time
from typing import Callable, Dict, Optional

import torch
import yaml

from . import distributed as dist_mod
from .checkpoint import (LAST_KEYS, check_same_run, config_difference, config_for_compare,  # noqa: F401
                         first_line, load_checkpoint, read_last)
from .config import Config
from .data import load_datasets
from .evaluation import format_table
from .evaluator import (Evaluator, ground_truth_of, never_predicted_warning,  # noqa: F401
                        proposals_to_detections, selection_summary, summarize)
from .graph_step import GraphedStep, require_cuda, set_capturable
from .inference import to_results_dict
from .model import CaseModel
from .released_init import draw_initial_weights
from .pseudo_labels import initial_cluster_labels
from .run_files import (PREVIOUS, RUN_DIRS, RUN_FILES, RunError, check_run_dir, move_aside,  # noqa: F401
                        remove_fresh, restore_previous)
from .step import train_step
from .tensorboard_log import TensorBoardLog
from .train_data import VAL_SEED, FeatureBank, RunStreams, SubsetView, val_split  # noqa: F401
from .utils import (DirLock, OutputError, Progress, remove_stale_temps, resolve_device, save_json, save_text,
                    save_torch, seed_everything)

_summary = summarize   # the old private name

# names that lived here before the trainer was split by job (run_files, checkpoint, train_data,
# evaluator, tensorboard_log); importing them from case_fast.trainer keeps working
__all__ = ["train", "load_checkpoint", "RunError", "FeatureBank", "SubsetView", "RunStreams", "val_split",
           "VAL_SEED", "Evaluator", "ground_truth_of", "proposals_to_detections", "never_predicted_warning",
           "selection_summary", "summarize", "_summary", "RUN_FILES", "RUN_DIRS", "PREVIOUS", "LAST_KEYS",
           "config_for_compare", "config_difference"]


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


def _collective(pg, fn):
    """Run ``fn`` (on ranks that call it with a function; others pass None) and make every rank of
    ``pg`` raise if any failed, so a check made by rank 0 alone cannot leave the others waiting."""
    err, out = None, None
    try:
        out = fn() if fn is not None else None
    except BaseException as e:   # noqa: BLE001 - re-raised below, on every rank
        err = e
    if pg is not None:
        pg.agree(err)
    elif err is not None:
        raise err
    return out


def train(cfg: Config, run_dir: str, *, restart: bool = False, log: Callable[[str], None] = print,
          pg: Optional["dist_mod.ProcessGroup"] = None) -> dict:
    """Train (or resume) CASE; returns the summary of the evaluation at the selected step.

    Everything that can be checked is checked before anything is written: the configuration, the
    run directory (a file in the way, not writable, locked by another process), an existing run's
    last.pt (readable, same configuration) and all the data. The run directory is then locked
    (:class:`~case_fast.utils.DirLock`) for the whole run; temporary files left by a killed write
    are removed; with ``restart`` the old run's files are moved into ``.previous-run`` and deleted
    only once the new run has written its first checkpoint (put back if it fails before that).
    A run directory that this call created is removed again if the run fails before its first
    checkpoint.

    ``pg``: this process's place in a data-parallel job (``distributed.init()`` under torchrun);
    rank 0 checks, locks and writes the run directory, every rank trains its slice of the batch."""
    cfg.validate()
    tc = cfg.train
    world = 1 if pg is None else pg.world
    main = pg is None or pg.is_main
    tc.world_size = world
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size = {tc.batch_size} is not a multiple of the {world} "
                         "processes: each takes an equal slice of the global batch")
    if world > 1 and tc.cuda_graph:
        raise ValueError("train.cuda_graph is single-process only (not with torchrun)")
    if not main:
        log = lambda *_: None   # noqa: E731 - rank 0 speaks for the job
        tc.progress = False
    last_path = os.path.join(run_dir, "last.pt")

    def precheck():
        check_run_dir(run_dir)
        if not restart and os.path.exists(last_path):   # refuse a foreign or broken run before loading data
            check_same_run(read_last(last_path, "cpu"), cfg, run_dir)
    _collective(pg, precheck if main else None)
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
    t0 = time.time()
    bank = FeatureBank(train_set, device)
    evaluator = Evaluator(test_set, cfg, device)
    val_evaluator = Evaluator(val_set, cfg, device, ambiguous_filter=False) if val_set else None
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
    _collective(pg, make_and_lock if main else None)
    lock = holder["lock"]
    state = {"checkpointed": None, "aside": False}
    restore_det = _setup_determinism(tc.deterministic, device)
    try:
        return _train_locked(cfg, run_dir, restart, log, device, train_set, test_set,
                             bank, evaluator, labels_all, state, val_evaluator, pg)
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
        if lock is not None:
            lock.release()


def _train_locked(cfg, run_dir, restart, log, device, train_set, test_set, bank,
                  evaluator, labels_all, state, val_evaluator=None, pg=None) -> dict:
    tc = cfg.train
    main = pg is None or pg.is_main
    world = 1 if pg is None else pg.world
    last_path = os.path.join(run_dir, "last.pt")

    def settle():
        stale = remove_stale_temps(run_dir, RUN_FILES)
        if stale:
            log(f"removed {len(stale)} temporary file(s) left in {run_dir} by an interrupted write")
        restore_previous(run_dir, log)
    _collective(pg, settle if main else None)

    seed_everything(tc.seed)
    model = CaseModel(cfg.model)
    draw_initial_weights(model, tc.seed)   # the released draw order, on the CPU
    model = model.to(device)
    streams = RunStreams(tc.seed, len(train_set), tc.batch_size)
    # a captured optimizer step needs Adam's step counter and bias corrections on the device
    extra = {"capturable": True} if tc.cuda_graph else {}
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, **extra)
    q_c = initial_cluster_labels(cfg.model.num_clusters, device)
    start, best, history = 0, None, []

    def read_state():
        if restart:  # the previous run's files must not outlive it, nor be lost before the new one exists
            state["aside"] = move_aside(run_dir)
            return None
        if os.path.exists(last_path):
            ck = read_last(last_path, "cpu" if pg is not None else device)
            check_same_run(ck, cfg, run_dir)
            return ck
        return None
    ck = _collective(pg, read_state if main else None)
    if pg is not None:   # rank 0's checkpoint, to every rank (no shared file system needed)
        ck = pg.broadcast_object(ck)
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            optim.load_state_dict(ck["optimizer"])
            q_c = ck["q_c"].to(device)
            if tuple(q_c.shape) != (cfg.model.num_clusters, 2):
                raise ValueError(f"Q^C has shape {tuple(q_c.shape)}")
        except Exception as e:
            raise RunError(f"{last_path} does not fit its own configuration ({first_line(e)}); pass "
                           "--restart to start this run over") from e
        set_capturable(optim, tc.cuda_graph)   # the saved groups carry the saving run's flag
        try:
            streams.load_state_dict(ck["streams"])
        except Exception as e:
            raise RunError(f"{last_path} does not fit its own configuration ({first_line(e)}); pass "
                           "--restart to start this run over") from e
        start, best, history = ck["step"], ck["best"], ck["history"]
        state["checkpointed"] = start
        log(f"resuming {run_dir} from step {start}")
        del ck
    if main:
        save_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), os.path.join(run_dir, "config.yaml"))
    step_model = model
    if pg is not None:
        from torch.nn.parallel import DistributedDataParallel
        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not tc.use_scc)
    tb = TensorBoardLog(run_dir, tc.tensorboard and main, start, log)

    def checkpoint(step: int) -> None:
        if main:
            save_torch({"model": model.state_dict(), "optimizer": optim.state_dict(), "q_c": q_c.cpu(),
                        "step": step, "best": best, "history": history, "config": cfg.to_dict(),
                        "streams": streams.state_dict()},
                       last_path)
            save_text("".join(json.dumps(h) + "\n" for h in history),
                      os.path.join(run_dir, "metrics.jsonl"))
            tb.flush()
        state["checkpointed"] = step
        if main and state["aside"]:   # the new run exists: the old one can go
            shutil.rmtree(os.path.join(run_dir, PREVIOUS), ignore_errors=True)
            state["aside"] = False

    def selected(entry: dict) -> bool:
        """Whether this evaluation is the run's best so far under train.select (first wins ties)."""
        if best is None or tc.select == "last":
            return True
        if not entry.get("periodic", True):
            return False
        if tc.select == "val":
            return entry["val"]["avg"] > best["val_avg"]
        return entry["eval"]["avg"] > best["avg"]

    def run_eval(step: int) -> None:
        nonlocal best
        te = time.time()
        periodic = step > 0 and step % tc.eval_every == 0
        if periodic:
            streams.evaluation()
        metrics, props = evaluator(model, q_c, pg)
        summ = summarize(metrics)
        entry = {"step": step, "eval": summ}
        if not periodic:
            entry["periodic"] = False
        if val_evaluator is not None:
            entry["val"] = summarize(val_evaluator(model, q_c, pg)[0])
        entry["eval_seconds"] = round(time.time() - te, 3)
        history.append(entry)
        is_best = selected(entry)
        val_text = f", val {100 * entry['val']['avg']:.2f}" if "val" in entry else ""
        bar.write(f"step {step}: avg mAP {100 * summ['avg']:.2f} "
                  f"(@0.5 {100 * summ['map'][min(4, len(summ['map']) - 1)]:.2f}{val_text})"
                  + (f"  * selected ({tc.select})" if is_best and tc.select != "test"
                     else "  * best" if is_best else ""))
        warning = never_predicted_warning(summ, step)
        if warning:
            bar.write(warning)
        tb.evaluation("test", summ, step)
        if "val" in entry:
            tb.evaluation("val", entry["val"], step)
        if is_best:
            best = dict(summ, step=step)
            if "val" in entry:
                best["val_avg"] = entry["val"]["avg"]
            if main:
                save_torch({"model": model.state_dict(), "q_c": q_c.cpu(), "config": cfg.to_dict(),
                            "metrics": best, "step": step}, os.path.join(run_dir, "best.pt"))
                save_json(to_results_dict(props, test_set.class_names),
                          os.path.join(run_dir, "best_results.json"), None)
                save_text(format_table(metrics) + "\n", os.path.join(run_dir, "best_table.txt"))

    bar = Progress(tc.num_steps, "train", tc.progress, start=start)
    model.train()
    t = cfg.data.num_segments
    local_b = tc.batch_size // world
    lo = 0 if pg is None else pg.rank * local_b
    acc: Dict[str, torch.Tensor] = {}
    n_acc = 0
    graphed = None
    if tc.cuda_graph:
        graphed = GraphedStep(model, optim, cfg, q_c, (tc.batch_size, t, bank.flat.shape[1]),
                              (tc.batch_size, labels_all.shape[1]), feats_dtype=bank.flat.dtype,
                              labels_dtype=labels_all.dtype)
        q_c = graphed.q_c   # static: every replay writes the new Q^C into it
    step_seconds, seg_t0 = 0.0, time.perf_counter()
    win_t0, win_steps = time.perf_counter(), 0
    for step in range(start, tc.num_steps):
        # every video of the global batch is drawn, in batch order, on every rank: the same
        # indices as one process; a rank then keeps its contiguous slice
        ids = streams.batch_videos(step)
        idx = streams.sample(ids, train_set.num_snippets, t)
        ids, idx = ids[lo:lo + local_b], idx[lo:lo + local_b]
        labels = labels_all[torch.from_numpy(ids).to(device)]
        if graphed is None:
            optim.zero_grad(set_to_none=True)
            res = train_step(step_model, optim, bank.gather(ids, idx), labels, q_c, cfg, pg=pg)
            q_c = res.q_c
            loss, step_parts, q_s = res.loss.detach(), res.parts, res.q_s
        else:   # the batch into the graph's static inputs, then warm-up / capture / replay
            bank.gather(ids, idx, out=graphed.feats)
            graphed.labels.copy_(labels)
            loss, step_parts, q_s = graphed.step()   # static outputs: the next replay overwrites
            if graphed.captured_at == graphed.calls - 1:
                log(f"step {step + 1}: CUDA graph captured after {graphed.warmup} eager warm-up "
                    "steps; replaying it from now on")
        parts = {"loss": loss, **step_parts}
        # accumulated on the device: no host sync per step; `+` and clone() make new tensors, so
        # nothing here aliases a graph output that the next replay overwrites
        for name, v in parts.items():
            acc[name] = acc[name] + v if name in acc else v.clone()
        n_acc += 1
        win_steps += 1
        done = step + 1
        postfix = ""
        at_checkpoint = done % tc.eval_every == 0 or done == tc.num_steps
        if done % 10 == 0 or at_checkpoint:   # windows end at checkpoints, so resume is exact
            names = list(acc)
            vals = torch.stack([acc[n].float() for n in names])
            ent = None
            if q_s is not None:
                qs = q_s.float()
                # H(Q^S): mean per-snippet entropy (paper Fig. 4); H(mean Q^S): balance (Table 5)
                ent = torch.cat([(-(qs * (qs + 1e-12).log()).sum(1).mean())[None], qs.mean(0)])
            if pg is not None:   # the global batch: equal slices, so the mean of the ranks' means
                vals = pg.sum(vals) / world
                ent = pg.sum(ent) / world if ent is not None else None
            entry = {"step": done, **{n: round(float(v) / n_acc, 6) for n, v in zip(names, vals)}}
            postfix = f"loss {entry['loss']:.3f}"
            if ent is not None:
                qs_mean = ent[1:]
                entry["H_QS"] = float(ent[0])
                entry["H_mean_QS"] = float(-(qs_mean * (qs_mean + 1e-12).log()).sum())
                entry["H_QC"] = float(-(q_c * (q_c + 1e-12).log()).sum(1).mean())
                entry["fg_clusters"] = int((q_c[:, 0] > 0.5).sum())
            history.append(entry)
            now = time.perf_counter()
            tb.scalars("train", {k: v for k, v in entry.items() if k != "step"}, done)
            tb.scalars("train", {"lr": optim.param_groups[0]["lr"],
                                 "steps_per_s": win_steps / max(now - win_t0, 1e-9)}, done)
            acc, n_acc = {}, 0
        bar.update(1, postfix)
        if at_checkpoint:   # the logging above read the losses: the device queue is drained
            step_seconds += time.perf_counter() - seg_t0
            run_eval(done)
            checkpoint(done)
            seg_t0 = time.perf_counter()
        if done % 10 == 0 or at_checkpoint:
            win_t0, win_steps = time.perf_counter(), 0

    if tc.num_steps > start:
        n = tc.num_steps - start
        how = "eager" if graphed is None else (
            f"CUDA graph, capture {graphed.capture_seconds:.2f} s included" if graphed.graph is not None
            else "CUDA graph warm-up only, never captured")
        log(f"training steps: {n} in {step_seconds:.2f} s ({n / max(step_seconds, 1e-9):.2f} steps/s, "
            f"{how}{f', {world} processes' if world > 1 else ''}; evaluations and checkpoints excluded)")

    if best is None:  # num_steps == 0 or resumed at the end without an evaluation
        run_eval(start)
        checkpoint(start)
    tb.close()
    sel = selection_summary(history)
    summary = {"best": best, "select": tc.select, "selection": sel, "val_fraction": tc.val_fraction,
               "world_size": world, "config": cfg.name, "run_dir": run_dir, "steps": tc.num_steps}
    if cfg.data.layout == "synthetic":
        summary["synthetic_version"] = cfg.data.synthetic_version
    if main:
        save_json(summary, os.path.join(run_dir, "summary.json"))
        def fmt(key, none="-"):
            e = sel[key]
            return f"{100 * e['avg']:.2f} (step {e['step']})" if e else none
        log(f"test avg mAP: best {fmt('test_best')}, at the val-selected step "
            f"{fmt('test_at_val', '- (no val hold-out)')}, at the last step {fmt('test_at_last')}; "
            f"best.pt: select={tc.select}")
    return best

