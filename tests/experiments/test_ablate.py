"""case-fast ablate: row definitions, statistics, a tiny two-seed ablation (spawned jobs, resume)."""
from __future__ import annotations

import csv
import json
import math
import os

import pytest
import yaml

from case_fast.experiments import ablate, ablate_rows, ablate_table
from case_fast.config.loading import load_config


def test_every_row_is_a_valid_config():
    for name, row in ablate_rows.ROWS.items():
        assert set(row) <= {"label", "table", "paper_avg", "overrides", "eval_of", "paired_with"}, name
        assert row.get("paired_with") in (None, *ablate_rows.ROWS), name
        cfg = ablate_rows.row_config("synthetic", name, seed=2)
        assert cfg.train.seed == 2
        # the overrides are plain data and load_config accepts them as strings too
        cfg2 = load_config("synthetic", ablate_rows.override_list(row))
        for key, value in row["overrides"].items():
            sec, field = key.split(".")
            assert getattr(getattr(cfg, sec), field) == value, (name, key)
            assert getattr(getattr(cfg2, sec), field) == value, (name, key)
        if row.get("eval_of"):
            assert row["eval_of"] in ablate_rows.ROWS and not ablate_rows.ROWS[row["eval_of"]].get("eval_of")
    # test-time rows differ from their parent in infer.* only (plan_jobs checks and raises)
    jobs = ablate_rows.plan_jobs(ablate_rows.select_rows(["all"]), [1], "synthetic", "/nonexistent")
    assert sorted(j["row"] for j in jobs) == sorted(n for n, r in ablate_rows.ROWS.items() if not r.get("eval_of"))
    case = next(j for j in jobs if j["row"] == "case")
    assert sorted(d["row"] for d in case["derived"]) == ["scc_ccc", "test_pt"]
    # --retrain-test-rows: every row is its own training
    jobs = ablate_rows.plan_jobs(["scc_ccc"], [1, 2], "synthetic", "/x", retrain_test_rows=True)
    assert [(j["row"], j["seed"]) for j in jobs] == [("scc_ccc", 1), ("scc_ccc", 2)]


def test_table4_semantics():
    base = ablate_rows.row_config("synthetic", "baseline")
    assert not base.train.use_scc and not base.train.use_ccc and not base.infer.use_cat
    scc = ablate_rows.row_config("synthetic", "scc")
    assert scc.train.use_scc and not scc.train.use_ccc and not scc.infer.use_cat
    full = ablate_rows.row_config("synthetic", "case")
    assert full.train.use_scc and full.train.use_ccc and full.infer.use_cat and full.infer.fg_score == "PM"
    assert ablate_rows.row_config("synthetic", "scc_ccc").infer.use_cat is False
    assert ablate_rows.row_config("synthetic", "test_pt").infer.fg_score == "PT"


def test_select_rows():
    assert ablate_rows.select_rows(None) == ["baseline", "scc", "scc_ccc", "case"]
    assert ablate_rows.select_rows(["case", "table6"]) == ["case", "scc_eq10", "ccc_eq9"]
    with pytest.raises(ValueError, match="unknown ablation row"):
        ablate_rows.select_rows(["nope"])


def test_table2_rows_and_their_paired_differences():
    assert ablate_rows.select_rows(["table2"]) == ["baseline", "case", "aicl", "aicl_case",
                                                   "aicl_case_s"]
    s_topk = ablate_rows.row_config("synthetic", "aicl_case_s")
    assert s_topk.infer.video_topk_on == "baseline" and s_topk.infer.fg_score == "PM"
    a, ac = ablate_rows.row_config("synthetic", "aicl"), ablate_rows.row_config("synthetic", "aicl_case")
    assert a.model.baseline == ac.model.baseline == "aicl" and not a.train.drop_last
    assert not a.train.use_scc and not a.infer.use_cat and a.oic_lambda() == 0.2
    assert ac.train.use_scc and ac.train.use_ccc and ac.infer.use_cat and ac.infer.fg_score == "PM"
    tiou = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    avgs = {"baseline": (0.30, 0.20), "case": (0.33, 0.24), "aicl": (0.40, 0.30), "aicl_case": (0.41, 0.35)}
    res = [{"row": r, "seed": s, "run_dir": f"{r}{s}",
            "best": {"avg": v[s - 1], "map": [v[s - 1]] * 7, "tiou": tiou, "step": 10}}
           for r, v in avgs.items() for s in (1, 2)]
    table = {t["row"]: t for t in ablate_table.aggregate(ablate_rows.select_rows(["table2"]), res)}
    assert table["case"]["delta_avg_vs"] == "baseline"
    assert table["case"]["delta_avg_mean"] == pytest.approx(3.5)          # (3 + 4) / 2, percent
    assert table["aicl_case"]["delta_avg_vs"] == "aicl"
    assert table["aicl_case"]["delta_avg_mean"] == pytest.approx(3.0)     # (1 + 5) / 2
    assert table["aicl_case"]["delta_avg_std"] == pytest.approx(math.sqrt(8))
    assert "[d vs aicl]" in ablate_table.format_ablation(list(table.values()))


def test_mean_std_and_aggregate():
    m, s = ablate_table.mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3)
    assert s == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert ablate_table.mean_std([3.0]) == (3.0, None)
    tiou = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    res = [{"row": "case", "seed": s, "run_dir": f"r{s}", "H_QS": 2.7,
            "best": {"avg": a, "map": [a + 0.01 * i for i in range(7)], "tiou": tiou, "step": 100 * s}}
           for s, a in ((1, 0.30), (2, 0.34), (3, 0.32))]
    (row,) = ablate_table.aggregate(["case"], res)
    assert row["n"] == 3 and row["seeds"] == [1, 2, 3]
    assert row["mean"]["avg"] == pytest.approx(32.0)
    assert row["std"]["avg"] == pytest.approx(2.0)
    assert row["mean"]["map@0.5"] == pytest.approx(36.0)      # avg + 0.04, in percent
    assert row["best_step_mean"] == pytest.approx(200)
    text = ablate_table.format_ablation([row])
    assert "32.00 ±  2.00" in text
    lines = ablate_table.to_csv([row]).strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("row,label,table,paper_avg,n,seeds")


def test_tiny_ablation_outputs(tiny_ablation):
    out, report = tiny_ablation
    assert [r["row"] for r in report["rows"]] == ["scc_ccc", "case"]
    with open(os.path.join(out, "ablation.json")) as f:
        saved = json.load(f)
    assert saved["seeds"] == [1, 2] and saved["quick"] is True
    for row in saved["rows"]:
        assert row["n"] == 2 and [r["seed"] for r in row["runs"]] == [1, 2]
        avgs = [r["avg"] for r in row["runs"]]
        m, s = ablate_table.mean_std(avgs)
        assert row["mean"]["avg"] == pytest.approx(m)
        assert row["std"]["avg"] == pytest.approx(s)
        assert set(row["mean"]) == {"avg", "map@0.3", "map@0.5", "map@0.7"}
        for r in row["runs"]:
            assert 0.0 <= r["avg"] <= 100.0
            # per-class AP of each seed (the seed-collapse diagnostic); its mean is the avg mAP
            assert len(r["class_ap"]) == 20
            assert sum(r["class_ap"].values()) / 20 == pytest.approx(r["avg"], abs=1e-3)
            assert set(r["never_predicted"]) <= set(r["class_ap"])
    with open(os.path.join(out, "ablation.txt")) as f:
        text = f.read()
    assert "AP per class" in text and "BaseballPitch"[:6] in text
    with open(os.path.join(out, "ablation.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["scc_ccc", "case"]
    assert float(rows[1]["avg_mean"]) == pytest.approx(saved["rows"][1]["mean"]["avg"], abs=1e-3)
    # trained row: a full trainer run dir; test-time row: summary of the re-evaluated best.pt
    for s in (1, 2):
        assert os.path.isfile(os.path.join(out, "case", f"seed{s}", "best.pt"))
        with open(os.path.join(out, "scc_ccc", f"seed{s}", "summary.json")) as f:
            summ = json.load(f)
        with open(os.path.join(out, "case", f"seed{s}", "summary.json")) as f:
            parent = json.load(f)
        assert summ["best"]["step"] == parent["best"]["step"]
        assert summ["derived_from"].endswith(os.path.join("case", f"seed{s}", "best.pt"))
    # resume: everything is cached, same numbers
    again = ablate.run_ablation("synthetic", ["case", "scc_ccc"], seeds=[1, 2], out=out, quick=True,
                                jobs=1, log=lambda m: None)
    assert again["rows"] == report["rows"]
    # a run folder written before model.baseline and train.drop_last existed ran with their
    # defaults: it is the same run and is reused
    for s in (1, 2):
        path = os.path.join(out, "case", f"seed{s}", "config.yaml")
        with open(path) as f:
            old = yaml.safe_load(f)
        del old["model"]["baseline"], old["train"]["drop_last"]
        with open(path, "w") as f:
            yaml.safe_dump(old, f)
    again = ablate.run_ablation("synthetic", ["case", "scc_ccc"], seeds=[1, 2], out=out, quick=True,
                                jobs=1, log=lambda m: None)
    assert again["rows"] == report["rows"]
    # a different configuration in the same folder is refused
    with pytest.raises(RuntimeError, match="different configuration"):
        ablate.run_ablation("synthetic", ["case"], seeds=[1], out=out, quick=True, jobs=1,
                            base_overrides=["train.lr=0.001"], log=lambda m: None)
