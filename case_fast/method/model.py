"""The CASE network (method.md §2): two identical streams (RGB, flow), each a video-classification
branch, an attention branch and a cosine clustering head. Default PyTorch initialisation.

The two branches are CASE's baseline (``baselines/two_stream.py`` has its losses and scores); the
clustering head is the CASE head (``case_head.py``) in its functional form: each stream keeps its
own prototypes (``rgb.prototypes``, ``flow.prototypes``, the names of every checkpoint written)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .case_head import cluster_logits
from ..config.schema import ModelConfig


@dataclass
class StreamOutput:
    cas: torch.Tensor            # (B, T, G) T-CAS logits
    attention: torch.Tensor      # (B, T)    P^A
    embedding: torch.Tensor      # (B, T, H) E (after ReLU, unnormalised)
    cluster_logits: torch.Tensor  # (B, T, K) temperature * cosine


class CaseStream(nn.Module):
    def __init__(self, in_dim: int, hidden: int, num_classes: int, num_clusters: int,
                 temperature: float = 10.0):
        super().__init__()
        self.cls_conv1 = nn.Conv1d(in_dim, hidden, kernel_size=1)
        self.cls_conv2 = nn.Conv1d(hidden, num_classes, kernel_size=1)
        self.att_conv1 = nn.Conv1d(in_dim, hidden, kernel_size=1)
        self.att_conv2 = nn.Conv1d(hidden, 1, kernel_size=1)
        self.prototypes = nn.Parameter(torch.empty(num_clusters, hidden))
        nn.init.kaiming_uniform_(self.prototypes, a=5 ** 0.5)  # nn.Linear's default init
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> StreamOutput:
        # x: (B, T, D)
        xt = x.transpose(1, 2)                                   # (B, D, T)
        cas = self.cls_conv2(F.relu(self.cls_conv1(xt))).transpose(1, 2)
        emb = F.relu(self.att_conv1(xt))                         # (B, H, T)
        att = torch.sigmoid(self.att_conv2(emb)).squeeze(1)      # (B, T)
        emb = emb.transpose(1, 2)                                # (B, T, H)
        # CASE's cluster logits (case_head.cluster_logits: in training the prototype rows are
        # renormalised in place first, as released; in evaluation without writing them back, so
        # evaluating a checkpoint never changes it and one written before that rule evaluates as
        # it always did)
        logits = cluster_logits(emb, self.prototypes, self.temperature, self.training)
        return StreamOutput(cas, att, emb, logits)


class CaseModel(nn.Module):
    """Input (B, T, 2D) features, RGB channels first; returns {'rgb': StreamOutput, 'flow': ...}."""

    STREAMS = ("rgb", "flow")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        args = (cfg.stream_dim, cfg.hidden_dim, cfg.num_classes, cfg.num_clusters, cfg.temperature)
        self.rgb = CaseStream(*args)
        self.flow = CaseStream(*args)

    def forward(self, x: torch.Tensor):
        d = self.cfg.stream_dim
        if x.shape[-1] != 2 * d:
            raise ValueError(f"CaseModel expects features of width {2 * d} (RGB|flow), got {x.shape[-1]}")
        return {"rgb": self.rgb(x[..., :d]), "flow": self.flow(x[..., d:])}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: CaseModel, num_segments: int) -> int:
    """Multiply-accumulates of one forward pass on one video of ``num_segments`` snippets,
    counted by torch.utils.flop_counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, num_segments, 2 * model.cfg.stream_dim)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2
