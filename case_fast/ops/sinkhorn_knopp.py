"""Sinkhorn-Knopp pseudo-labelling (method.md §4) and the rank prior of SCC (method.md §3.4): the ops
(``sinkhorn``, ``sinkhorn_rank_prior``) and their references.

The reference follows the released code's sequence of normalisations exactly (it is what the
faithful tests compare against); the fused Triton kernel uses the equivalent scaling-vector form.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._backend import triton_fast


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def check_args(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
               col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3,
               rank: Optional[torch.Tensor] = None, fg_prob: Optional[torch.Tensor] = None) -> None:
    """The argument checks of every Sinkhorn implementation (ValueError)."""
    if logits.dim() != 2:
        raise ValueError(f"sinkhorn: logits must be (M, C), got shape {tuple(logits.shape)}")
    m, c = logits.shape
    if prior is not None and prior.shape != logits.shape:
        raise ValueError(f"sinkhorn: prior shape {tuple(prior.shape)} != logits shape "
                         f"{tuple(logits.shape)}")
    if col_marginal is not None and col_marginal.numel() != c:
        raise ValueError(f"sinkhorn: col_marginal has {col_marginal.numel()} entries, logits have "
                         f"{c} columns")
    if n_iters < 0:
        raise ValueError(f"sinkhorn: n_iters must be >= 0, got {n_iters}")
    if (rank is None) != (fg_prob is None):
        raise ValueError("sinkhorn: the rank prior needs both rank and fg_prob")
    if rank is not None and (rank.numel() != m or fg_prob.numel() != c):
        raise ValueError(f"sinkhorn_rank_prior: rank has {rank.numel()} entries and fg_prob "
                         f"{fg_prob.numel()}, logits are {m} x {c}")


def prior_rank(attention: torch.Tensor, mode: str = "faithful") -> torch.Tensor:
    """The vector r of method.md §3.4 from the fused attention a (length N).

    faithful: r = argsort(-a), used directly as if it were a rank (the released code's quirk).
    paper:    r_n = rank of snippet n when a is sorted in descending order (0 = highest).
    Returned as float (the prior only uses (r + 1) / N).
    """
    a = attention.reshape(-1)
    order = torch.argsort(-a)
    if mode == "faithful":
        return order.to(_work_dtype(a))
    if mode == "paper":
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=order.device)
        return rank.to(_work_dtype(a))
    raise ValueError(f"mode must be 'faithful' or 'paper', got {mode!r}")


def rank_prior(rank: torch.Tensor, fg_prob: torch.Tensor, sigma: float = 10.0) -> torch.Tensor:
    """Q̂^S (N, K): exp(-d^2 / (2 sigma^2)), d = |(r_n + 1)/N - (1 - fg_k)|, normalised to sum 1."""
    dtype = torch.promote_types(_work_dtype(rank), _work_dtype(fg_prob))
    r = rank.reshape(-1).to(dtype)
    fg = fg_prob.reshape(-1).to(dtype)
    n = r.numel()
    d = ((r[:, None] + 1.0) / n - (1.0 - fg[None, :])).abs()
    q = torch.exp(-d.square() / (2.0 * sigma * sigma))
    return q / q.sum()


@torch.no_grad()
def sinkhorn_reference(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
                       col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3,
                       epsilon: float = 0.05, temperature: float = 10.0) -> torch.Tensor:
    """Q (M, C), each row summing to 1.

    G = exp(L / temperature / epsilon) * prior, normalised by its total; then n_iters times:
    columns divided by their sums and scaled by beta_c, rows divided by their sums and by M;
    finally times M. Computed in float32 (float64 for float64 input). The exponent is shifted by
    each column's maximum, which the first column normalisation cancels exactly, so no logit can
    overflow it.
    """
    check_args(logits, prior, col_marginal, n_iters)
    m, c = logits.shape
    dtype = _work_dtype(logits)
    if m == 0 or c == 0:
        return torch.zeros((m, c), dtype=dtype, device=logits.device)
    z = logits.to(dtype) * (1.0 / (temperature * epsilon))
    if n_iters > 0:
        z = z - z.amax(dim=0, keepdim=True)
    else:
        z = z - z.max()
    g = torch.exp(z)
    if prior is not None:
        g = g * prior.to(dtype)
    g = g / g.sum()
    if col_marginal is None:
        beta = torch.full((c,), 1.0 / c, dtype=dtype, device=logits.device)
    else:
        beta = col_marginal.reshape(-1).to(device=logits.device, dtype=dtype)
    for _ in range(n_iters):
        g = g / g.sum(dim=0, keepdim=True)
        g = g * beta[None, :]
        g = g / g.sum(dim=1, keepdim=True)
        g = g / m
    return g * m


def sinkhorn_rank_prior_reference(logits, rank, fg_prob, sigma=10.0, col_marginal=None, n_iters=3,
                                  epsilon=0.05, temperature=10.0):
    """Sinkhorn with the SCC rank prior built from (rank, fg_prob, sigma) (materialised here)."""
    check_args(logits, None, col_marginal, n_iters, rank, fg_prob)
    prior = rank_prior(rank.to(logits.device), fg_prob.to(logits.device), sigma)
    return sinkhorn_reference(logits, prior, col_marginal, n_iters, epsilon, temperature)


def sinkhorn(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
             col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3, epsilon: float = 0.05,
             temperature: float = 10.0, *, backend: str = "auto") -> torch.Tensor:
    """Sinkhorn-Knopp pseudo-labels Q (M, C) from logits L (M, C), rows summing to 1 (method.md §4).

    G = exp(L / temperature / epsilon) * prior; ``n_iters`` rounds of column normalisation to the
    marginal ``col_marginal`` (default uniform 1/C) and row normalisation. No gradient. float32
    inside (float64 for float64 input, which only the reference takes); half inputs are computed
    in float32.
    """
    if triton_fast(backend, "sinkhorn", logits, logits, prior):
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
    if triton_fast(backend, "sinkhorn_rank_prior", logits, logits, rank, fg_prob):
        from case_fast.kernels.sinkhorn import sinkhorn_triton
        return sinkhorn_triton(logits, col_marginal=col_marginal, n_iters=n_iters, epsilon=epsilon,
                               temperature=temperature, rank=rank, fg_prob=fg_prob, sigma=sigma)
    return sinkhorn_rank_prior_reference(logits, rank, fg_prob, sigma, col_marginal, n_iters,
                                         epsilon, temperature)
