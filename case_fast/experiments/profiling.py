"""``case-fast profile``: size, speed, memory and the time split of one training step and one
evaluation pass on the current device.

Training is timed on random features of the configured shape (B, T, 2D) with random labels;
evaluation on random features for the embedded THUMOS14 test videos (real lengths and ground
truth), so it runs for any config without the dataset on disk. The split of an untrained model's
evaluation depends on how many proposals it makes: pass --checkpoint for a trained one.
"""
from __future__ import annotations

import resource
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

from ..config.schema import Config
from ..baselines import build_model
from ..method.model import count_macs, count_parameters
from ..method.pseudo_labels import initial_cluster_labels
from ..training.step import case_losses
from ..runtime import resolve_device


class PhaseTimer:
    """Accumulates wall time per named phase, synchronising the device at the boundaries."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times = defaultdict(float)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, name: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.times[name] += time.perf_counter() - t0

    def reset(self):
        self.times.clear()


def _peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (CUDA, max allocated)"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f"{kib / 1024:.0f} MiB (process max RSS)"


def profile(cfg: Config, steps: int = 5, checkpoint: Optional[str] = None, eval_videos: int = 0,
            print_fn=print) -> dict:
    from ..evaluation.metric import evaluate
    from ..evaluation.ground_truth import GroundTruth
    from ..data.synthetic import embedded_thumos14_test
    from ..inference.detect import forward_videos, localize_video
    from ..training.periodic_eval import proposals_to_detections

    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    if checkpoint:
        from ..training.checkpoint import load_checkpoint
        model, q_c, ck_cfg = load_checkpoint(checkpoint, device)
        cfg.model = ck_cfg.model
        q_c = (q_c if q_c is not None else initial_cluster_labels(cfg.model.num_clusters)).to(device)
    else:
        model = build_model(cfg).to(device)
        q_c = initial_cluster_labels(cfg.model.num_clusters, device)
    b, t, d, g = cfg.train.batch_size, cfg.data.num_segments, cfg.data.feature_dim, cfg.model.num_classes
    report = {"device": str(device), "params": count_parameters(model),
              "macs_per_video": count_macs(build_model(cfg), t), "T": t}
    print_fn(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                    f" ({torch.get_num_threads()} threads)"))
    print_fn(f"parameters: {report['params']:,}   MACs per video (T={t}): {report['macs_per_video'] / 1e9:.2f} G")

    # ---- training step
    optim = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(b, t, d, generator=gen).to(device)
    labels = (torch.rand(b, g, generator=gen) < 0.1).float()
    labels[torch.arange(b), torch.randint(0, g, (b,), generator=gen)] = 1.0
    labels = labels.to(device)
    timer = PhaseTimer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for i in range(steps + 1):          # the first step is a warm-up
        if i == 1:
            timer.reset()
            t0 = time.perf_counter()
        with timer("network"):
            out = model(feats)
        res = case_losses(out, labels, q_c, cfg, timer=timer)
        with timer("backward+optimizer"):
            optim.zero_grad(set_to_none=True)
            res.loss.backward()
            optim.step()
        q_c = res.q_c
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    step_time = (time.perf_counter() - t0) / steps
    train_split = {k: v / steps for k, v in timer.times.items()}
    report["train_steps_per_s"] = 1.0 / step_time
    report["train_split_s"] = train_split
    print_fn(f"\ntraining step (B={b}, T={t}, D={d}): {1000 * step_time:.1f} ms = "
             f"{1.0 / step_time:.2f} steps/s")
    for name, v in sorted(train_split.items(), key=lambda kv: -kv[1]):
        print_fn(f"  {name:<20s} {1000 * v:9.2f} ms  {100 * v / step_time:5.1f} %")

    # ---- evaluation pass
    names, lengths, gt = embedded_thumos14_test()
    if eval_videos:
        names, lengths = names[:eval_videos], lengths[:eval_videos]
    gt = GroundTruth(**gt)
    if g != len(gt.class_names):  # other class counts: map the labels onto the configured classes
        gt.label = gt.label % g
        gt.class_names = [f"class{i}" for i in range(g)]
    if eval_videos:
        keep = np.isin(gt.video, names)
        gt = GroundTruth(video=gt.video[keep], label=gt.label[keep], segment=gt.segment[keep],
                         videos=list(names), class_names=gt.class_names, ambiguous={})
    feats = torch.rand(len(names), t, d, generator=gen).to(device)
    timer.reset()
    t0 = time.perf_counter()
    with timer("network"):
        cas, scores = forward_videos(model, feats, q_c, cfg)
    props = {}
    for i, v in enumerate(names):
        props[v] = localize_video(cas[i], scores[i], int(lengths[i]), cfg, timer=timer)
    with timer("mAP"):
        det = proposals_to_detections(props)
        evaluate(det, gt, tuple(cfg.infer.tiou))   # timed, result unused
    eval_time = time.perf_counter() - t0
    report["eval_videos_per_s"] = len(names) / eval_time
    report["eval_split_s"] = dict(timer.times)
    report["eval_predictions"] = int(len(det.score))
    print_fn(f"\nevaluation of {len(names)} videos ({len(det.score)} detections): {eval_time:.2f} s = "
             f"{len(names) / eval_time:.1f} videos/s")
    for name, v in sorted(timer.times.items(), key=lambda kv: -kv[1]):
        print_fn(f"  {name:<20s} {1000 * v:9.2f} ms  {100 * v / eval_time:5.1f} %")
    report["peak_memory"] = _peak_memory(device)
    print_fn(f"\npeak memory: {report['peak_memory']}")
    return report
