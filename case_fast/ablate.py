"""``case-fast ablate``: the ablation ladder of the paper (Tables 4-7) over several seeds.

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
import math
import os
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

# ----------------------------------------------------------------------------------------------
# The rows (plain data).

ROWS: Dict[str, dict] = {
    # Table 4: core components.
    "baseline": {
        "label": "Baseline", "table": "4#1", "paper_avg": 42.1,
        "overrides": {"train.use_scc": False, "train.use_ccc": False,
                      "infer.use_cat": False, "infer.fg_score": "PA"}},
    "scc": {
        "label": "+ SCC", "table": "4#2", "paper_avg": 43.2,
        "overrides": {"train.use_scc": True, "train.use_ccc": False,
                      "infer.use_cat": False, "infer.fg_score": "PA"}},
    "scc_ccc": {
        "label": "+ SCC + CCC (P^A at test)", "table": "4#3, 7:PA", "paper_avg": 43.9,
        "overrides": {"train.use_scc": True, "train.use_ccc": True,
                      "infer.use_cat": False, "infer.fg_score": "PA"},
        "eval_of": "case"},
    "case": {
        "label": "+ SCC + CCC (T) = CASE", "table": "4#4, 5:OT-soft, 6#1, 7:PM", "paper_avg": 46.2,
        "overrides": {"train.use_scc": True, "train.use_ccc": True,
                      "infer.use_cat": True, "infer.fg_score": "PM"}},
    # Table 5: labelling strategy of SCC (the full method otherwise).
    "scc_noot_soft": {
        "label": "SCC labels w/o OT, soft", "table": "5", "paper_avg": 41.2,
        "overrides": {"train.scc_labels": "soft"}},
    "scc_noot_hard": {
        "label": "SCC labels w/o OT, hard", "table": "5", "paper_avg": 40.8,
        "overrides": {"train.scc_labels": "hard"}},
    "scc_ot_hard": {
        "label": "SCC labels w/ OT, hard", "table": "5", "paper_avg": 44.7,
        "overrides": {"train.scc_labels": "ot_hard"}},
    # Table 6: prior in SCC, empirical marginal in CCC.
    "scc_eq10": {
        "label": "Eq. 10 (no prior) in SCC", "table": "6#2", "paper_avg": 45.4,
        "overrides": {"train.scc_prior": False}},
    "ccc_eq9": {
        "label": "Eq. 9 (equipartition beta) in CCC", "table": "6#3", "paper_avg": 44.0,
        "overrides": {"train.ccc_marginal": "uniform"}},
    # Table 7: foreground score at test (P^A = row scc_ccc, P^M = row case).
    "test_pt": {
        "label": "P^T at test", "table": "7:PT", "paper_avg": 44.1,
        "overrides": {"train.use_scc": True, "train.use_ccc": True,
                      "infer.use_cat": True, "infer.fg_score": "PT"},
        "eval_of": "case"},
}

GROUPS: Dict[str, List[str]] = {
    "table4": ["baseline", "scc", "scc_ccc", "case"],
    "table5": ["scc_noot_soft", "scc_noot_hard", "scc_ot_hard", "case"],
    "table6": ["case", "scc_eq10", "ccc_eq9"],
    "table7": ["scc_ccc", "test_pt", "case"],
}
GROUPS["all"] = list(ROWS)

# --quick: a CI-size run (seconds per run, numbers meaningless).
QUICK_OVERRIDES = ["train.num_steps=4", "train.eval_every=2", "data.synthetic_videos=20",
                   "data.synthetic_max_len=200", "data.num_segments=64"]

REPORT_TIOU = (0.3, 0.5, 0.7)
# configuration keys that do not change a run's result (not compared when resuming)
_VOLATILE = {"train": ("progress", "num_threads", "device", "backend", "tensorboard", "world_size")}


def select_rows(names: Optional[Sequence[str]]) -> List[str]:
    """Row names from names and group names (table4, table5, table6, table7, all), in ROWS order;
    default table4."""
    names = list(names or ["table4"])
    chosen = set()
    for n in names:
        if n in GROUPS:
            chosen.update(GROUPS[n])
        elif n in ROWS:
            chosen.add(n)
        else:
            raise ValueError(f"unknown ablation row {n!r}; rows: {', '.join(ROWS)}; "
                             f"groups: {', '.join(GROUPS)}")
    return [n for n in ROWS if n in chosen]


def override_list(row: dict) -> List[str]:
    """A row's overrides as 'section.key=value' strings (values JSON/YAML-encoded)."""
    out = []
    for k, v in row["overrides"].items():
        out.append(f"{k}={json.dumps(v) if not isinstance(v, str) else v}")
    return out


def row_config(config: str, name: str, base_overrides: Sequence[str] = (), seed: int = 1,
               quick: bool = False):
    """The resolved Config of one row and seed: config file, --quick, user overrides, row
    overrides, seed (later wins)."""
    from .config import load_config

    ovs = (QUICK_OVERRIDES if quick else []) + list(base_overrides) + override_list(ROWS[name]) \
        + [f"train.seed={int(seed)}"]
    return load_config(config, ovs)


def _comparable(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    for sec, keys in _VOLATILE.items():
        for k in keys:
            d.get(sec, {}).pop(k, None)
    d.pop("name", None)
    return d


def _check_same_config(existing: Optional[dict], cfg_dict: dict, where: str) -> None:
    if existing is not None and _comparable(existing) != _comparable(cfg_dict):
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
                elif "H_QS" in e:   # older logs stored the balance under H_QS
                    h = float(e["H_QS"])
    return h


# ----------------------------------------------------------------------------------------------
# One job: train a row for one seed (unless done), then evaluate its test-time rows.

def _job(job: dict) -> List[dict]:
    """Runs in a worker process (or in-process for --jobs 1). Returns one result per row done."""
    import contextlib

    import torch
    import yaml

    from .config import config_from_dict
    from .trainer import train

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
    else:
        with open(os.path.join(run_dir, "train.log"), "a") as logf, contextlib.redirect_stdout(logf):
            train(cfg, run_dir, log=lambda m: print(m, flush=True))
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
    import torch

    from .config import config_from_dict
    from .data import load_datasets
    from .evaluation import format_table
    from .inference import to_results_dict
    from .trainer import Evaluator, _summary, load_checkpoint
    from .utils import save_json, save_text

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
    from .utils import resolve_device
    device = resolve_device(parent_cfg.train.device)
    model, q_c, _ = load_checkpoint(ckpt, device)
    q_c = None if q_c is None else q_c.to(device)
    step = int(torch.load(ckpt, map_location="cpu", weights_only=False).get("step", -1))
    _, test_set = load_datasets(parent_cfg.data, parent_cfg.model.num_classes, parent_cfg.k)
    for d in todo:
        t0 = time.time()
        cfg = config_from_dict(d["config"])
        metrics, props = Evaluator(test_set, cfg, device)(model, q_c)
        best = dict(_summary(metrics), step=step)
        os.makedirs(d["run_dir"], exist_ok=True)
        save_json(to_results_dict(props, test_set.class_names), os.path.join(d["run_dir"], "results.json"), None)
        save_text(format_table(metrics) + "\n", os.path.join(d["run_dir"], "best_table.txt"))
        save_json({"best": best, "derived_from": ckpt, "parent_best": parent_best, "config": d["config"],
                   "note": "best.pt of the parent run (selected on the parent's inference setting), "
                           "evaluated with this row's inference settings"},
                  os.path.join(d["run_dir"], "summary.json"))
        out.append({"row": d["row"], "seed": job["seed"], "run_dir": d["run_dir"], "best": best,
                    "H_QS": _last_entropy(job["run_dir"]), "skipped": False,
                    "wall_s": round(time.time() - t0, 1)})
    return out


def plan_jobs(rows: Sequence[str], seeds: Sequence[int], config: str, out: str,
              base_overrides: Sequence[str] = (), quick: bool = False,
              retrain_test_rows: bool = False) -> List[dict]:
    """One job per (trained row, seed); test-time rows ride along with their parent's job.
    A parent that is not itself selected is trained (needed for its checkpoint) but not reported."""
    trained: List[str] = []
    derived: Dict[str, List[str]] = {}
    for r in rows:
        parent = None if retrain_test_rows else ROWS[r].get("eval_of")
        if parent is None:
            if r not in trained:
                trained.append(r)
        else:
            if parent not in trained:
                trained.append(parent)
            derived.setdefault(parent, []).append(r)
    jobs = []
    for seed in seeds:
        for r in trained:
            cfg = row_config(config, r, base_overrides, seed, quick)
            ders = []
            for d in derived.get(r, []):
                dcfg = row_config(config, d, base_overrides, seed, quick)
                pa, da = cfg.to_dict(), dcfg.to_dict()
                for sec in ("data", "model", "train"):
                    if pa[sec] != da[sec]:
                        diff = sorted(k for k in pa[sec] if pa[sec][k] != da[sec].get(k))
                        raise ValueError(f"row {d!r} is evaluated on row {r!r}'s checkpoint but differs "
                                         f"from it in {sec}.{diff}: only infer.* may differ")
                ders.append({"row": d, "config": da, "run_dir": os.path.join(out, d, f"seed{seed}")})
            jobs.append({"row": r, "seed": int(seed), "config": cfg.to_dict(), "threads": 1,
                         "run_dir": os.path.join(out, r, f"seed{seed}"), "derived": ders})
    return jobs


# ----------------------------------------------------------------------------------------------
# Statistics and the table.

def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof = 1); std is None for fewer than two values."""
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _map_at(best: dict, tiou: float) -> float:
    for t, v in zip(best.get("tiou", []), best.get("map", [])):
        if abs(float(t) - tiou) < 1e-6:
            return float(v)
    return float("nan")


METRIC_KEYS = ("avg",) + tuple(f"map@{t}" for t in REPORT_TIOU)
# the three test numbers of summary.json "selection" (avg mAP, percent)
SELECTION_KEYS = ("test_best", "test_at_val", "test_at_last")


def selection_metrics(selection: Optional[dict]) -> Dict[str, Optional[float]]:
    """Percent avg mAP of each selection (None where the run has none: no val hold-out, test-time row)."""
    sel = selection or {}
    return {k: (100.0 * float(sel[k]["avg"]) if sel.get(k) else None) for k in SELECTION_KEYS}


def run_metrics(best: dict) -> Dict[str, float]:
    """Percent: avg and mAP@0.3/0.5/0.7 of one run's best evaluation."""
    m = {"avg": 100.0 * float(best["avg"])}
    for t in REPORT_TIOU:
        m[f"map@{t}"] = 100.0 * _map_at(best, t)
    return m


def aggregate(rows: Sequence[str], results: Iterable[dict]) -> List[dict]:
    """Per-row records: runs (per seed), mean and sample std of each metric (percent)."""
    by_row: Dict[str, List[dict]] = {r: [] for r in rows}
    for res in results:
        if res["row"] in by_row:
            by_row[res["row"]].append(res)
    table = []
    for r in rows:
        runs = sorted(by_row[r], key=lambda x: x["seed"])
        per = [run_metrics(x["best"]) for x in runs]
        mean, std = {}, {}
        for key in METRIC_KEYS:
            mean[key], std[key] = mean_std([p[key] for p in per])
        sels = [selection_metrics(x.get("selection")) for x in runs]
        sel_mean, sel_std = {}, {}
        for key in SELECTION_KEYS:
            vals = [p[key] for p in sels if p[key] is not None]
            sel_mean[key], sel_std[key] = mean_std(vals) if vals else (None, None)
        steps = [x["best"].get("step") for x in runs if x["best"].get("step") is not None]
        hs = [x["H_QS"] for x in runs if x.get("H_QS") is not None]
        row = ROWS[r]
        table.append({
            "row": r, "label": row["label"], "table": row["table"], "paper_avg": row["paper_avg"],
            "overrides": dict(row["overrides"]), "eval_of": row.get("eval_of"),
            "n": len(runs), "seeds": [x["seed"] for x in runs],
            "runs": [dict(seed=x["seed"], run_dir=x["run_dir"], step=x["best"].get("step"),
                          class_ap={c: 100.0 * a for c, a in (x["best"].get("class_ap") or {}).items()},
                          never_predicted=list(x["best"].get("never_predicted") or []),
                          selection=sp, **p)
                     for x, p, sp in zip(runs, per, sels)],
            "mean": mean, "std": std, "selection_mean": sel_mean, "selection_std": sel_std,
            "best_step_mean": (sum(steps) / len(steps)) if steps else None,
            "H_QS_mean": (sum(hs) / len(hs)) if hs else None,
        })
    # paired difference to the first row (same seeds): the seed effect is shared by all rows
    if table:
        ref = {r["seed"]: r["avg"] for r in table[0]["runs"]}
        for row in table:
            diffs = [r["avg"] - ref[r["seed"]] for r in row["runs"] if r["seed"] in ref]
            m, s = mean_std(diffs)
            row["delta_avg_vs"] = table[0]["row"]
            row["delta_avg_mean"], row["delta_avg_std"] = (m, s) if diffs else (None, None)
    return table


def _pm(m: float, s: Optional[float]) -> str:
    if m != m:  # nan
        return "-"
    return f"{m:5.2f} ± {s:5.2f}" if s is not None else f"{m:5.2f} ±     -"


def format_ablation(table: Sequence[dict], derived_note: bool = True) -> str:
    head = (f"{'row':<14} {'paper table':<26} {'paper':>5}  {'n':>1}  {'avg mAP':>13}  {'mAP@0.3':>13}  "
            f"{'mAP@0.5':>13}  {'mAP@0.7':>13}  {'step':>5}  {'H(Q^S)':>6}  {'paired d avg':>13}  "
            f"{'best test':>9}  {'@val':>6}  {'@last':>6}")
    lines = [head, "-" * len(head)]
    for t in table:
        step = f"{t['best_step_mean']:5.0f}" if t["best_step_mean"] is not None else "    -"
        h = f"{t['H_QS_mean']:6.2f}" if t["H_QS_mean"] is not None else "     -"
        name = t["row"] + ("*" if t.get("eval_of") and derived_note else "")
        lines.append(f"{name:<14} {t['table']:<26} {t['paper_avg']:5.1f}  {t['n']:>1}  "
                     + "  ".join(f"{_pm(t['mean'][k], t['std'][k]):>13}" for k in METRIC_KEYS)
                     + f"  {step}  {h}  "
                     + (f"{_pm(t['delta_avg_mean'], t['delta_avg_std']):>13}"
                        if t.get("delta_avg_mean") is not None else f"{'-':>13}")
                     + "  " + "  ".join(_opt(t.get("selection_mean", {}).get(k), w)
                                        for k, w in zip(SELECTION_KEYS, (9, 6, 6))))
    lines.append("mean ± sample std (ddof=1) over seeds, mAP in %; 'paper' = THUMOS14 avg mAP of the "
                 "paper; step = mean best step; H(Q^S) = entropy of the mean SCC pseudo-labels at "
                 "the last logged training step; paired d avg = per-seed difference of avg mAP to the first row, "
                 "mean ± sample std; avg mAP columns at each run's selected step (train.select); best test / "
                 "@val / @last = mean test avg mAP at the best test evaluation (the paper's protocol, "
                 "optimistic), at the val-selected step (needs train.val_fraction > 0) and at the last step")
    if derived_note and any(t.get("eval_of") for t in table):
        lines.append("* test-time row: the parent row's best.pt (selected on the parent's inference "
                     "setting) evaluated with this row's inference settings, no retraining")
    return "\n".join(lines)


def _opt(v: Optional[float], width: int) -> str:
    return f"{v:{width}.2f}" if v is not None else f"{'-':>{width}}"


def format_class_ap(table: Sequence[dict], low: float = 1.0) -> str:
    """Per row, the AP of every class (mean over tIoU, %) of each seed's best evaluation: a class
    lost by one seed (seed collapse) shows as a column near 0 in that seed's line only. Classes
    marked '!' in a line got no detection at all; '<low' counts classes under ``low`` %."""
    names = []
    for t in table:
        for r in t["runs"]:
            names += [c for c in r.get("class_ap", {}) if c not in names]
    if not names:
        return ""
    short = [c[:6] for c in names]
    head = f"{'row':<14} {'seed':>4}  " + " ".join(f"{c:>6}" for c in short) + f"  {'<' + str(low):>5}"
    lines = ["AP per class (mean over tIoU, %) of each seed's best evaluation; '!' = never predicted",
             head, "-" * len(head)]
    for t in table:
        for r in t["runs"]:
            ap = r.get("class_ap", {})
            cells = []
            for c in names:
                v = ap.get(c)
                mark = "!" if c in r.get("never_predicted", []) else " "
                cells.append(f"{'-':>5}{mark}" if v is None else f"{v:5.1f}{mark}")
            n_low = sum(1 for c in names if c in ap and ap[c] < low)
            lines.append(f"{t['row']:<14} {r['seed']:>4}  " + " ".join(cells) + f"  {n_low:>5}")
    return "\n".join(lines)


def to_csv(table: Sequence[dict]) -> str:
    cols = ["row", "label", "table", "paper_avg", "n", "seeds", "eval_of"]
    for k in METRIC_KEYS:
        cols += [f"{k}_mean", f"{k}_std"]
    cols += ["best_step_mean", "H_QS_mean", "delta_avg_mean", "delta_avg_std"]
    for k in SELECTION_KEYS:
        cols += [f"{k}_mean", f"{k}_std"]
    lines = [",".join(cols)]

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if v != v else f"{v:.4f}"
        s = str(v)
        return f'"{s}"' if ("," in s or '"' in s) else s

    for t in table:
        vals = [t["row"], t["label"], t["table"], t["paper_avg"], t["n"],
                " ".join(str(s) for s in t["seeds"]), t.get("eval_of")]
        for k in METRIC_KEYS:
            vals += [t["mean"][k], t["std"][k]]
        vals += [t["best_step_mean"], t["H_QS_mean"], t.get("delta_avg_mean"), t.get("delta_avg_std")]
        for k in SELECTION_KEYS:
            vals += [t.get("selection_mean", {}).get(k), t.get("selection_std", {}).get(k)]
        lines.append(",".join(cell(v) for v in vals))
    return "\n".join(lines) + "\n"


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
        def log(msg: str) -> None:
            print(msg, flush=True)
    names = select_rows(rows)
    if not seeds:
        raise ValueError("no seeds given")
    if out is None:
        out = os.path.join("runs", f"ablate-{os.path.splitext(os.path.basename(config))[0]}"
                           + ("-quick" if quick else ""))
    plan = plan_jobs(names, seeds, config, out, base_overrides, quick, retrain_test_rows)
    _precheck(plan)
    from . import distributed
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
    from . import distributed

    # gloo: only Python objects travel between the ranks; a rank that is done waits for the
    # others' runs at the final gather, hence the long timeout
    pg = distributed.init("cpu", timeout_s=7 * 24 * 3600.0)
    try:
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
            for r in res:
                status = "cached" if r["skipped"] else f"{r['wall_s']:.0f}s"
                print(f"[rank {pg.rank}] {r['row']} seed {r['seed']}: avg mAP "
                      f"{100 * r['best']['avg']:.2f} (step {r['best'].get('step')}, {status})", flush=True)
            results.extend(res)
        pg.agree(error)
        gathered = pg.gather_objects(results)
        if not pg.is_main:
            return None
        allres = [r for part in gathered for r in part]
        return _report(names, allres, config, seeds, out, base_overrides, quick, retrain_test_rows,
                       pg.world, threads, time.time() - t0, log, world=pg.world)
    finally:
        distributed.shutdown()


def _report(names, results, config, seeds, out, base_overrides, quick, retrain_test_rows, n_jobs,
            threads, wall, log, world: int = 1) -> dict:
    from .utils import save_json, save_text

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
                   help="rows and/or groups (table4 table5 table6 table7 all; default table4)")
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
