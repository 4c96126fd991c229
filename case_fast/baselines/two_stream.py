"""CASE's own baseline (method.md §2-§3.2): two independent streams, each with a T-CAS branch and
an attention branch; top-k MIL on both streams' T-CAS, the video loss and the GCE attention loss
against Q^A. The network is ``model.CaseModel`` (its streams also keep CASE's prototypes, under
the names of every checkpoint written so far); the CASE head adds SCC, CCC and P^T (``case_head``).
"""
from __future__ import annotations

from typing import Tuple

import torch

from .. import ops
from ..method.case_head import fuse_streams
from ..method.losses import gce_loss, video_loss
from ..method.pseudo_labels import attention_pseudo_labels
from ..runtime import no_timer
from .result import BaselineLosses

STREAMS = ("rgb", "flow")


def selection_scores(out) -> torch.Tensor:
    """(mean over streams of softmax(T-CAS) + P^A_flow + P^A_rgb) / 3, shape (B, T, G)."""
    total, n = localization_sum(out, True)
    return total / n


def losses(out, labels: torch.Tensor, cfg, backend: str, timer=no_timer) -> BaselineLosses:
    """L_V (the two streams' video losses averaged) + L_A (GCE of each stream's P^A against Q^A)."""
    tc = cfg.train
    t = out["rgb"].cas.shape[1]
    k = max(1, t // tc.k_divisor)
    with timer("pooling"):
        sel = selection_scores(out)
        (vs_rgb, vs_flow), idx = ops.topk_mil_pool(sel, (out["rgb"].cas, out["flow"].cas), k,
                                                   backend=backend)
    with timer("losses"):
        l_video = fuse_streams([video_loss(vs_rgb, labels), video_loss(vs_flow, labels)])
    with timer("pseudo_labels"):
        q_a = attention_pseudo_labels(idx, labels, t)
    with timer("losses"):
        l_att = {s: gce_loss(out[s].attention, q_a, tc.gce_q) for s in STREAMS}
    loss = l_video + l_att["rgb"] + l_att["flow"]
    return BaselineLosses(loss, {"video": l_video, "att_rgb": l_att["rgb"],
                                 "att_flow": l_att["flow"]}, q_a, idx)


def localization_sum(out, with_attention: bool) -> Tuple[torch.Tensor, int]:
    """(sum of the class-wise terms, their count) of the localisation T-CAS (B, T, G): the streams'
    softmax(T-CAS) averaged, then P^A_flow and P^A_rgb (with_attention)."""
    total = fuse_streams([torch.softmax(out[s].cas, dim=-1) for s in STREAMS])
    if not with_attention:
        return total, 1
    total = total + out["flow"].attention[..., None]
    return total + out["rgb"].attention[..., None], 3


def video_scores(out, cas: torch.Tensor, k: int) -> torch.Tensor:
    """Video-level class scores (B, G): top-k MIL on the localisation T-CAS, softmax per stream,
    averaged 0.5/0.5."""
    (vr, vf), _ = ops.topk_mil_pool(cas, (out["rgb"].cas, out["flow"].cas), k)
    return fuse_streams([torch.softmax(vr, dim=-1), torch.softmax(vf, dim=-1)])


def head_inputs(out):
    """(cluster logits, embeddings, attentions) per stream, RGB first (the fusion order)."""
    return ({s: out[s].cluster_logits for s in STREAMS}, {s: out[s].embedding for s in STREAMS},
            {s: out[s].attention for s in STREAMS})
