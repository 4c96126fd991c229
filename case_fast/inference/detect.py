"""Inference (method.md §5): localisation T-CAS, video-level scores, proposals, NMS, results JSON."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import ops
from ..baselines import baseline_of
from ..baselines import two_stream
from ..method.case_head import foreground_scores
from ..config.schema import Config
from ..data.sampling import sample_test_features
from ..runtime import no_timer
from ..ops.proposals import generate_proposals


def localization_cas(out, q_c: Optional[torch.Tensor], fg_score: str = "PM",
                     baseline=two_stream) -> torch.Tensor:
    """T-CAS (B, T, G) used for localisation: the mean of the baseline's terms and, with the CASE
    head, the P^T terms.

    PM (clustering-assisted testing): the baseline's class and attention terms (CASE: the mean of
    the streams' softmax(T-CAS), P^A_flow, P^A_rgb), then P^T_flow, P^T_rgb with
    P^T = softmax(cluster logits) @ Q^C[:, fg] (``case_head.foreground_scores``).
    PA: the baseline's terms only. PT: the class term and the two P^T terms (Table 7).
    ``baseline``: the module of ``baselines`` whose outputs ``out`` are.
    """
    total, n = baseline.localization_sum(out, fg_score in ("PM", "PA"))
    if fg_score in ("PM", "PT"):
        if q_c is None:
            raise ValueError("clustering-assisted testing needs Q^C (train with CCC, or use fg_score=PA)")
        logits, _, _ = baseline.head_inputs(out)
        p_t = foreground_scores({s: logits[s] for s in ("flow", "rgb")}, q_c)
        for s in ("flow", "rgb"):
            total = total + p_t[s][..., None]
        n += 2
    return total / n


def predicted_classes(scores: np.ndarray, threshold: float) -> np.ndarray:
    pred = np.flatnonzero(scores >= threshold)
    return pred if pred.size else np.array([int(np.argmax(scores))])


def localize_video(cas: np.ndarray, scores: np.ndarray, num_snippets: int, cfg: Config,
                   timer=no_timer, backend: Optional[str] = None) -> np.ndarray:
    """Proposals after NMS for one video: (m, 4) rows [class, score, start_s, end_s].
    ``backend`` of the proposal and NMS ops (case_fast.ops words; None: ``cfg.train.backend``)."""
    inf = cfg.infer
    backend = cfg.train.backend if backend is None else backend
    pred = predicted_classes(scores, inf.class_threshold)
    with timer("proposals"):
        props = generate_proposals(cas[:, pred], pred, scores, int(num_snippets),
                                   thresholds=np.asarray(inf.act_thresholds, dtype=np.float64),
                                   scale=inf.scale, num_segments=cas.shape[0], fps=cfg.data.fps,
                                   frames_per_snippet=cfg.data.frames_per_snippet,
                                   oic_lambda=cfg.oic_lambda(), oic_gamma=inf.oic_gamma,
                                   backend=backend)
    if len(props) == 0:
        return props.reshape(0, 4)
    with timer("nms"):
        keep, new_scores = ops.temporal_nms(props[:, 2:4], props[:, 1], props[:, 0].astype(np.int64),
                                            method=inf.nms, iou_threshold=inf.nms_threshold,
                                            alpha=inf.nms_alpha, min_score=inf.soft_min_score,
                                            backend=backend)
    out = props[np.asarray(keep)].copy()
    out[:, 1] = np.asarray(new_scores)
    if inf.max_per_video and len(out) > inf.max_per_video:
        out = out[np.argsort(-out[:, 1], kind="stable")[: inf.max_per_video]]
    return out


@torch.no_grad()
def forward_videos(model, feats: torch.Tensor, q_c: Optional[torch.Tensor], cfg: Config,
                   batch: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """T-CAS (V, T, G) and video scores (V, G) for sampled features (V, T, 2D), in batches. The
    video scores pool the top-k snippets of the T-CAS, or of the baseline's own score (P^A) with
    ``infer.video_topk_on=baseline``."""
    k = cfg.k
    fg = cfg.infer.fg_score if cfg.infer.use_cat else "PA"
    baseline = baseline_of(cfg)
    cas_all, sc_all = [], []
    for i in range(0, feats.shape[0], batch):
        out = model(feats[i:i + batch])
        cas = localization_cas(out, q_c, fg, baseline)
        sel = cas
        if fg != "PA" and cfg.infer.video_topk_on == "baseline":
            sel = localization_cas(out, q_c, "PA", baseline)
        cas_all.append(cas.float().cpu())
        sc_all.append(baseline.video_scores(out, sel, k).float().cpu())
    if not cas_all:
        g = cfg.model.num_classes
        return np.zeros((0, cfg.data.num_segments, g), np.float32), np.zeros((0, g), np.float32)
    return torch.cat(cas_all).numpy(), torch.cat(sc_all).numpy()


def detect(model, dataset, q_c: Optional[torch.Tensor], cfg: Config, device="cpu",
           videos: Optional[Sequence[int]] = None, progress=None) -> Dict[str, np.ndarray]:
    """Run inference on (a subset of) a VideoDataset: {video name: (m, 4) proposals}."""
    ids = list(range(len(dataset))) if videos is None else list(videos)
    t = cfg.data.num_segments
    results: Dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    qc = None if q_c is None else q_c.to(device)
    chunk = 64
    try:
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            feats = sample_test_features(dataset, part, t)
            cas, scores = forward_videos(model, torch.from_numpy(feats).to(device), qc, cfg)
            for j, i in enumerate(part):
                results[dataset.videos[i]] = localize_video(cas[j], scores[j], dataset.num_snippets[i], cfg)
            if progress is not None:
                progress(len(part))
    finally:
        model.train(was_training)
    return results
