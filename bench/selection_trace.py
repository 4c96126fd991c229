"""Where the top-k selection goes in the first training steps (the seed-collapse diagnostic).

    python bench/selection_trace.py [--config synthetic] [--seeds 1 2 3] [--steps 60] [--every 5]
                                    [--full] [section.key=value ...]

Replays the first steps of a training run exactly as ``case-fast train`` makes them (same seeding,
initialisation, batch order, snippet sampling and ``step.train_step``; the baseline row of Table 4
unless ``--full``) and prints, every ``--every`` steps, on that step's batch:

* ``sel_gt``: the share of the top-k selections (every positive class of every video) that fall on
  annotated action snippets, next to ``gt``, the share of action snippets in the batch;
* ``dPA rgb/flow``: mean P^A on action snippets minus mean P^A elsewhere, per stream;
* ``dSM``: the same gap of the label-class softmax of the T-CAS (the other term of the selection score).

Needs segment annotations of the training videos (the synthetic set and THUMOS14's validation
videos have them); the model never sees them. See docs/ablation.md, "Seed collapse".
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from case_fast.config.loading import load_config
from case_fast.data.load import load_datasets
from case_fast.data.synthetic import snippet_labels
from case_fast.method.model import CaseModel
from case_fast.training.step import train_step
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.method.released_init import draw_initial_weights
from case_fast.training.batches import RunStreams

BASELINE = ["train.use_scc=false", "train.use_ccc=false"]


def trace(cfg, steps: int, every: int):
    tc = cfg.train
    if tc.val_fraction > 0:
        raise SystemExit("selection_trace: train.val_fraction must be 0 (the batch order is over all training videos)")
    train_set, _ = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    n, t = len(train_set.videos), cfg.data.num_segments
    feats = [train_set.features(i) for i in range(n)]
    is_gt = [snippet_labels(train_set, i) >= 0 for i in range(n)]
    model = CaseModel(cfg.model)
    draw_initial_weights(model, tc.seed)
    streams = RunStreams(tc.seed, n, tc.batch_size)
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    q_c = initial_cluster_labels(cfg.model.num_clusters, "cpu")
    for step in range(steps):
        ids = streams.batch_videos(step)
        idx = streams.sample(ids, train_set.num_snippets, t)
        if (step + 1) % tc.eval_every == 0:   # a training run's evaluation draws here
            streams.evaluation()
        x = torch.from_numpy(np.stack([feats[v][i] for v, i in zip(ids, idx)]))
        gt = torch.from_numpy(np.stack([is_gt[v][i] for v, i in zip(ids, idx)]))
        labels = torch.from_numpy(np.asarray(train_set.labels[ids], np.float32))
        model.train()
        optim.zero_grad(set_to_none=True)
        res = train_step(model, optim, x, labels, q_c, cfg)
        q_c = res.q_c
        if step % every:
            continue
        with torch.no_grad():   # the batch as the model sees it after this step
            out = model(x)
        soft = 0.5 * (torch.softmax(out["rgb"].cas, -1) + torch.softmax(out["flow"].cas, -1))
        soft = (soft * labels[:, None, :]).sum(-1) / labels.sum(-1, keepdim=True).clamp_min(1)
        b_idx, g_idx = torch.nonzero(labels > 0, as_tuple=True)
        sel = res.topk_idx[b_idx, :, g_idx]                           # (positives, k)
        sel_gt = gt[b_idx[:, None], sel].float().mean().item()

        def gap(v):
            return (v[gt].mean() - v[~gt].mean()).item() if gt.any() and (~gt).any() else float("nan")
        yield dict(step=step, video=float(res.parts["video"]), sel_gt=sel_gt, gt=gt.float().mean().item(),
                   dPA_rgb=gap(out["rgb"].attention), dPA_flow=gap(out["flow"].attention), dSM=gap(soft))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="synthetic")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="the full method (default: the baseline row)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    for seed in args.seeds:
        cfg = load_config(args.config, ([] if args.full else BASELINE) + [f"train.seed={seed}"] + args.overrides)
        print(f"seed {seed}")
        for r in trace(cfg, args.steps, args.every):
            print(f"  step {r['step']:4d}  video {r['video']:.3f}  sel_gt {r['sel_gt']:.2f} (gt {r['gt']:.2f})  "
                  f"dPA rgb {r['dPA_rgb']:+.3f} flow {r['dPA_flow']:+.3f}  dSM {r['dSM']:+.3f}", flush=True)


if __name__ == "__main__":
    main()
