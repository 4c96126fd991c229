"""Fixtures of the experiments tests: a tiny two-seed ablation (spawned jobs, --quick settings), run
once per session for the ablate and plot tests."""
from __future__ import annotations


import pytest

from case_fast.experiments import ablate


@pytest.fixture(scope="session")
def tiny_ablation(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ablate"))
    report = ablate.run_ablation("synthetic", ["case", "scc_ccc"], seeds=[1, 2], out=out, quick=True,
                                 jobs=2, log=lambda m: None)
    return out, report
