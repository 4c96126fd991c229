"""``case-fast ablate``: the ablation ladder of the paper (Tables 4-7, and Table 2: CASE on its own
baseline and on AICL) over several seeds.

Rows. Each row of ``ROWS`` is plain data: a label, the paper table it reproduces, the paper's avg
mAP on THUMOS14, and a dict of config overrides (``"section.key": value``) applied on top of the
chosen config (and of any command-line overrides, which the row's own keys win over).

Trained rows and test-time rows. A row with ``"eval_of": NAME`` differs from row NAME only in
``infer.*`` keys (clustering-assisted testing on/off, P^A / P^T / P^M). It is not retrained: the
``best.pt`` of row NAME's run of the same seed is loaded and evaluated on the test set under the
row's inference settings (``Evaluator`` of the trainer, same code path as training-time evaluation).
This halves the cost of Table 4 (rows #3 and #4 share one training) and makes Table 7 nearly free.
Caveat, by construction: ``best.pt`` is the checkpoint whose *P^M* evaluation (the parent row's
inference setting) was best, so a test-time row is measured at a step chosen for P^M, not for
itself. Its number can only be lower than (or equal to) what a run selected on its own setting
would have reached at the same evaluations - the bias works against the P^A / P^T rows. The
table marks such rows with '*'; their summary.json records the parent run it came from. ``--retrain-test-rows`` trains every
row as an independent run with its own best-step selection instead (about twice the cost).

Seeds and parallelism. Every (trained row, seed) is one run in ``OUT/<row>/seed<s>/`` (the
trainer's run directory: config.yaml, metrics.jsonl, best.pt, ...); test-time rows write
``OUT/<row>/seed<s>/summary.json`` (+ best_table.txt, results.json). Runs go to ``--jobs`` worker
processes (multiprocessing, spawn), each with ``torch.set_num_threads(cores // jobs)``. A run whose
``summary.json`` exists (with the same configuration) is skipped, so an interrupted ablation is
resumed by re-running the same command; a half-finished training resumes from its last.pt.

Statistics. Per row: mean and *sample* standard deviation (ddof = 1; undefined for one seed, shown
as "-") over the seeds of the best evaluation's avg mAP (tIoU 0.1:0.7 on THUMOS14-like sets) and
mAP at tIoU 0.3 / 0.5 / 0.7, in percent. Also the mean best step and the mean entropy of the mean
SCC pseudo-labels H(mean Q^S) at the last logged training step (Table 5 reports the same kind of
quantity on predictions; ln K = 2.77 for K = 16 means balanced clusters, ~0 a collapse), and the
paired difference of avg mAP to the first row (per seed, then mean ± sample std), which removes
the seed effect shared by all rows.
Model selection: the "avg mAP" columns are each run's evaluation at its selected step
(``train.select``, default ``test``: the best periodic test evaluation, the paper's protocol).
Every trained run also reports its three test numbers (summary.json "selection"): best on test,
at the val-selected step (needs ``train.val_fraction > 0``; "-" otherwise) and at the last step,
as the columns "best test", "@val", "@last" (means over seeds; sample std in ablation.json).
Written atomically as ``OUT/ablation.json`` and ``OUT/ablation.csv``.

Under torchrun (``torchrun --nproc_per_node N -m case_fast ablate ...``) the runs are spread over
the N processes (run i on rank i mod N, one at a time per rank, each an ordinary single-process
training; on CUDA rank r uses cuda:LOCAL_RANK), the results are gathered and rank 0 writes the
table; --jobs is ignored there.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

from ..config.schema import run_defining
from .ablate_rows import GROUPS, QUICK_OVERRIDES, ROWS, override_list, plan_jobs, select_rows
from .ablate_table import aggregate, format_ablation, format_class_ap, to_csv


def _check_same_config(existing: Optional[dict], cfg_dict: dict, where: str) -> None:
    if existing is not None and run_defining(existing) != run_defining(cfg_dict):
        raise RuntimeError(f"{where} holds a run with a different configuration; remove it or choose "
                           "another --out")


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _last_entropy(run_dir: str) -> Optional[float]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    h = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                e = json.loads(line)
                if "H_mean_QS" in e:
                    h = float(e["H_mean_QS"])
                elif "H_QS" in e:   # a metrics.jsonl without H_mean_QS holds the balance in H_QS
                    h = float(e["H_QS"])
    return h


# ----------------------------------------------------------------------------------------------
# One job: train a row for one seed (unless done), then evaluate its test-time rows.

def _job(job: dict) -> List[dict]:
    """Runs in a worker process (or in-process for --jobs 1). Returns one result per row done."""
    import torch
    import yaml

    from ..config.loading import config_from_dict
    from ..training.trainer import train

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    cfg = config_from_dict(job["config"])
    cfg.train.num_threads = threads
    cfg.train.progress = False
    run_dir = job["run_dir"]
    os.makedirs(run_dir, exist_ok=True)
    results = []
    summary_path = os.path.join(run_dir, "summary.json")
    t0 = time.time()
    if os.path.isfile(summary_path):
        cfg_path = os.path.join(run_dir, "config.yaml")
        if os.path.isfile(cfg_path):
            with open(cfg_path) as f:
                _check_same_config(yaml.safe_load(f), cfg.to_dict(), run_dir)
        skipped = True
    else:   # the run's messages go to its train.log only (the trainer writes it)
        train(cfg, run_dir, log=lambda m: None)
        skipped = False
    summ = _read_json(summary_path)
    results.append({"row": job["row"], "seed": job["seed"], "run_dir": run_dir, "best": summ["best"],
                    "selection": summ.get("selection"),
                    "H_QS": _last_entropy(run_dir), "skipped": skipped,
                    "wall_s": round(time.time() - t0, 1)})
    if job["derived"]:
        results += _derived(job, cfg, threads)
    return results


def _derived(job: dict, parent_cfg, threads: int) -> List[dict]:
    """Evaluate the parent's best.pt under each test-time row's inference settings."""
    from ..config.loading import config_from_dict
    from ..data.load import load_datasets
    from ..evaluation.metric import format_table
    from ..evaluation.results import results_dict
    from ..training.checkpoint import load_checkpoint
    from ..training.periodic_eval import Evaluator, summarize
    from ..files import save_json, save_text

    out, todo = [], []
    parent_best = _read_json(os.path.join(job["run_dir"], "summary.json"))["best"]
    for d in job["derived"]:
        path = os.path.join(d["run_dir"], "summary.json")
        s = _read_json(path) if os.path.isfile(path) else None
        if s is not None and s.get("parent_best") != parent_best:
            s = None    # the parent run changed since (retrained): evaluate again
        if s is not None:
            _check_same_config(s.get("config"), d["config"], d["run_dir"])
            out.append({"row": d["row"], "seed": job["seed"], "run_dir": d["run_dir"], "best": s["best"],
                        "H_QS": _last_entropy(job["run_dir"]), "skipped": True, "wall_s": 0.0})
        else:
            todo.append(d)
    if not todo:
        return out
    ckpt = os.path.join(job["run_dir"], "best.pt")
    from ..runtime import resolve_device
    device = resolve_device(parent_cfg.train.device)
    model, q_c, _, step = load_checkpoint(ckpt, device, with_step=True)
    q_c = None if q_c is None else q_c.to(device)
    step = -1 if step is None else step
    _, test_set = load_datasets(parent_cfg.data, parent_cfg.model.num_classes, parent_cfg.k)
    for d in todo:
        t0 = time.time()
        cfg = config_from_dict(d["config"])
        metrics, props = Evaluator(test_set, cfg, device)(model, q_c)
        best = dict(summarize(metrics), step=step)
        os.makedirs(d["run_dir"], exist_ok=True)
        save_json(results_dict(props, test_set.class_names, d["config"]), os.path.join(d["run_dir"], "results.json"),
                  None)
        save_text(format_table(metrics) + "\n", os.path.join(d["run_dir"], "best_table.txt"))
        save_json({"best": best, "derived_from": ckpt, "parent_best": parent_best, "config": d["config"],
                   "note": "best.pt of the parent run (selected on the parent's inference setting), "
                           "evaluated with this row's inference settings"},
                  os.path.join(d["run_dir"], "summary.json"))
        out.append({"row": d["row"], "seed": job["seed"], "run_dir": d["run_dir"], "best": best,
                    "H_QS": _last_entropy(job["run_dir"]), "skipped": False,
                    "wall_s": round(time.time() - t0, 1)})
    return out


# ----------------------------------------------------------------------------------------------
# Driver.

def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _precheck(plan: Sequence[dict]) -> None:
    """Refuse before starting anything if a finished run in the output folder has another
    configuration (the workers check again)."""
    import yaml

    for j in plan:
        cfg_path = os.path.join(j["run_dir"], "config.yaml")
        if os.path.isfile(os.path.join(j["run_dir"], "summary.json")) and os.path.isfile(cfg_path):
            with open(cfg_path) as f:
                _check_same_config(yaml.safe_load(f), j["config"], j["run_dir"])


def _uses_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch
    return torch.cuda.is_available()


def run_ablation(config: str = "synthetic", rows: Optional[Sequence[str]] = None,
                 seeds: Sequence[int] = (1, 2, 3), out: Optional[str] = None,
                 base_overrides: Sequence[str] = (), jobs: int = 0, quick: bool = False,
                 retrain_test_rows: bool = False, log: Optional[Callable[[str], None]] = None) -> dict:
    """Run (or resume) the ablation; returns the ablation.json content."""

    if log is None:
        from ..console import console
        log = console.show
    names = select_rows(rows)
    if not seeds:
        raise ValueError("no seeds given")
    if out is None:
        out = os.path.join("runs", f"ablate-{os.path.splitext(os.path.basename(config))[0]}"
                           + ("-quick" if quick else ""))
    plan = plan_jobs(names, seeds, config, out, base_overrides, quick, retrain_test_rows)
    _precheck(plan)
    from ..training import distributed
    if distributed.launched():
        return _run_ablation_ranks(plan, names, config, seeds, out, base_overrides, quick,
                                   retrain_test_rows, log)
    cores = available_cores()
    if jobs and jobs > 0:
        n_jobs = int(jobs)
    elif plan and _uses_cuda(plan[0]["config"]["train"]["device"]):
        n_jobs = 1   # one GPU: runs would only queue on it (give --jobs to override)
    else:
        n_jobs = min(cores, len(plan))
    n_jobs = max(1, min(n_jobs, len(plan)))
    threads = max(1, cores // n_jobs)
    for j in plan:
        j["threads"] = threads
    log(f"ablation: rows {', '.join(names)}; seeds {' '.join(map(str, seeds))}; {len(plan)} training "
        f"runs in {out} ({n_jobs} parallel jobs x {threads} threads)")
    t0 = time.time()
    results: List[dict] = []

    def done(res: List[dict], i: int) -> None:
        for r in res:
            status = "cached" if r["skipped"] else f"{r['wall_s']:.0f}s"
            log(f"[{i}/{len(plan)}] {r['row']} seed {r['seed']}: avg mAP {100 * r['best']['avg']:.2f} "
                f"(best step {r['best'].get('step')}, {status})")
        results.extend(res)

    if n_jobs == 1:
        for i, j in enumerate(plan, 1):
            done(_job(j), i)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(_job, j) for j in plan]
            for i, f in enumerate(as_completed(futs), 1):
                done(f.result(), i)
    return _report(names, results, config, seeds, out, base_overrides, quick, retrain_test_rows,
                   n_jobs, threads, time.time() - t0, log)


def _run_ablation_ranks(plan, names, config, seeds, out, base_overrides, quick, retrain_test_rows,
                        log) -> Optional[dict]:
    """The ablation under torchrun: run i on rank i mod world, one at a time; results gathered;
    rank 0 writes and returns the report (the other ranks return None)."""
    from ..training import distributed

    # gloo: only Python objects travel between the ranks; a rank that is done waits for the
    # others' runs at the final gather, hence the long timeout
    with distributed.process_group("cpu", timeout_s=7 * 24 * 3600.0) as pg:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", pg.world))
        threads = max(1, available_cores() // max(1, local_world))
        mine = [j for i, j in enumerate(plan) if i % pg.world == pg.rank]
        if plan and _uses_cuda(plan[0]["config"]["train"]["device"]):
            for j in mine:
                j["config"]["train"]["device"] = f"cuda:{pg.local_rank}"
                for d in j["derived"]:
                    d["config"]["train"]["device"] = f"cuda:{pg.local_rank}"
        if pg.is_main:
            log(f"ablation: rows {', '.join(names)}; seeds {' '.join(map(str, seeds))}; {len(plan)} "
                f"training runs in {out} over {pg.world} processes (torchrun) x {threads} threads")
        t0 = time.time()
        results: List[dict] = []
        error = None
        for j in mine:
            j["threads"] = threads
            try:
                res = _job(j)
            except Exception as e:   # noqa: BLE001 - reported by every rank below
                error = e
                break
            results.extend(res)
        pg.agree(error)
        gathered = pg.gather_objects(results)
        if not pg.is_main:
            return None
        for rank, part in enumerate(gathered):   # rank 0 alone prints, for every rank
            for r in part:
                status = "cached" if r["skipped"] else f"{r['wall_s']:.0f}s"
                log(f"[rank {rank}] {r['row']} seed {r['seed']}: avg mAP "
                    f"{100 * r['best']['avg']:.2f} (step {r['best'].get('step')}, {status})")
        allres = [r for part in gathered for r in part]
        return _report(names, allres, config, seeds, out, base_overrides, quick, retrain_test_rows,
                       pg.world, threads, time.time() - t0, log, world=pg.world)


def _report(names, results, config, seeds, out, base_overrides, quick, retrain_test_rows, n_jobs,
            threads, wall, log, world: int = 1) -> dict:
    from ..files import save_json, save_text

    table = aggregate(names, results)
    report = {
        "config": config, "overrides": list(base_overrides), "quick": bool(quick),
        "quick_overrides": QUICK_OVERRIDES if quick else [],
        "seeds": [int(s) for s in seeds], "rows": table, "out": out,
        "jobs": n_jobs, "threads_per_job": threads, "wall_seconds": round(wall, 1),
        "torchrun_processes": world if world > 1 else None,
        "retrain_test_rows": bool(retrain_test_rows),
        "std": "sample standard deviation over seeds (ddof=1); null for a single seed",
        "units": "mAP in percent",
        "command": "case-fast " + " ".join(sys.argv[1:]) if sys.argv and "case-fast" in sys.argv[0] else None,
    }
    save_json(report, os.path.join(out, "ablation.json"))
    save_text(to_csv(table), os.path.join(out, "ablation.csv"))
    text = format_ablation(table)
    per_class = format_class_ap(table)
    save_text(text + "\n\n" + per_class + "\n", os.path.join(out, "ablation.txt"))
    log("")
    log(text)
    if per_class:
        log("\n" + per_class)
    log(f"\nwall time {wall:.0f}s; wrote {os.path.join(out, 'ablation.json')} and ablation.csv")
    return report


# ----------------------------------------------------------------------------------------------
# Command line (registered by cli.build_parser).

def _rows_help() -> str:
    lines = [f"  {n:<14} {r['table']:<26} {r['label']}"
             + (f"  [test-time: evaluates {r['eval_of']}'s best.pt]" if r.get("eval_of") else "")
             + "\n" + " " * 18 + " ".join(override_list(r))
             for n, r in ROWS.items()]
    groups = "\n".join(f"  {g:<14} {' '.join(v)}" for g, v in GROUPS.items())
    return ("rows (name, paper table, meaning, overrides):\n" + "\n".join(lines)
            + "\n\ngroups:\n" + groups
            + "\n\noutput: OUT/<row>/seed<s>/ (a trainer run directory per trained row and seed; "
              "summary.json only for test-time rows), OUT/ablation.json, OUT/ablation.csv, "
              "OUT/ablation.txt.\nmean ± sample std (ddof=1) over seeds of avg mAP and "
              "mAP@0.3/0.5/0.7 (percent) of each run's best periodic evaluation.")


def add_ablate_parser(sub) -> None:
    import argparse

    a = sub.add_parser(
        "ablate", help="the paper's ablation ladder (Tables 4-7) over several seeds, in parallel",
        description=(__doc__ or "").split("\n\n")[0] + "\n\n" + _rows_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--config", "-c", default="synthetic",
                   help="bundled config name or YAML path (default: %(default)s)")
    a.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="overrides applied to every row (a row's own keys win)")
    a.add_argument("--rows", nargs="+", default=["table4"], metavar="ROW",
                   help="rows and/or groups (table2 table4 table5 table6 table7 all; default table4)")
    a.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="default: 1 2 3")
    a.add_argument("--out", "-o", help="output folder (default runs/ablate-<config>[-quick]); "
                                       "existing finished runs there are reused")
    a.add_argument("--jobs", "-j", type=int, default=0,
                   help="parallel runs (default min(cores, runs) on CPU, 1 on a GPU); each uses "
                        "cores // jobs threads")
    a.add_argument("--quick", action="store_true",
                   help="CI-size runs: " + " ".join(QUICK_OVERRIDES) + " (numbers meaningless)")
    a.add_argument("--retrain-test-rows", action="store_true",
                   help="train test-time rows (P^A / P^T at test) as their own runs with their own "
                        "best-step selection instead of re-evaluating the CASE run's best.pt")
    a.set_defaults(func=cmd_ablate)


def cmd_ablate(args) -> int:
    run_ablation(args.config, args.rows, args.seeds, args.out, args.overrides, args.jobs, args.quick,
                 args.retrain_test_rows)
    return 0
