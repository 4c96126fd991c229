"""The losses of method.md §3: video MIL loss, generalized BCE attention loss, and the soft
cross-entropies of SCC and CCC."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def video_loss(video_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between softmax over classes of the (B, G) video scores and the multi-hot
    label divided by its sum (+1e-10), averaged over videos."""
    target = labels / (labels.sum(dim=1, keepdim=True) + 1e-10)
    return -(target * F.log_softmax(video_logits, dim=1)).sum(dim=1).mean()


def gce_loss(attention: torch.Tensor, pseudo: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Generalized binary cross-entropy of P^A (B, T) against Q^A (B, T), averaged over videos:
    sum_pos (1 - (p + 1e-7)^q) / q / (n_pos + 1e-7) + sum_neg (1 - (1 - p + 1e-7)^q) / q / (n_neg + 1e-7)."""
    pos = pseudo
    neg = 1.0 - pseudo
    l_pos = (pos * (1.0 - (attention + 1e-7) ** q) / q).sum(dim=1) / (pos.sum(dim=1) + 1e-7)
    l_neg = (neg * (1.0 - (1.0 - attention + 1e-7) ** q) / q).sum(dim=1) / (neg.sum(dim=1) + 1e-7)
    return (l_pos + l_neg).mean()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_k target * log_softmax(logits) (SCC over snippets, CCC over clusters)."""
    return -(target.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
