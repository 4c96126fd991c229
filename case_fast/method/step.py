"""One CASE training step's forward computation (method.md §3): losses, pseudo-labels and the new Q^C.

``case_losses`` is a pure function of (model outputs, labels, previous Q^C, config); it makes no
host synchronisation, so it can be captured in a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from .. import ops
from ..config.schema import Config
from ..runtime import no_timer
from .losses import gce_loss, soft_cross_entropy, video_loss
from .pseudo_labels import (attention_pseudo_labels, ccc_marginal, ccc_pseudo_labels,
                            cluster_fb_logits, scc_pseudo_labels)

STREAMS = ("rgb", "flow")


@dataclass
class StepResult:
    loss: torch.Tensor
    parts: Dict[str, torch.Tensor]     # detached scalars: video, att_rgb, att_flow, scc, ccc
    q_c: torch.Tensor                  # new Q^C (K, 2) (the previous one if CCC is off)
    q_a: torch.Tensor                  # (B, T)
    q_s: Optional[torch.Tensor]        # (N, K) or None
    topk_idx: torch.Tensor             # (B, k, G)


def selection_scores(out) -> torch.Tensor:
    """(mean over streams of softmax(T-CAS) + P^A_flow + P^A_rgb) / 3, shape (B, T, G)."""
    soft = 0.5 * (torch.softmax(out["rgb"].cas, dim=-1) + torch.softmax(out["flow"].cas, dim=-1))
    return (soft + out["flow"].attention[..., None] + out["rgb"].attention[..., None]) / 3.0


def case_losses(out, labels: torch.Tensor, q_c: torch.Tensor, cfg: Config,
                backend: Optional[str] = None, timer: Callable = no_timer, pg=None) -> StepResult:
    """``backend``: of the ops (case_fast.ops words; None: ``cfg.train.backend``). ``timer(name)``
    returns a context manager wrapped around each phase (``case-fast profile``): 'pooling',
    'pseudo_labels', 'sinkhorn', 'losses'. ``pg``: a ``distributed.ProcessGroup`` when this batch
    is one rank's slice of a data-parallel step (None: one process)."""
    tc = cfg.train
    backend = tc.backend if backend is None else backend
    b, t, _ = out["rgb"].cas.shape
    k = max(1, t // tc.k_divisor)
    with timer("pooling"):
        sel = selection_scores(out)
        (vs_rgb, vs_flow), idx = ops.topk_mil_pool(sel, (out["rgb"].cas, out["flow"].cas), k,
                                                   backend=backend)
    with timer("losses"):
        l_video = 0.5 * video_loss(vs_flow, labels) + 0.5 * video_loss(vs_rgb, labels)
    with timer("pseudo_labels"):
        q_a = attention_pseudo_labels(idx, labels, t)
    with timer("losses"):
        l_att = {s: gce_loss(out[s].attention, q_a, tc.gce_q) for s in STREAMS}
    loss = l_video + l_att["rgb"] + l_att["flow"]
    zero = loss.new_zeros(())
    l_scc, l_ccc, q_s, new_qc = zero, zero, None, q_c

    if tc.use_scc:
        kk = out["rgb"].cluster_logits.shape[-1]
        fused = 0.5 * out["rgb"].cluster_logits + 0.5 * out["flow"].cluster_logits
        att = 0.5 * out["rgb"].attention + 0.5 * out["flow"].attention
        with timer("sinkhorn"):
            q_s = scc_pseudo_labels(fused.reshape(-1, kk), att.reshape(-1), q_c, mode=tc.mode,
                                    sigma=tc.prior_sigma, n_iters=tc.sinkhorn_iters,
                                    epsilon=tc.sinkhorn_epsilon, temperature=cfg.model.temperature,
                                    use_prior=tc.scc_prior, labels=tc.scc_labels, backend=backend,
                                    pg=pg)
        with timer("losses"):
            l_scc = sum(soft_cross_entropy(out[s].cluster_logits.reshape(-1, kk), q_s) for s in STREAMS)
            loss = loss + tc.lambda_s * l_scc

        if tc.use_ccc:
            qa_flat = q_a.reshape(-1)
            with timer("pseudo_labels"):
                logits = {s: cluster_fb_logits(out[s].embedding.reshape(b * t, -1), q_s, qa_flat,
                                               cfg.model.temperature, pg=pg) for s in STREAMS}
                beta = ccc_marginal(qa_flat, tc.ccc_marginal, pg=pg)
            with timer("sinkhorn"):
                new_qc = ccc_pseudo_labels(0.5 * logits["rgb"] + 0.5 * logits["flow"], beta,
                                           n_iters=tc.sinkhorn_iters, epsilon=tc.sinkhorn_epsilon,
                                           temperature=cfg.model.temperature, backend=backend)
            with timer("losses"):
                l_ccc = sum(soft_cross_entropy(logits[s], new_qc) for s in STREAMS)
                loss = loss + tc.lambda_c * l_ccc

    parts = {"video": l_video, "att_rgb": l_att["rgb"], "att_flow": l_att["flow"], "scc": l_scc,
             "ccc": l_ccc}
    return StepResult(loss, {n: v.detach() for n, v in parts.items()}, new_qc.detach().float(),
                      q_a, q_s, idx)


def train_step(model, optim, feats: torch.Tensor, labels: torch.Tensor, q_c: torch.Tensor,
               cfg: Config, pg=None) -> StepResult:
    """Forward, losses, backward and the optimizer update of one training step. The caller zeroes
    the gradients first (``optim.zero_grad(set_to_none=True)``); the eager trainer and the
    captured CUDA graph (``graph_step.GraphedStep``) both run exactly this."""
    res = case_losses(model(feats), labels, q_c, cfg, pg=pg)
    res.loss.backward()
    optim.step()
    return res
