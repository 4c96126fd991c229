"""Fused Sinkhorn-Knopp (method.md §4) with the optional in-kernel SCC rank prior (method.md §3.4).

Reference: ``case_fast.ops.sinkhorn_knopp.sinkhorn_reference`` (and ``sinkhorn_rank_prior_reference``).

Maths (scaling-vector form, derived from the reference's sequence of normalisations)
------------------------------------------------------------------------------------
Let z = L / (temperature * epsilon), m_c = max_n z_nc (column max), and G_nc = exp(z_nc - m_c) * P_nc
with P the prior (1 without one; exp(-d^2 / (2 sigma^2)) for the rank prior, *unnormalised*).
The reference divides G by its total and then, each iteration, divides columns by their sums,
multiplies by beta, divides rows by their sums and by M. Any per-column factor (the total, the
column-max shift, the prior's global normalisation) is cancelled by the first column
normalisation, and the iterate is always diag(u) G diag(v) with

    u^0 = 1;   for j = 1..n:  v_c = beta_c / sum_n u_n G_nc ;  u_n = 1 / (M sum_c G_nc v_c)
    output (x M):             Q_nc = G_nc v_c / sum_c' G_nc' v_c'

so each iteration needs only the C column sums of diag(u) G; u is recomputed per row from v on
the fly and G is recomputed from the logits (one exp) instead of being stored.
n_iters = 0 follows the reference exactly: Q = M * G / sum(G) with G shifted by the *global* max
(the prior's normalisation again cancels).

Launch designs
--------------
* ``single`` (M * BLOCK_C <= 8192, e.g. CCC's 16 x 2): one program holds the whole (padded)
  M x C tile in registers; 1 launch, no workspace, all reductions in registers.
* ``step`` (everything else, e.g. SCC's 12000 x 16 or M = 200k, C = 256): n_iters + 1 launches of
  a persistent grid (<= 4 x #SM programs, grid-stride over row tiles): launch 0 computes
  per-program online column (max, sum exp) pairs, launches 1..n-1 the partial sums of
  diag(u) G, the last one writes Q. Every launch re-reduces the previous launch's partials in a
  fixed order.

Determinism: no float atomics; each partial is written by exactly one program and reduced in a
fixed order by tl.sum / tl.max over a fixed tiling, so the same inputs on the same device give
the same bits (the tiling depends on M, C and the SM count only).

Precision: float32 inside for float16 / bfloat16 / float32 logits (output float32); float64
logits / prior / rank are refused (case_fast.ops sends them to the float64 reference).

One path: eager calls and torch.compile both go through the custom op
``case_fast_triton::sinkhorn`` (no gradient: the pseudo-labels are targets).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from case_fast.ops.sinkhorn_knopp import check_args

from .utils import num_warps, pow2, sm_count

_MAX_TILE = 8192  # elements of G the single program keeps in registers

PRIOR_NONE, PRIOR_TENSOR, PRIOR_RANK = 0, 1, 2


# ----------------------------------------------------------------------------------------------
# jit helpers
# ----------------------------------------------------------------------------------------------
@triton.jit
def _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc, stride_pm, stride_pc,
               scale, Mf, two_s2, PRIOR: tl.constexpr):
    """z (masked entries -inf) and the prior term q (tensor prior value, or log rank prior)."""
    rmask = rows < M
    cmask = cols < C
    m2 = rmask[:, None] & cmask[None, :]
    r64 = rows.to(tl.int64)
    x = tl.load(L + r64[:, None] * stride_lm + cols[None, :] * stride_lc, mask=m2, other=0.0)
    z = tl.where(m2, x.to(tl.float32) * scale, float("-inf"))
    if PRIOR == 1:
        q = tl.load(PR + r64[:, None] * stride_pm + cols[None, :] * stride_pc, mask=m2, other=0.0)
        q = q.to(tl.float32)
    elif PRIOR == 2:
        r = tl.load(R + rows, mask=rmask, other=0.0).to(tl.float32)
        fg = tl.load(FG + cols, mask=cmask, other=0.0).to(tl.float32)
        d = tl.abs((r[:, None] + 1.0) / Mf - (1.0 - fg[None, :]))
        q = -(d * d) / two_s2
    else:
        q = tl.zeros_like(z)
    return z, q


@triton.jit
def _gibbs(z, q, shift, PRIOR: tl.constexpr):
    """G = exp(z - shift_c) * prior; 0 at masked entries (z = -inf, shift finite)."""
    e = z - shift[None, :]
    if PRIOR == 2:
        e = e + q
    g = tl.exp(e)
    if PRIOR == 1:
        g = g * q
    return g


@triton.jit
def _safe(mx):
    return tl.where(mx == float("-inf"), 0.0, mx)


@triton.jit
def _load_beta(BETA, cols, C, HAS_BETA: tl.constexpr):
    cmask = cols < C
    if HAS_BETA:
        beta = tl.load(BETA + cols, mask=cmask, other=0.0).to(tl.float32)
    else:
        beta = tl.where(cmask, 1.0 / (C * 1.0), 0.0)
    return beta


@triton.jit
def _scale_v(beta, a, cols, C):
    return tl.where(cols < C, beta / tl.where(cols < C, a, 1.0), 0.0)


@triton.jit
def _combine_stats(WSM, WSS, nprog, cols, BLOCK_C: tl.constexpr, BLOCK_PC: tl.constexpr):
    """Global column max and sum of exp(z - max) * prior from per-program (max, sum) partials."""
    mx = tl.full([BLOCK_C], float("-inf"), tl.float32)
    p0 = 0
    while p0 < nprog:
        ps = p0 + tl.arange(0, BLOCK_PC)
        off = ps[:, None] * BLOCK_C + cols[None, :]
        mt = tl.load(WSM + off, mask=(ps < nprog)[:, None], other=float("-inf"),
                     cache_modifier=".cg")
        mx = tl.maximum(mx, tl.max(mt, axis=0))
        p0 += BLOCK_PC
    ms = _safe(mx)
    a = tl.zeros([BLOCK_C], tl.float32)
    p0 = 0
    while p0 < nprog:
        ps = p0 + tl.arange(0, BLOCK_PC)
        off = ps[:, None] * BLOCK_C + cols[None, :]
        pm = (ps < nprog)[:, None]
        mt = tl.load(WSM + off, mask=pm, other=float("-inf"), cache_modifier=".cg")
        st = tl.load(WSS + off, mask=pm, other=0.0, cache_modifier=".cg")
        a += tl.sum(st * tl.exp(mt - ms[None, :]), axis=0)
        p0 += BLOCK_PC
    return ms, a


@triton.jit
def _combine_sums(WS, nprog, cols, BLOCK_C: tl.constexpr, BLOCK_PC: tl.constexpr):
    a = tl.zeros([BLOCK_C], tl.float32)
    p0 = 0
    while p0 < nprog:
        ps = p0 + tl.arange(0, BLOCK_PC)
        st = tl.load(WS + ps[:, None] * BLOCK_C + cols[None, :], mask=(ps < nprog)[:, None],
                     other=0.0, cache_modifier=".cg")
        a += tl.sum(st, axis=0)
        p0 += BLOCK_PC
    return a


@triton.jit
def _store_q(OUT, rows, cols, M, C, q):
    """Rows ``rows`` of the (M, C) output."""
    omask = (rows < M)[:, None] & (cols < C)[None, :]
    tl.store(OUT + rows.to(tl.int64)[:, None] * C + cols[None, :], q, mask=omask)


@triton.jit
def _global_shift(ms, a, cols, C):
    """n_iters = 0: the global max and the total of exp(z - global max) * prior."""
    cm = cols < C
    gm = tl.max(tl.where(cm, ms, float("-inf")), axis=0)
    total = tl.sum(tl.where(cm, a * tl.exp(ms - gm), 0.0), axis=0)
    return gm, total


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
@triton.jit
def _sinkhorn_single_kernel(
        L, PR, R, FG, BETA, OUT,
        M, C, stride_lm, stride_lc, stride_pm, stride_pc,
        scale, two_s2, n_iters,
        PRIOR: tl.constexpr, HAS_BETA: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program keeps the whole BLOCK_M x BLOCK_C tile of G in registers for all iterations."""
    Mf = M * 1.0
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < M
    z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc, stride_pm, stride_pc,
                      scale, Mf, two_s2, PRIOR)
    beta = _load_beta(BETA, cols, C, HAS_BETA)
    ms = _safe(tl.max(z, axis=0))
    a = tl.sum(_gibbs(z, q, ms, PRIOR), axis=0)
    if n_iters == 0:
        gm, total = _global_shift(ms, a, cols, C)
        g0 = _gibbs(z, q, tl.zeros([BLOCK_C], tl.float32) + gm, PRIOR)
        _store_q(OUT, rows, cols, M, C, g0 / total * Mf)
    else:
        g = _gibbs(z, q, ms, PRIOR)
        v = _scale_v(beta, a, cols, C)
        it = 1
        while it < n_iters:
            rs = tl.sum(g * v[None, :], axis=1)
            u = tl.where(rmask, 1.0 / (Mf * tl.where(rmask, rs, 1.0)), 0.0)
            v = _scale_v(beta, tl.sum(u[:, None] * g, axis=0), cols, C)
            it += 1
        gv = g * v[None, :]
        rs = tl.where(rmask, tl.sum(gv, axis=1), 1.0)
        _store_q(OUT, rows, cols, M, C, gv / rs[:, None])


@triton.jit
def _sinkhorn_step_kernel(
        L, PR, R, FG, BETA, OUT, WS,
        M, C, stride_lm, stride_lc, stride_pm, stride_pc,
        scale, two_s2, n_iters, step, nprog,
        PRIOR: tl.constexpr, HAS_BETA: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_PC: tl.constexpr):
    """Pass ``step`` (0..n_iters, or 0..1 when n_iters = 0) of a persistent grid-stride launch."""
    pid = tl.program_id(0)
    Mf = M * 1.0
    num_tiles = tl.cdiv(M, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    slot = 2 * nprog * BLOCK_C
    pofs = pid * BLOCK_C + cols
    if step == 0:
        m_run = tl.full([BLOCK_C], float("-inf"), tl.float32)
        s_run = tl.zeros([BLOCK_C], tl.float32)
        t = pid
        while t < num_tiles:
            rows = t * BLOCK_M + tl.arange(0, BLOCK_M)
            z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc, stride_pm,
                              stride_pc, scale, Mf, two_s2, PRIOR)
            m_new = tl.maximum(m_run, tl.max(z, axis=0))
            msf = _safe(m_new)
            s_run = s_run * tl.exp(m_run - msf) + tl.sum(_gibbs(z, q, msf, PRIOR), axis=0)
            m_run = m_new
            t += nprog
        tl.store(WS + pofs, m_run)
        tl.store(WS + nprog * BLOCK_C + pofs, s_run)
    else:
        ms, a = _combine_stats(WS, WS + nprog * BLOCK_C, nprog, cols, BLOCK_C, BLOCK_PC)
        if n_iters == 0:
            gm, total = _global_shift(ms, a, cols, C)
            shift = tl.zeros([BLOCK_C], tl.float32) + gm
            t = pid
            while t < num_tiles:
                rows = t * BLOCK_M + tl.arange(0, BLOCK_M)
                z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc,
                                  stride_pm, stride_pc, scale, Mf, two_s2, PRIOR)
                _store_q(OUT, rows, cols, M, C, _gibbs(z, q, shift, PRIOR) / total * Mf)
                t += nprog
        else:
            beta = _load_beta(BETA, cols, C, HAS_BETA)
            if step >= 2:
                a = _combine_sums(WS + (step - 1) * slot, nprog, cols, BLOCK_C, BLOCK_PC)
            v = _scale_v(beta, a, cols, C)
            if step < n_iters:
                part = tl.zeros([BLOCK_C], tl.float32)
                t = pid
                while t < num_tiles:
                    rows = t * BLOCK_M + tl.arange(0, BLOCK_M)
                    z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc,
                                      stride_pm, stride_pc, scale, Mf, two_s2, PRIOR)
                    g = _gibbs(z, q, ms, PRIOR)
                    rs = tl.sum(g * v[None, :], axis=1)
                    u = tl.where(rows < M, 1.0 / (Mf * tl.where(rows < M, rs, 1.0)), 0.0)
                    part += tl.sum(u[:, None] * g, axis=0)
                    t += nprog
                tl.store(WS + step * slot + pofs, part)
            else:
                t = pid
                while t < num_tiles:
                    rows = t * BLOCK_M + tl.arange(0, BLOCK_M)
                    z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc,
                                      stride_pm, stride_pc, scale, Mf, two_s2, PRIOR)
                    gv = _gibbs(z, q, ms, PRIOR) * v[None, :]
                    rs = tl.where(rows < M, tl.sum(gv, axis=1), 1.0)
                    _store_q(OUT, rows, cols, M, C, gv / rs[:, None])
                    t += nprog


# ----------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------
def _launch(logits, prior, rank, fg, beta, n_iters, scale, two_s2, mode=None, step_programs=None):
    """``mode``: 'single' or 'step' (default: by size); ``step_programs``: the step grid's size
    (default min(row tiles, 4 x #SM)). The tests force both to cover each design at small sizes."""
    m, c = logits.shape
    dev = logits.device
    out = torch.empty((m, c), dtype=torch.float32, device=dev)
    if m * c == 0:
        return out
    block_c = pow2(c)
    if prior is not None:
        kind, pr, spm, spc = PRIOR_TENSOR, prior, prior.stride(0), prior.stride(1)
    elif rank is not None:
        kind, pr, spm, spc = PRIOR_RANK, logits, 0, 0
    else:
        kind, pr, spm, spc = PRIOR_NONE, logits, 0, 0
    r = rank if rank is not None else logits
    f = fg if fg is not None else logits
    b = beta if beta is not None else logits
    common = dict(PRIOR=kind, HAS_BETA=beta is not None, BLOCK_C=block_c)
    if mode is None:
        mode = "single" if pow2(m) * block_c <= _MAX_TILE else "step"
    if mode == "single":
        block_m = pow2(m)
        _sinkhorn_single_kernel[(1,)](
            logits, pr, r, f, b, out, m, c, logits.stride(0), logits.stride(1), spm, spc, scale,
            two_s2, n_iters, BLOCK_M=block_m, num_warps=num_warps(block_m * block_c, cap=16),
            **common)
        return out
    block_m = max(1, min(pow2(m), 4096 // block_c))
    num_tiles = -(-m // block_m)
    nprog = step_programs or min(num_tiles, 4 * sm_count(dev))
    ws = torch.empty(max(n_iters, 1) * 2 * nprog * block_c, dtype=torch.float32, device=dev)
    block_pc = max(1, min(pow2(nprog), 4096 // block_c))
    for step in range(max(n_iters, 1) + 1):
        _sinkhorn_step_kernel[(nprog,)](
            logits, pr, r, f, b, out, ws, m, c, logits.stride(0), logits.stride(1), spm, spc,
            scale, two_s2, n_iters, step, nprog, BLOCK_M=block_m, BLOCK_PC=block_pc,
            num_warps=num_warps(block_m * block_c), **common)
    return out


def _to_device(t: Optional[torch.Tensor], dev: torch.device) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().reshape(-1).to(dev).contiguous()


def _sinkhorn_impl(logits, prior, col_marginal, rank, fg_prob, n_iters, epsilon, temperature,
                   sigma, mode=None, step_programs=None):
    check_args(logits, prior, col_marginal, n_iters, rank, fg_prob)
    if any(t is not None and t.dtype == torch.float64 for t in (logits, prior, rank, fg_prob)):
        raise ValueError("sinkhorn_triton: float64 inputs are not taken (the kernel computes in "
                         "float32; use the reference)")
    dev = logits.device
    with torch.no_grad():
        return _launch(logits.detach(), None if prior is None else prior.detach(),
                       _to_device(rank, dev), _to_device(fg_prob, dev),
                       _to_device(col_marginal, dev), int(n_iters),
                       1.0 / (temperature * epsilon), 2.0 * sigma * sigma, mode, step_programs)


# ----------------------------------------------------------------------------------------------
# torch.library custom op (what torch.compile sees) and the public wrapper
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("case_fast_triton::sinkhorn", mutates_args=())
def _sinkhorn_op(logits: torch.Tensor, prior: Optional[torch.Tensor],
                 col_marginal: Optional[torch.Tensor], rank: Optional[torch.Tensor],
                 fg_prob: Optional[torch.Tensor], n_iters: int, epsilon: float,
                 temperature: float, sigma: float) -> torch.Tensor:
    return _sinkhorn_impl(logits, prior, col_marginal, rank, fg_prob, n_iters, epsilon,
                          temperature, sigma)


@_sinkhorn_op.register_fake
def _sinkhorn_fake(logits, prior, col_marginal, rank, fg_prob, n_iters, epsilon, temperature,
                   sigma):
    return logits.new_empty(logits.shape, dtype=torch.float32)


def sinkhorn_triton(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
                    col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3,
                    epsilon: float = 0.05, temperature: float = 10.0,
                    rank: Optional[torch.Tensor] = None, fg_prob: Optional[torch.Tensor] = None,
                    sigma: float = 10.0) -> torch.Tensor:
    """Fused Sinkhorn (see the module docstring); same result as ``sinkhorn_reference`` (or
    ``sinkhorn_rank_prior_reference`` when ``rank``/``fg_prob`` are given, the prior then being
    computed in-kernel and never materialised). No gradient. float16 / bfloat16 / float32 inputs;
    the custom op ``case_fast_triton::sinkhorn`` in eager mode and under torch.compile.
    """
    if prior is not None and rank is not None:
        raise ValueError("sinkhorn: give either prior or rank/fg_prob, not both")
    return _sinkhorn_op(logits, prior, col_marginal, rank, fg_prob, int(n_iters), float(epsilon),
                        float(temperature), float(sigma))


__all__ = ["sinkhorn_triton"]
