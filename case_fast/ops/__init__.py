"""case_fast.ops: the method's numerical building blocks, usable from any WTAL codebase.

    from case_fast.ops import sinkhorn, sinkhorn_rank_prior, topk_mil_pool, temporal_nms

Each op has two implementations: the plain PyTorch/NumPy reference in this package (its
executable definition) and a fast one (a Triton kernel in case_fast.kernels for CUDA tensors; the
compiled extension case_fast._C for NMS). ``backend=`` picks, with the same words for every op:
'auto' (default: fast when available for these inputs, else the reference), 'reference', 'fast'
(an error when it is not available). Nothing global is kept.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._backend import BACKENDS, triton_runs, use_fast
from ._extension import available as extension_available
from .nms import NMS_METHODS, nms_reference, temporal_nms
from .sinkhorn import (prior_rank, rank_prior, sinkhorn_rank_prior_reference, sinkhorn_reference)
from .topk_pool import topk_indices_reference, topk_mil_pool_reference


def _triton_fast(backend: str, op: str, t: torch.Tensor, *float64_refused) -> bool:
    """The Triton kernels take CUDA tensors (see ``triton_runs``); the Sinkhorn kernel computes in
    float32 and refuses float64 logits / prior / rank."""
    ok = triton_runs(t, backend) and all(x is None or x.dtype != torch.float64
                                         for x in float64_refused)
    return use_fast(backend, ok, lambda: RuntimeError(
        f"{op}: backend='fast' needs triton and CUDA tensors (or TRITON_INTERPRET=1)"
        + (", not float64" if float64_refused else "")))


def sinkhorn(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
             col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3, epsilon: float = 0.05,
             temperature: float = 10.0, *, backend: str = "auto") -> torch.Tensor:
    """Sinkhorn-Knopp pseudo-labels Q (M, C) from logits L (M, C), rows summing to 1 (method.md §4).

    G = exp(L / temperature / epsilon) * prior; ``n_iters`` rounds of column normalisation to the
    marginal ``col_marginal`` (default uniform 1/C) and row normalisation. No gradient. float32
    inside (float64 for float64 input, which only the reference takes); half inputs are computed
    in float32.
    """
    if _triton_fast(backend, "sinkhorn", logits, logits, prior):
        from case_fast.kernels.sinkhorn import sinkhorn_triton
        return sinkhorn_triton(logits, prior=prior, col_marginal=col_marginal, n_iters=n_iters,
                               epsilon=epsilon, temperature=temperature)
    return sinkhorn_reference(logits, prior, col_marginal, n_iters, epsilon, temperature)


def sinkhorn_rank_prior(logits: torch.Tensor, rank: torch.Tensor, fg_prob: torch.Tensor,
                        sigma: float = 10.0, col_marginal: Optional[torch.Tensor] = None,
                        n_iters: int = 3, epsilon: float = 0.05, temperature: float = 10.0, *,
                        backend: str = "auto") -> torch.Tensor:
    """Sinkhorn with CASE's SCC prior (method.md §3.4) computed from the rank vector (N,), the
    per-cluster foreground probability (K,) and sigma. The fused kernel never materialises the
    (N, K) prior; the reference does (``rank_prior``). Use ``prior_rank(attention, mode)`` for r.
    """
    if _triton_fast(backend, "sinkhorn_rank_prior", logits, logits, rank, fg_prob):
        from case_fast.kernels.sinkhorn import sinkhorn_triton
        return sinkhorn_triton(logits, col_marginal=col_marginal, n_iters=n_iters, epsilon=epsilon,
                               temperature=temperature, rank=rank, fg_prob=fg_prob, sigma=sigma)
    return sinkhorn_rank_prior_reference(logits, rank, fg_prob, sigma, col_marginal, n_iters,
                                         epsilon, temperature)


def topk_mil_pool(scores: torch.Tensor, values, k: int, *, backend: str = "auto"):
    """Top-k MIL pooling (method.md §3.1): mean of ``values`` (B, T, G) — or a sequence of such
    tensors, one per stream — at the top-k time indices of ``scores`` per (video, class).

    Returns ``(pooled, indices)``: (B, G) (a tuple for a sequence of values) and (B, k, G) int64.
    Gradient reaches the values only (1/k at the selected positions).
    """
    if _triton_fast(backend, "topk_mil_pool", scores):
        from case_fast.kernels.topk_pool import topk_mil_pool_triton
        return topk_mil_pool_triton(scores, values, k)
    return topk_mil_pool_reference(scores, values, k)


__all__ = ["sinkhorn", "sinkhorn_rank_prior", "topk_mil_pool", "prior_rank", "rank_prior",
           "sinkhorn_reference", "sinkhorn_rank_prior_reference", "topk_mil_pool_reference",
           "topk_indices_reference", "temporal_nms", "nms_reference", "NMS_METHODS",
           "extension_available", "BACKENDS"]
