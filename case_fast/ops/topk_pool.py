"""Top-k multiple-instance pooling (method.md §3.1): the op and its reference."""
from __future__ import annotations

from typing import Sequence, Union

import torch

from ._backend import triton_fast

Values = Union[torch.Tensor, Sequence[torch.Tensor]]


def check_args(scores: torch.Tensor, values: Sequence[torch.Tensor], k: int) -> None:
    """The argument checks of every top-k pooling implementation (ValueError)."""
    if scores.dim() != 3:
        raise ValueError(f"topk_mil_pool: scores must be (B, T, G), got shape {tuple(scores.shape)}")
    for v in values:
        if v.shape != scores.shape:
            raise ValueError(f"topk_mil_pool: values shape {tuple(v.shape)} != scores shape {tuple(scores.shape)}")
    t = scores.shape[1]
    if not 1 <= k <= t:
        raise ValueError(f"topk_mil_pool: k={k} must be in [1, T={t}] (a video needs at least k snippets)")


def topk_indices_reference(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k, G) int64 time indices of the k largest scores per (video, class); no gradient."""
    return torch.topk(scores.detach(), k, dim=1).indices


def topk_mil_pool_reference(scores: torch.Tensor, values: Values, k: int):
    """Mean of ``values`` at the top-k time indices of ``scores`` per (video, class).

    Returns ``(pooled, indices)``: pooled is a (B, G) tensor, or a tuple of them when ``values``
    is a sequence (one per stream); indices is (B, k, G) int64. Gradient flows to the values
    (1/k at each selected position), never through the selection.
    """
    single = isinstance(values, torch.Tensor)
    vals = [values] if single else list(values)
    check_args(scores, vals, k)
    idx = topk_indices_reference(scores, k)
    pooled = tuple(torch.gather(v, 1, idx).mean(dim=1) for v in vals)
    return (pooled[0] if single else pooled), idx


def topk_mil_pool(scores: torch.Tensor, values, k: int, *, backend: str = "auto"):
    """Top-k MIL pooling (method.md §3.1): mean of ``values`` (B, T, G) — or a sequence of such
    tensors, one per stream — at the top-k time indices of ``scores`` per (video, class).

    Returns ``(pooled, indices)``: (B, G) (a tuple for a sequence of values) and (B, k, G) int64.
    Gradient reaches the values only (1/k at the selected positions).
    """
    if triton_fast(backend, "topk_mil_pool", scores):
        from case_fast.kernels.topk_pool import topk_mil_pool_triton
        return topk_mil_pool_triton(scores, values, k)
    return topk_mil_pool_reference(scores, values, k)
