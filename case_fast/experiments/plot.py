"""``case-fast plot RUN_DIR``: figures of a training run (PNG, matplotlib Agg) in RUN_DIR/plots/.

* ``video_<name>.png`` (paper Fig. 5), one per chosen test video: ground-truth segments; the
  foreground probabilities P^A (attention, mean of the two streams), P^T (cluster assignments
  times Q^C[:, fg], mean of the two streams) and P^M = 0.5 P^A + 0.5 P^T along time in seconds;
  and the top-N detections of the checkpoint (bars over their [start, end], labelled with class
  and score). Default videos: the 2 test videos with the most ground-truth instances.
* ``training_curves.png`` (paper Fig. 4), from metrics.jsonl: the loss terms (video, attention
  = rgb + flow, SCC, CCC) per logged step, avg mAP and mAP@0.5 per evaluation, the entropies
  H(Q^S) (mean per-snippet entropy of the SCC pseudo-labels), H(mean Q^S) (cluster balance) and
  H(Q^C) (mean over clusters) per logged step, and the
  number of foreground clusters (Q^C[k, fg] > 0.5). ``--compare DIR ...`` overlays other runs
  (e.g. the Eq. 10 ablation run against the method's run: Fig. 4's comparison).
* ``clusters.png``: per cluster k, the mean assignment mass over all test snippets of the
  checkpoint - P^S (the model's soft assignments) as bars and Q^S (the Sinkhorn pseudo-labels
  computed on the test snippets as in training, 16 videos at a time) as markers - coloured by the
  cluster's foreground assignment Q^C[k, fg]; below, the share of each cluster's P^S mass that
  lies on ground-truth action snippets (a check that foreground-assigned clusters hold actions).

The checkpoint is RUN_DIR/best.pt (``--checkpoint`` to use another); the data come from the
checkpoint's configuration (the test split).
"""
from __future__ import annotations

import math
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..baselines.two_stream import STREAMS
from ..data.sampling import sample_test_features
from ..method.case_head import fuse_streams
from .plot_curves import plot_training_curves, pyplot, run_name, save_figure

PLOT_FILES = {
    "videos": "video_<name>.png",
    "curves": "training_curves.png",
    "clusters": "clusters.png",
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------------------------
# Model outputs on test videos

def _forward(model, feats, q_c):
    """Per video (V, T) arrays P^A, P^T, P^M, and (V*T, K) P^S, fused logits, fused attention."""
    import torch

    with torch.no_grad():
        out = model(feats)
        pa = fuse_streams([out[s].attention for s in STREAMS])
        fg = q_c[:, 0].to(pa.dtype)
        ps_of = [torch.softmax(out[s].cluster_logits, -1) for s in STREAMS]
        pt = fuse_streams([p @ fg for p in ps_of])
        ps = fuse_streams(ps_of)
        fused = fuse_streams([out[s].cluster_logits for s in STREAMS])
    return pa, pt, 0.5 * pa + 0.5 * pt, ps, fused


def default_videos(gt: dict, n: int = 2) -> List[str]:
    """The n test videos with the most ground-truth instances (ties: name order)."""
    counts: Dict[str, int] = {}
    for v in gt["video"]:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def plot_video(model, q_c, cfg, dataset, video: str, out_path: str, top_n: int = 10,
               title_extra: str = "", window: Optional[Sequence[float]] = None) -> str:
    import torch

    from ..inference.detect import detect

    plt = pyplot()
    if video not in dataset.index:
        raise ValueError(f"video {video!r} is not in the test split ({len(dataset)} videos)")
    i = dataset.index[video]
    t = cfg.data.num_segments
    tv = int(dataset.num_snippets[i])
    sec = cfg.data.frames_per_snippet / cfg.data.fps
    feats = torch.from_numpy(sample_test_features(dataset, [i], t))
    pa, pt, pm, _, _ = (a[0].numpy() for a in _forward(model, feats, q_c))
    x = (np.arange(t) + 0.5) * tv / t * sec
    duration = tv * sec
    props = detect(model, dataset, q_c, cfg, "cpu", videos=[i])[video]
    gt = dataset.ground_truth()
    sel = np.asarray([str(v) == video for v in gt["video"]], dtype=bool)
    g_seg, g_lab = gt["segment"][sel], gt["label"][sel]
    names = dataset.class_names
    classes = sorted(set(int(c) for c in g_lab) | set(int(c) for c in props[:, 0]))
    cmap = plt.get_cmap("tab10")
    ccol = {c: cmap(j % 10) for j, c in enumerate(classes)}

    lo, hi = (0.0, duration) if window is None else (float(window[0]), float(window[1]))
    if window is not None:  # only what overlaps the window
        if len(props):
            props = props[(props[:, 3] > lo) & (props[:, 2] < hi)]
        keep = (g_seg[:, 1] > lo) & (g_seg[:, 0] < hi)
        g_seg, g_lab = g_seg[keep], g_lab[keep]
    top = props[np.argsort(-props[:, 1], kind="stable")[:top_n]] if len(props) else props
    fig, (ax_gt, ax_p, ax_d) = plt.subplots(
        3, 1, figsize=(13, 7.5), sharex=True,
        gridspec_kw={"height_ratios": [0.9, 2.2, max(1.2, 0.22 * max(len(top), 1))]})
    gt_classes = sorted(set(int(c) for c in g_lab))
    for row, c in enumerate(gt_classes):
        segs = g_seg[g_lab == c]
        ax_gt.broken_barh([(s, e - s) for s, e in segs], (row - 0.4, 0.8), color=ccol[c], alpha=0.85)
    ax_gt.set_yticks(range(len(gt_classes)))
    ax_gt.set_yticklabels([names[c] for c in gt_classes], fontsize=8)
    ax_gt.set_ylim(-0.6, max(len(gt_classes), 1) - 0.4)
    ax_gt.set_title(f"Ground truth ({len(g_seg)} instances)", fontsize=10)
    for s, e in g_seg:
        ax_p.axvspan(s, e, color="0.88", lw=0)
    ax_p.plot(x, pa, color="tab:blue", lw=1.1, label="P^A (attention)")
    ax_p.plot(x, pt, color="tab:orange", lw=1.1, label="P^T (clusters x Q^C[:, fg])")
    ax_p.plot(x, pm, color="black", lw=1.5, label="P^M = 0.5 P^A + 0.5 P^T")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("foreground prob.")
    ax_p.legend(fontsize=8, loc="upper right", ncol=3)
    ax_p.set_title("Foreground probabilities per snippet (grey: ground truth)", fontsize=10)
    for r, (c, s, a, b) in enumerate(top):
        c = int(c)
        ax_d.broken_barh([(a, b - a)], (r - 0.4, 0.8), color=ccol.get(c, "gray"), alpha=0.85)
        ax_d.text(min(b, hi) + 0.005 * (hi - lo), r, f"{names[c]} {s:.2f}", va="center",
                  fontsize=7)
    ax_d.set_ylim(len(top) - 0.4 if len(top) else 0.6, -0.6)
    ax_d.set_yticks([])
    ax_d.set_ylabel("rank")
    ax_d.set_title(f"Top {len(top)} of {len(props)} detections by score (fg score "
                   f"{cfg.infer.fg_score if cfg.infer.use_cat else 'PA'})", fontsize=10)
    ax_d.set_xlabel("time (s)")
    ax_d.set_xlim(lo, hi + 0.1 * (hi - lo))
    span = f", {lo:.0f}-{hi:.0f} s shown" if window is not None else ""
    fig.suptitle(f"Test video {video} ({duration:.0f} s{span}): ground truth, P^A / P^T / P^M and "
                 f"detections{title_extra}  (cf. paper Fig. 5)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, out_path)
    plt.close(fig)
    return out_path


def cluster_statistics(model, q_c, cfg, dataset, chunk: int = 16) -> dict:
    """Mean P^S and Q^S mass per cluster over all test snippets, and each cluster's share of
    P^S mass on ground-truth action snippets."""
    import torch

    from ..method.pseudo_labels import scc_pseudo_labels

    t = cfg.data.num_segments
    k = cfg.model.num_clusters
    sec = cfg.data.frames_per_snippet / cfg.data.fps
    gt = dataset.ground_truth()
    segs_of: Dict[str, list] = {}
    for v, s in zip(gt["video"], gt["segment"]):
        segs_of.setdefault(str(v), []).append(s)
    ps_sum = np.zeros(k); qs_sum = np.zeros(k); fg_sum = np.zeros(k)
    hps_sum = hqs_sum = 0.0
    n_total, n_fg = 0, 0
    tc = cfg.train
    for start in range(0, len(dataset), chunk):
        ids = list(range(start, min(start + chunk, len(dataset))))
        feats = torch.from_numpy(sample_test_features(dataset, ids, t))
        pa, _, _, ps, fused = _forward(model, feats, q_c)
        qs = scc_pseudo_labels(fused.reshape(-1, k), pa.reshape(-1), q_c, mode=tc.mode,
                               sigma=tc.prior_sigma, n_iters=tc.sinkhorn_iters,
                               epsilon=tc.sinkhorn_epsilon, temperature=cfg.model.temperature,
                               use_prior=tc.scc_prior, labels=tc.scc_labels)
        ps = ps.reshape(-1, k).double().numpy()
        qs = qs.double().numpy()
        fg = np.zeros((len(ids), t))
        for j, i in enumerate(ids):
            tv = int(dataset.num_snippets[i])
            centers = (np.arange(t) + 0.5) * tv / t * sec
            for s, e in segs_of.get(dataset.videos[i], []):
                fg[j] = np.maximum(fg[j], ((centers >= s) & (centers <= e)).astype(float))
        fg = fg.reshape(-1)
        ps_sum += ps.sum(0); qs_sum += qs.sum(0); fg_sum += (ps * fg[:, None]).sum(0)
        hps_sum += float(-(ps * np.log(ps + 1e-12)).sum())
        hqs_sum += float(-(qs * np.log(qs + 1e-12)).sum())
        n_total += ps.shape[0]; n_fg += int(fg.sum())
    return {"ps_mass": ps_sum / max(n_total, 1), "qs_mass": qs_sum / max(n_total, 1),
            "fg_share": fg_sum / np.maximum(ps_sum, 1e-12), "fg_fraction": n_fg / max(n_total, 1),
            "qc_fg": q_c[:, 0].double().cpu().numpy(), "snippets": n_total,
            "H_PS_snippet": hps_sum / max(n_total, 1), "H_QS_snippet": hqs_sum / max(n_total, 1)}


def plot_clusters(stats: dict, out_path: str, run_name: str = "") -> str:
    plt = pyplot()
    from matplotlib.colors import Normalize

    k = len(stats["ps_mass"])
    order = np.argsort(-stats["qc_fg"], kind="stable")
    cmap, norm = plt.get_cmap("coolwarm"), Normalize(0.0, 1.0)
    colors = [cmap(norm(stats["qc_fg"][c])) for c in order]
    xs = np.arange(k)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    ax1.bar(xs, stats["ps_mass"][order], color=colors, edgecolor="black", lw=0.5,
            label="mean P^S (model assignment)")
    ax1.plot(xs, stats["qs_mass"][order], "kD", ms=5, label="mean Q^S (Sinkhorn pseudo-label)")
    ax1.axhline(1.0 / k, color="gray", ls=":", lw=1, label=f"1/K = {1 / k:.3f}")
    ax1.set_ylabel("mean mass per snippet")
    ax1.set_title(f"Cluster sizes on the test set ({stats['snippets']} snippets), coloured by "
                  f"foreground assignment Q^C[k, fg]\nper-snippet entropy: H(P^S) = "
                  f"{stats['H_PS_snippet']:.2f}, H(Q^S) = {stats['H_QS_snippet']:.2f} nats "
                  f"(ln K = {math.log(k):.2f}: undecided)", fontsize=10)
    from matplotlib.patches import Patch
    h1, _ = ax1.get_legend_handles_labels()
    h1 = [Patch(facecolor="0.75", edgecolor="black", label="mean P^S (model assignment)")
          if getattr(h, "get_label", lambda: "")() == "mean P^S (model assignment)" else h for h in h1]
    ax1.legend(handles=h1, fontsize=8, loc="lower right")
    ax2.bar(xs, stats["fg_share"][order], color=colors, edgecolor="black", lw=0.5)
    ax2.axhline(stats["fg_fraction"], color="gray", ls="--", lw=1,
                label=f"share of all test snippets in GT actions = {stats['fg_fraction']:.2f}")
    ax2.set_ylabel("share on GT action snippets")
    ax2.set_ylim(0, 1)
    ax2.set_title("Share of each cluster's P^S mass lying on ground-truth action snippets", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.set_xticks(xs)
    ax2.set_xticklabels([f"{c}\n{stats['qc_fg'][c]:.2f}" for c in order], fontsize=7.5)
    ax2.set_xlabel("cluster k (above: Q^C[k, fg]); sorted by Q^C[k, fg]")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=[ax1, ax2], label="Q^C[k, fg]  (1 = foreground, 0 = background)",
                 fraction=0.03, pad=0.02)
    fig.suptitle(f"Clusters of {run_name}: sizes and foreground/background assignment", fontsize=12)
    save_figure(fig, out_path)
    plt.close(fig)
    return out_path


def plot_run(run_dir: str, videos: Optional[Sequence[str]] = None, top_n: int = 10,
             what: Sequence[str] = ("videos", "curves", "clusters"), checkpoint: Optional[str] = None,
             compare: Sequence[str] = (), out_dir: Optional[str] = None,
             window: Optional[Sequence[float]] = None) -> List[str]:
    """Write the requested plots; returns the written paths."""
    out_dir = out_dir or os.path.join(run_dir, "plots")
    written: List[str] = []
    model = q_c = cfg = None
    if "curves" in what:
        k = None
        cfg_path = os.path.join(run_dir, "config.yaml")
        if os.path.isfile(cfg_path):
            import yaml
            with open(cfg_path) as f:
                k = (yaml.safe_load(f) or {}).get("model", {}).get("num_clusters")
        written.append(plot_training_curves(run_dir, os.path.join(out_dir, "training_curves.png"),
                                            compare, k))
    if "videos" in what or "clusters" in what:
        import torch

        from ..data.load import load_datasets
        from ..method.pseudo_labels import initial_cluster_labels
        from ..training.checkpoint import load_checkpoint

        ckpt = checkpoint or os.path.join(run_dir, "best.pt")
        model, q_c, cfg, step = load_checkpoint(ckpt, "cpu", with_step=True)
        if cfg.model.baseline != "case":
            raise ValueError(f"{ckpt}: the video and cluster plots draw CASE's two-stream network; "
                             f"this checkpoint is model.baseline={cfg.model.baseline} (use --only curves)")
        torch.manual_seed(0)
        if q_c is None:
            q_c = initial_cluster_labels(cfg.model.num_clusters)
        q_c = q_c.float().cpu()
        note = f", {os.path.basename(ckpt)} step {step}" if step is not None else ""
        if not cfg.train.use_ccc:
            note += "; CCC off: Q^C untrained, P^T uninformative"
        _, test_set = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
        if "videos" in what:
            vids = list(videos) if videos else default_videos(test_set.ground_truth(), 2)
            for v in vids:
                written.append(plot_video(model, q_c, cfg, test_set, v,
                                          os.path.join(out_dir, f"video_{_safe(v)}.png"), top_n,
                                          title_extra=f"\n({run_name(run_dir)}{note})",
                                          window=window))
        if "clusters" in what:
            stats = cluster_statistics(model, q_c, cfg, test_set, chunk=cfg.train.batch_size)
            written.append(plot_clusters(stats, os.path.join(out_dir, "clusters.png"),
                                         run_name(run_dir) + note))
    return written


# ----------------------------------------------------------------------------------------------
# Command line (registered by cli.build_parser).

def add_plot_parser(sub) -> None:
    import argparse

    p = sub.add_parser("plot", help="PNG figures of a run (Fig. 4/5 style, cluster sizes) in RUN_DIR/plots/",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory (best.pt, metrics.jsonl)")
    p.add_argument("--videos", nargs="+", metavar="NAME",
                   help="test videos for video_<name>.png (default: the 2 with the most GT instances)")
    p.add_argument("--top", type=int, default=10, help="detections drawn per video (default %(default)s)")
    p.add_argument("--window", nargs=2, type=float, metavar=("START", "END"),
                   help="show only this time window (seconds) of each video")
    p.add_argument("--only", nargs="+", choices=tuple(PLOT_FILES), default=list(PLOT_FILES),
                   help="which figures: videos (video_<name>.png), curves (training_curves.png), "
                        "clusters (clusters.png); default all")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR",
                   help="overlay these runs' curves on training_curves.png")
    p.add_argument("--checkpoint", help="checkpoint for videos/clusters (default RUN_DIR/best.pt)")
    p.add_argument("--out", "-o", help="output folder (default RUN_DIR/plots)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    pyplot()   # matplotlib missing: one line naming the install, before any work
    paths = plot_run(args.run_dir, args.videos, args.top, args.only, args.checkpoint, args.compare,
                     args.out, args.window)
    from ..console import console
    for path in paths:
        console.show(path)
    return 0
