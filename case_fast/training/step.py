"""One training step's forward computation (method.md §3): the baseline's losses and Q^A
(``baselines``: CASE's two-stream network or AICL, ``model.baseline``), then the CASE head's SCC and
CCC (``case_head``) when ``train.use_scc`` is on, and the new Q^C.

``case_losses`` is a pure function of (model outputs, labels, previous Q^C, config); it makes no
host synchronisation, so it can be captured in a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from ..baselines import baseline_of
from ..method.case_head import CaseSettings, head_losses
from ..config.schema import Config
from ..runtime import no_timer


@dataclass
class StepResult:
    loss: torch.Tensor
    parts: Dict[str, torch.Tensor]     # detached scalars: the baseline's terms, scc, ccc
    q_c: torch.Tensor                  # new Q^C (K, 2) (the previous one if CCC is off)
    q_a: torch.Tensor                  # (B, T)
    q_s: Optional[torch.Tensor]        # (N, K) or None
    topk_idx: torch.Tensor             # (B, k, G)


def case_losses(out, labels: torch.Tensor, q_c: torch.Tensor, cfg: Config,
                backend: Optional[str] = None, timer: Callable = no_timer, pg=None) -> StepResult:
    """``backend``: of the ops (case_fast.ops words; None: ``cfg.train.backend``). ``timer(name)``
    returns a context manager wrapped around each phase (``case-fast profile``): 'pooling',
    'pseudo_labels', 'sinkhorn', 'losses'. ``pg``: a ``distributed.ProcessGroup`` when this batch
    is one rank's slice of a data-parallel step (None: one process)."""
    tc = cfg.train
    backend = tc.backend if backend is None else backend
    base = baseline_of(cfg).losses(out, labels, cfg, backend, timer)
    loss = base.loss
    zero = loss.new_zeros(())
    l_scc, l_ccc, q_s, new_qc = zero, zero, None, q_c
    if tc.use_scc:
        settings = CaseSettings.from_config(cfg)
        settings.backend = backend
        logits, embeddings, attentions = baseline_of(cfg).head_inputs(out)
        head = head_losses(logits, embeddings, attentions, base.q_a, q_c, settings, timer=timer,
                           pg=pg)
        q_s, l_scc = head.q_s, head.scc
        loss = loss + tc.lambda_s * l_scc
        if tc.use_ccc:
            l_ccc, new_qc = head.ccc, head.q_c
            loss = loss + tc.lambda_c * l_ccc
    parts = dict(base.parts, scc=l_scc, ccc=l_ccc)
    return StepResult(loss, {n: v.detach() for n, v in parts.items()}, new_qc.detach().float(),
                      base.q_a, q_s, base.topk_idx)


def train_step(model, optim, feats: torch.Tensor, labels: torch.Tensor, q_c: torch.Tensor,
               cfg: Config, pg=None) -> StepResult:
    """Forward, losses, backward and the optimizer update of one training step. The caller zeroes
    the gradients first (``optim.zero_grad(set_to_none=True)``); the eager trainer and the
    captured CUDA graph (``graph_step.GraphedStep``) both run exactly this."""
    res = case_losses(model(feats), labels, q_c, cfg, pg=pg)
    res.loss.backward()
    optim.step()
    return res
