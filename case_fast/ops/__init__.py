"""case_fast.ops: the method's numerical building blocks, usable from any WTAL codebase.

    from case_fast.ops import sinkhorn, sinkhorn_rank_prior, topk_mil_pool, temporal_nms

Each op has a plain PyTorch/NumPy reference in this package and a fast implementation (Triton
kernels for CUDA tensors, a compiled extension for NMS). ``backend=`` (or ``set_backend`` /
``CASE_FAST_BACKEND``) picks: 'auto' (default: fast where it applies), 'reference', 'fast'.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._backend import BACKENDS, get_backend, resolve, set_backend, warn_once
from .sinkhorn import (prior_rank, rank_prior, sinkhorn_rank_prior_reference, sinkhorn_reference)
from .topk_pool import topk_indices_reference, topk_mil_pool_reference


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _use_triton(backend: Optional[str], t: torch.Tensor, op: str) -> bool:
    b = resolve(backend)
    if b == "reference":
        return False
    if b == "auto":
        return t.is_cuda and _triton_available()
    if not _triton_available():
        raise RuntimeError(f"{op}: backend='fast' needs triton, which is not installed")
    return True


def sinkhorn(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
             col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3, epsilon: float = 0.05,
             temperature: float = 10.0, *, backend: Optional[str] = None) -> torch.Tensor:
    """Sinkhorn-Knopp pseudo-labels Q (M, C) from logits L (M, C), rows summing to 1 (SPEC §4).

    G = exp(L / temperature / epsilon) * prior; ``n_iters`` rounds of column normalisation to the
    marginal ``col_marginal`` (default uniform 1/C) and row normalisation. No gradient. float32
    inside (float64 for float64 input); half inputs are computed in float32.
    """
    if _use_triton(backend, logits, "sinkhorn"):
        from case_fast.kernels.sinkhorn import sinkhorn_triton
        return sinkhorn_triton(logits, prior=prior, col_marginal=col_marginal, n_iters=n_iters,
                               epsilon=epsilon, temperature=temperature)
    return sinkhorn_reference(logits, prior, col_marginal, n_iters, epsilon, temperature)


def sinkhorn_rank_prior(logits: torch.Tensor, rank: torch.Tensor, fg_prob: torch.Tensor,
                        sigma: float = 10.0, col_marginal: Optional[torch.Tensor] = None,
                        n_iters: int = 3, epsilon: float = 0.05, temperature: float = 10.0, *,
                        backend: Optional[str] = None) -> torch.Tensor:
    """Sinkhorn with CASE's SCC prior (SPEC §3.4) computed from the rank vector (N,), the
    per-cluster foreground probability (K,) and sigma. The fused kernel never materialises the
    (N, K) prior; the reference does (``rank_prior``). Use ``prior_rank(attention, mode)`` for r.
    """
    if _use_triton(backend, logits, "sinkhorn_rank_prior"):
        from case_fast.kernels.sinkhorn import sinkhorn_triton
        return sinkhorn_triton(logits, col_marginal=col_marginal, n_iters=n_iters, epsilon=epsilon,
                               temperature=temperature, rank=rank, fg_prob=fg_prob, sigma=sigma)
    return sinkhorn_rank_prior_reference(logits, rank, fg_prob, sigma, col_marginal, n_iters,
                                         epsilon, temperature)


def topk_mil_pool(scores: torch.Tensor, values, k: int, *, backend: Optional[str] = None):
    """Top-k MIL pooling (SPEC §3.1): mean of ``values`` (B, T, G) — or a sequence of such
    tensors, one per stream — at the top-k time indices of ``scores`` per (video, class).

    Returns ``(pooled, indices)``: (B, G) (a tuple for a sequence of values) and (B, k, G) int64.
    Gradient reaches the values only (1/k at the selected positions).
    """
    if _use_triton(backend, scores, "topk_mil_pool"):
        from case_fast.kernels.topk_pool import topk_mil_pool_triton
        return topk_mil_pool_triton(scores, values, k)
    return topk_mil_pool_reference(scores, values, k)


_NMS_NAMES = ("temporal_nms", "nms_reference", "extension_available", "NMS_METHODS")


def __getattr__(name):  # NMS lives in its own module (it loads the compiled extension lazily)
    if name in _NMS_NAMES:
        from . import nms
        return getattr(nms, name)
    raise AttributeError(f"module 'case_fast.ops' has no attribute {name!r}")


__all__ = ["sinkhorn", "sinkhorn_rank_prior", "topk_mil_pool", "prior_rank", "rank_prior",
           "sinkhorn_reference", "sinkhorn_rank_prior_reference", "topk_mil_pool_reference",
           "topk_indices_reference", "set_backend", "get_backend", "BACKENDS", "warn_once",
           *_NMS_NAMES]
