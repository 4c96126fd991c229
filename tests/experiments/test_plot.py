"""case-fast plot: the PNG files of a tiny ablation's run."""
from __future__ import annotations

import os

import pytest

from case_fast.config.loading import load_config


def test_plot_writes_pngs(tiny_ablation, tmp_path):
    pytest.importorskip("matplotlib")
    from case_fast.cli.main import main

    out, _ = tiny_ablation
    run = os.path.join(out, "case", "seed1")
    plots = str(tmp_path / "plots")
    assert main(["plot", run, "--out", plots, "--compare", os.path.join(out, "case", "seed2")]) == 0
    names = sorted(os.listdir(plots))
    assert "training_curves.png" in names and "clusters.png" in names
    videos = [n for n in names if n.startswith("video_")]
    assert len(videos) == 2
    for n in names:
        with open(os.path.join(plots, n), "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(os.path.join(plots, n)) > 10_000


def test_plot_chosen_video_and_window(tiny_ablation, tmp_path):
    pytest.importorskip("matplotlib")
    from case_fast.experiments import plot

    out, _ = tiny_ablation
    run = os.path.join(out, "case", "seed1")
    cfg = load_config(os.path.join(run, "config.yaml"))
    from case_fast.data.load import load_datasets
    _, test = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    name = test.videos[3]
    paths = plot.plot_run(run, videos=[name], what=("videos",), out_dir=str(tmp_path), window=(0, 30))
    assert [os.path.basename(p) for p in paths] == [f"video_{name}.png"]
    with pytest.raises(ValueError, match="not in the test split"):
        plot.plot_run(run, videos=["no_such_video"], what=("videos",), out_dir=str(tmp_path))
