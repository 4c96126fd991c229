"""Statistics and tables of ``case-fast ablate``: per row the mean and sample std over seeds, the
paired difference to the first row, the three selected test numbers, the text table, the per-class AP
table and the CSV."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .ablate_rows import ROWS

REPORT_TIOU = (0.3, 0.5, 0.7)


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
    # paired difference (same seeds) to the first row, or to the row a row names as its
    # "paired_with" when that row is in the table: the seed effect is shared by the two rows
    by_name = {t["row"]: t for t in table}
    if table:
        for row in table:
            other = by_name.get(ROWS[row["row"]].get("paired_with"), table[0])
            ref = {r["seed"]: r["avg"] for r in other["runs"]}
            diffs = [r["avg"] - ref[r["seed"]] for r in row["runs"] if r["seed"] in ref]
            m, s = mean_std(diffs)
            row["delta_avg_vs"] = other["row"]
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
        paper = f"{t['paper_avg']:5.1f}" if t["paper_avg"] is not None else f"{'-':>5}"
        lines.append(f"{name:<14} {t['table']:<26} {paper}  {t['n']:>1}  "
                     + "  ".join(f"{_pm(t['mean'][k], t['std'][k]):>13}" for k in METRIC_KEYS)
                     + f"  {step}  {h}  "
                     + (f"{_pm(t['delta_avg_mean'], t['delta_avg_std']):>13}"
                        if t.get("delta_avg_mean") is not None else f"{'-':>13}")
                     + "  " + "  ".join(_opt(t.get("selection_mean", {}).get(k), w)
                                        for k, w in zip(SELECTION_KEYS, (9, 6, 6)))
                     + (f"  [d vs {t['delta_avg_vs']}]"
                        if t.get("delta_avg_vs") not in (None, table[0]["row"]) else ""))
    lines.append("mean ± sample std (ddof=1) over seeds, mAP in %; 'paper' = THUMOS14 avg mAP of the "
                 "paper; step = mean best step; H(Q^S) = entropy of the mean SCC pseudo-labels at "
                 "the last logged training step; paired d avg = per-seed difference of avg mAP to the first row "
                 "(to the row named in [d vs ...] where one is), "
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
