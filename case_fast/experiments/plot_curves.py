"""``training_curves.png`` of ``case-fast plot`` (paper Fig. 4), from a run's metrics.jsonl: the loss
terms, avg mAP and mAP@0.5 per evaluation, the entropies of the pseudo-labels and the number of
foreground clusters; other runs overlaid with ``--compare`` (see :mod:`case_fast.experiments.plot`).
Also the matplotlib set-up and the PNG writer of every figure."""
from __future__ import annotations

import json
import math
import os
from typing import List, Optional, Sequence

import numpy as np


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("case-fast plot needs matplotlib: pip install 'case-fast[plot]' "
                           "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class MissingExtra(RuntimeError):
    """An optional dependency a command needs is not installed (the message names the install)."""


def save_figure(fig, out_path: str) -> None:
    """The PNG, written like every file of the package (atomic, the umask's mode)."""
    from ..files import atomic_path
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def read_metrics(run_dir: str) -> List[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_name(run_dir: str) -> str:
    """The last two path components (ablation runs are <row>/seed<s>)."""
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    return "/".join(parts[-2:])


def _run_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return {}
    import yaml
    with open(path) as f:
        return yaml.safe_load(f) or {}


def plot_training_curves(run_dir: str, out_path: str, compare: Sequence[str] = (),
                         num_clusters: Optional[int] = None) -> str:
    plt = pyplot()
    from matplotlib.lines import Line2D

    dirs = [run_dir] + list(compare)
    runs = [(run_name(d), read_metrics(d), _run_config(d).get("train", {})) for d in dirs]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_loss, ax_map), (ax_ent, ax_fg) = axes
    styles = ["-", "--", ":", "-."]
    colors = {"video": "tab:blue", "att": "tab:orange", "scc": "tab:green", "ccc": "tab:red"}
    labels = {"video": "L_V video", "att": "L_A attention (rgb+flow)",
              "scc": "L_S SCC (rgb+flow)", "ccc": "L_C CCC (rgb+flow)"}
    for i, (name, hist, tcfg) in enumerate(runs):
        ls = styles[i % len(styles)]

        def lab(text):  # quantities are labelled once (first run); runs by line style
            return text if i == 0 else None

        steps = [h for h in hist if "loss" in h]
        x = [h["step"] for h in steps]
        if steps:
            series = {"video": [h.get("video", np.nan) for h in steps],
                      "att": [h.get("att_rgb", np.nan) + h.get("att_flow", np.nan) for h in steps],
                      "scc": [h.get("scc", np.nan) for h in steps],
                      "ccc": [h.get("ccc", np.nan) for h in steps]}
            for key, ys in series.items():
                if key == "scc" and tcfg.get("use_scc") is False:
                    continue
                if key == "ccc" and (tcfg.get("use_ccc") is False or tcfg.get("use_scc") is False):
                    continue
                ax_loss.plot(x, ys, ls, color=colors[key], label=lab(labels[key]), lw=1.3)
        evals = [h for h in hist if "eval" in h]
        if evals:
            ex = [h["step"] for h in evals]
            ax_map.plot(ex, [100 * h["eval"]["avg"] for h in evals], ls, marker="o", ms=3,
                        color="tab:purple", label=lab("avg mAP"))
            m5 = []
            for h in evals:
                t = h["eval"].get("tiou", [])
                j = next((j for j, v in enumerate(t) if abs(v - 0.5) < 1e-6), None)
                m5.append(100 * h["eval"]["map"][j] if j is not None else np.nan)
            ax_map.plot(ex, m5, ls, marker="s", ms=3, color="tab:cyan", label=lab("mAP@0.5"))
        ent = [h for h in steps if "H_QS" in h]
        if ent:
            ex = [h["step"] for h in ent]
            if "H_mean_QS" in ent[0]:   # runs logged since H_QS became the per-snippet entropy
                ax_ent.plot(ex, [h["H_QS"] for h in ent], ls, color="tab:green",
                            label=lab("H(Q^S): mean per-snippet entropy (SCC, Fig. 4)"))
                ax_ent.plot(ex, [h["H_mean_QS"] for h in ent], ls, color="tab:olive",
                            label=lab("H(mean Q^S): cluster balance"))
            else:
                ax_ent.plot(ex, [h["H_QS"] for h in ent], ls, color="tab:olive",
                            label=lab("H(mean Q^S): cluster balance"))
            if tcfg.get("use_ccc", True):
                ax_ent.plot(ex, [h["H_QC"] for h in ent], ls, color="tab:red",
                            label=lab("H(Q^C): mean over clusters (CCC)"))
                ax_fg.plot(ex, [h["fg_clusters"] for h in ent], ls, color="tab:brown",
                           label=lab("foreground clusters"), drawstyle="steps-post")
    if num_clusters:
        ax_ent.axhline(math.log(num_clusters), color="gray", lw=0.8, ls=":",
                       label=f"ln K = {math.log(num_clusters):.2f} (balanced K={num_clusters} clusters)")
        ax_ent.axhline(math.log(2), color="gray", lw=0.8, ls="-.", label="ln 2 (Q^C rows undecided)")
    ax_loss.set_title("Training losses (mean over 10 steps)")
    ax_loss.set_xlabel("step"); ax_loss.set_ylabel("loss")
    ax_map.set_title("Test mAP at each periodic evaluation")
    ax_map.set_xlabel("step"); ax_map.set_ylabel("mAP (%)")
    ax_ent.set_title("Pseudo-label entropies: H(Q^S), H(mean Q^S) and H(Q^C)")
    ax_ent.set_xlabel("step"); ax_ent.set_ylabel("entropy (nats)")
    ax_ent.set_ylim(bottom=0)
    ax_fg.set_title("Clusters assigned to foreground (Q^C[k, fg] > 0.5)")
    ax_fg.set_xlabel("step"); ax_fg.set_ylabel("count")
    run_handles = [Line2D([], [], color="black", ls=styles[i % len(styles)], label=name)
                   for i, (name, _, _) in enumerate(runs)] if len(runs) > 1 else []
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles=handles + run_handles, fontsize=7.5, loc="best")
        else:
            ax.text(0.5, 0.5, "not logged (SCC/CCC off)", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
    fig.suptitle(f"Training curves of {runs[0][0]}"
                 + (f" (solid) vs {', '.join(n for n, _, _ in runs[1:])}" if len(runs) > 1 else "")
                 + "  (cf. paper Fig. 4)", fontsize=12)
    fig.tight_layout()
    save_figure(fig, out_path)
    plt.close(fig)
    return out_path
