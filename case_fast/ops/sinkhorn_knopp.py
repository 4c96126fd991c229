"""Sinkhorn-Knopp pseudo-labelling (method.md §4) and the rank prior of SCC (method.md §3.4): the ops
(``sinkhorn``, ``sinkhorn_rank_prior``) and their references.

The reference follows the released code's sequence of normalisations exactly (it is what the
faithful tests compare against); the fused Triton kernel uses the equivalent scaling-vector form.

Rows may be spread over the processes of a data-parallel job: the rank vector, the prior and the
reference Sinkhorn take a ``coll`` hook (``sum``, ``max``, ``cat`` over processes, ``rank`` and
``world``; ``distributed.ProcessGroup`` is one) through which every batch-wide quantity passes.
The default, :data:`LOCAL`, is one process: every collective returns its argument, so the
single-process arithmetic is exactly the plain one.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._backend import triton_fast


class LocalCollectives:
    """The collectives of one process: every reduction over processes is the identity."""
    rank = 0
    world = 1

    @staticmethod
    def sum(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def max(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def cat(t: torch.Tensor) -> torch.Tensor:
        return t


LOCAL = LocalCollectives()


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


def prior_rank(attention: torch.Tensor, mode: str = "faithful", coll=LOCAL) -> torch.Tensor:
    """The vector r of method.md §3.4 from the fused attention a (length N).

    faithful: r = argsort(-a), used directly as if it were a rank (the released code's quirk).
    paper:    r_n = rank of snippet n when a is sorted in descending order (0 = highest).
    Returned as float (the prior only uses (r + 1) / N). With rows spread over processes, the
    attention of all of them is gathered (process order = batch order), ordered once (the same
    result on every process) and this process's slice of r is returned.
    """
    a = attention.detach().reshape(-1)
    n = a.numel()
    order = torch.argsort(-coll.cat(a))
    if mode == "faithful":
        full = order.to(_work_dtype(a))
    elif mode == "paper":
        full = torch.empty_like(order)
        full[order] = torch.arange(order.numel(), device=order.device)
        full = full.to(_work_dtype(a))
    else:
        raise ValueError(f"mode must be 'faithful' or 'paper', got {mode!r}")
    return full if coll.world == 1 else full[coll.rank * n:(coll.rank + 1) * n]


def rank_prior(rank: torch.Tensor, fg_prob: torch.Tensor, sigma: float = 10.0,
               coll=LOCAL) -> torch.Tensor:
    """Q̂^S (N, K): exp(-d^2 / (2 sigma^2)), d = |(r_n + 1)/N - (1 - fg_k)|, normalised to sum 1
    over all N·K entries. With rows spread over equal slices on processes, N is the global count
    and the normalising total is summed over processes; these are this process's rows."""
    dtype = torch.promote_types(_work_dtype(rank), _work_dtype(fg_prob))
    r = rank.reshape(-1).to(dtype)
    fg = fg_prob.reshape(-1).to(device=r.device, dtype=dtype)
    n = r.numel() * coll.world
    d = ((r[:, None] + 1.0) / n - (1.0 - fg[None, :])).abs()
    q = torch.exp(-d.square() / (2.0 * sigma * sigma))
    return q / coll.sum(q.sum())


@torch.no_grad()
def sinkhorn_reference(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
                       col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3,
                       epsilon: float = 0.05, temperature: float = 10.0,
                       coll=LOCAL) -> torch.Tensor:
    """Q (M, C), each row summing to 1.

    G = exp(L / temperature / epsilon) * prior, normalised by its total; then n_iters times:
    columns divided by their sums and scaled by beta_c, rows divided by their sums and by M;
    finally times M. Computed in float32 (float64 for float64 input). The exponent is shifted by
    each column's maximum, which the first column normalisation cancels exactly, so no logit can
    overflow it.

    ``coll``: rows spread over equal slices on processes (see the module's docstring): the column
    maxima, the total and the column sums of every iteration are reduced over processes, M is the
    global row count, and this process's rows of Q are returned.
    """
    check_args(logits, prior, col_marginal, n_iters)
    m_local, c = logits.shape
    m = m_local * coll.world
    dtype = _work_dtype(logits)
    if m == 0 or c == 0:
        return torch.zeros((m_local, c), dtype=dtype, device=logits.device)
    z = logits.to(dtype) * (1.0 / (temperature * epsilon))
    if n_iters > 0:
        z = z - coll.max(z.amax(dim=0, keepdim=True))
    else:
        z = z - coll.max(z.max())
    g = torch.exp(z)
    if prior is not None:
        g = g * prior.to(dtype)
    g = g / coll.sum(g.sum())
    if col_marginal is None:
        beta = torch.full((c,), 1.0 / c, dtype=dtype, device=logits.device)
    else:
        beta = col_marginal.reshape(-1).to(device=logits.device, dtype=dtype)
    for _ in range(n_iters):
        g = g / coll.sum(g.sum(dim=0, keepdim=True))
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
