"""The ablation ladder of ``case-fast ablate`` as data (the rows of the paper's Tables 4-7 and their
groups) and the plan of runs: one job per (trained row, seed), test-time rows riding on their
parent's job (see :mod:`case_fast.experiments.ablate`)."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

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
    # Table 2: CASE on another baseline, AICL as released (baselines/aicl.py; docs/method.md §9).
    # The CASE rows of Table 2 are "baseline" and "case". AICL's own inference settings: its
    # score S (PA), OIC lambda 0.2, the last incomplete batch kept. Paired with "aicl".
    "aicl": {
        "label": "AICL", "table": "2", "paper_avg": 46.4,
        "overrides": {"model.baseline": "aicl", "train.drop_last": False, "train.use_scc": False,
                      "train.use_ccc": False, "infer.use_cat": False, "infer.fg_score": "PA",
                      "infer.oic_lambda": 0.2}},
    "aicl_case": {
        "label": "AICL + CASE", "table": "2", "paper_avg": 48.0, "paired_with": "aicl",
        "overrides": {"model.baseline": "aicl", "train.drop_last": False, "train.use_scc": True,
                      "train.use_ccc": True, "infer.use_cat": True, "infer.fg_score": "PM",
                      "infer.oic_lambda": 0.2}},
}
# the other reading of how AICL + CASE gains P^T: aicl_case's checkpoints with the video scores
# pooled at the top-k of AICL's own S
ROWS["aicl_case_s"] = {
    "label": "AICL + CASE, video scores on S", "table": "2", "paper_avg": None, "paired_with": "aicl",
    "overrides": {**ROWS["aicl_case"]["overrides"], "infer.video_topk_on": "baseline"},
    "eval_of": "aicl_case"}

GROUPS: Dict[str, List[str]] = {
    "table4": ["baseline", "scc", "scc_ccc", "case"],
    "table5": ["scc_noot_soft", "scc_noot_hard", "scc_ot_hard", "case"],
    "table6": ["case", "scc_eq10", "ccc_eq9"],
    "table7": ["scc_ccc", "test_pt", "case"],
    "table2": ["baseline", "case", "aicl", "aicl_case", "aicl_case_s"],
}
GROUPS["all"] = list(ROWS)

# --quick: a CI-size run (seconds per run, numbers meaningless).
QUICK_OVERRIDES = ["train.num_steps=4", "train.eval_every=2", "data.synthetic_videos=20",
                   "data.synthetic_max_len=200", "data.num_segments=64"]


def select_rows(names: Optional[Sequence[str]]) -> List[str]:
    """Row names from names and group names (table2, table4, ..., table7, all), in ROWS order;
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
    from ..config.loading import load_config

    ovs = (QUICK_OVERRIDES if quick else []) + list(base_overrides) + override_list(ROWS[name]) \
        + [f"train.seed={int(seed)}"]
    return load_config(config, ovs)


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
