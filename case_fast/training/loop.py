"""The training loop (method.md §3.6) in a locked run directory: the model and Adam from the seed or
from last.pt, the steps, the periodic evaluations with best-checkpoint selection, the checkpoints,
the logged metrics, train.log and the final summary. :func:`case_fast.training.trainer.train`
checks and locks the run directory, loads the data and calls :func:`train_loop`."""
from __future__ import annotations

import os
import shutil
import time
from typing import Dict

import torch
import yaml

from . import distributed as dist_mod
from .checkpoint import check_same_run, first_line, read_last
from ..config.schema import Config
from ..console import Progress, console
from ..environment import describe, environment
from ..evaluation.metric import format_table
from .periodic_eval import never_predicted_warning, selection_summary, summarize
from .graph_step import GraphedStep, set_capturable
from ..baselines import build_model, init_order
from ..method.released_init import draw_initial_weights
from ..evaluation.results import results_dict
from ..method.pseudo_labels import initial_cluster_labels
from .run_files import PREVIOUS, RUN_FILES, RunError, move_aside, restore_previous
from .step import train_step
from .tensorboard_log import TensorBoardLog
from .batches import RunStreams
from ..strict_json import dumps_line
from ..files import remove_stale_temps, save_json, save_text, save_torch
from ..runtime import seed_everything


def collective(pg, fn):
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


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped before writing anything of that step."""


def _open_log(run_dir: str, cfg: Config, env: dict, start: int, early: list) -> None:
    """Rank 0: RUN/train.log from here on (appended on resume), headed by the environment and the
    resolved configuration, then the messages said before it was open. ``early`` ends with None
    once the log is open (the trainer's ``log`` then records directly)."""
    console.attach(os.path.join(run_dir, "train.log"))
    console.record(f"case-fast train {run_dir}: " + (f"resumed at step {start}" if start else "new run"))
    console.record("environment: " + describe(env))
    console.record("configuration:\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    for msg in early:
        console.record(msg)
    early[:] = [None]


def _nonfinite_message(step: int, names, values, run_dir: str, checkpointed) -> str:
    bad = [(n, v) for n, v in zip(names, values) if not torch.isfinite(torch.tensor(v))]
    terms = [(n, v) for n, v in bad if n != "loss"] or bad
    kept = (f"the last checkpoint (step {checkpointed}) in {run_dir} is kept" if checkpointed
            else "no checkpoint was written")
    return (f"training diverged at step {step}: loss term " + ", ".join(f"{n} = {v}" for n, v in terms)
            + f"; stopped, {kept} (a lower train.lr or another train.seed may help)")


def train_loop(cfg, run_dir, restart, log, device, train_set, test_set, bank,
                  evaluator, labels_all, state, val_evaluator=None, pg=None, early=None) -> dict:
    tc = cfg.train
    main = pg is None or pg.is_main
    world = 1 if pg is None else pg.world
    last_path = os.path.join(run_dir, "last.pt")

    def settle():
        stale = remove_stale_temps(run_dir, RUN_FILES)
        if stale:
            log(f"removed {len(stale)} temporary file(s) left in {run_dir} by an interrupted write")
        restore_previous(run_dir, log)
    collective(pg, settle if main else None)

    seed_everything(tc.seed)
    model = build_model(cfg)
    draw_initial_weights(model, tc.seed, init_order(model))   # the released draw order, on the CPU
    model = model.to(device)
    streams = RunStreams(tc.seed, len(train_set), tc.batch_size, tc.drop_last)
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
    ck = collective(pg, read_state if main else None)
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
    env = environment(device)
    if main:
        _open_log(run_dir, cfg, env, start, early if early is not None else [])
        save_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), os.path.join(run_dir, "config.yaml"))
    step_model = model
    if pg is not None:
        from torch.nn.parallel import DistributedDataParallel
        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not tc.use_scc)
    tb = TensorBoardLog(run_dir, tc.tensorboard and main, start, lambda m: console.warn(f"warning: {m}"))

    def checkpoint(step: int) -> None:
        if main:
            save_torch({"model": model.state_dict(), "optimizer": optim.state_dict(), "q_c": q_c.cpu(),
                        "step": step, "best": best, "history": history, "config": cfg.to_dict(),
                        "streams": streams.state_dict()},
                       last_path)
            path = os.path.join(run_dir, "metrics.jsonl")
            save_text("".join(dumps_line(h, path) for h in history), path)
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
        warning = never_predicted_warning(summ, step)
        lost = summ.get("never_predicted") or []
        log(f"step {step}: avg mAP {100 * summ['avg']:.2f} "
            f"(@0.5 {100 * summ['map'][min(4, len(summ['map']) - 1)]:.2f}{val_text})"
            + (f"  * selected ({tc.select})" if is_best and tc.select != "test"
               else "  * best" if is_best else "")
            + (f"  [! {len(lost)} never predicted]" if lost else ""))
        if warning and main:   # once per run (the evaluation lines flag it; metrics.jsonl lists them)
            console.warn(warning, key="never predicted")
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
                save_json(results_dict(props, test_set.class_names, cfg.to_dict()),
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
    window = []   # this logging window's losses, one (terms,) vector per step (kept on the device)
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
        # kept to name the step and the term if the window's sums turn out NaN / inf (no host sync)
        window.append(torch.stack(list(parts.values())))   # detached scalars
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
            if not bool(torch.isfinite(vals).all()):   # the same answer on every rank (global sums)
                rows = torch.stack(window).cpu()
                bad = (~torch.isfinite(rows).all(dim=1)).nonzero()
                here = ((done - len(window) + 1 + int(bad[0]), rows[int(bad[0])].tolist()) if len(bad)
                        else (0, []))
                seen = [h for h in (pg.gather_objects(here) if pg is not None else [here]) if h[0] > 0]
                bad_step, bad_vals = min(seen) if seen else (done, [float(v) for v in vals.cpu()])
                msg = _nonfinite_message(bad_step, list(parts), bad_vals, run_dir, state["checkpointed"])
                bar.close()
                if not main:
                    raise dist_mod.RankError(msg)
                console.record(msg)
                raise TrainingDiverged(msg)
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
            window = []
        bar.update(1, postfix)
        if at_checkpoint:   # the logging above read the losses: the device queue is drained
            step_seconds += time.perf_counter() - seg_t0
            run_eval(done)
            checkpoint(done)
            seg_t0 = time.perf_counter()
            bar.restart_clock()   # the bar's rate counts training steps, not evaluations
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
               "world_size": world, "config": cfg.name, "run_dir": run_dir, "steps": tc.num_steps,
               "environment": env}
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
        log(f"\nselected evaluation (train.select={tc.select}) at step {best['step']} "
            f"({time.time() - state['t_begin']:.0f}s) - {run_dir}")
        with open(os.path.join(run_dir, "best_table.txt")) as f:
            log(f.read().rstrip())
    return best

