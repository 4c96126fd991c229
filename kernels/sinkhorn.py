"""Fused Sinkhorn-Knopp (SPEC §4) with the optional in-kernel SCC rank prior (SPEC §3.4).

Reference: ``case_fast.ops.sinkhorn.sinkhorn_reference`` (and ``sinkhorn_rank_prior_reference``).

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
* ``single`` (M * BLOCK_C <= 8192): one program holds the whole (padded) M x C tile in
  registers; 1 launch, no workspace, all reductions in registers.
* ``grid`` (CUDA, when ceil(M / #SM) rows x BLOCK_C <= 8192, i.e. 12000 x 16 and 12000 x 64):
  one launch of P <= #SM programs, each keeping its row block of G in registers for all
  iterations; column sums are exchanged through a workspace of per-program partials
  (P x C per pass, never overwritten) and a grid barrier made of per-program epoch flags
  (idempotent stores + polling; every program then reduces the P partials itself in the same
  fixed order). Needs all P programs co-resident: P <= number of SMs, one CTA each (not
  guaranteed under MPS / SM partitioning, where a spin barrier could wait forever). It has not
  yet run on hardware, so it is **opt-in**: CASE_FAST_SINKHORN_GRID_SYNC=1 enables it (default
  0: ``step`` is used); ``bench/gpu_check.sh`` smoke-tests it and benchmarks both. Not run by the CPU interpreter for P > 1
  (its programs run one after another), whose tests use ``step``, which shares the partial-sum
  code.
* ``step`` (everything else, e.g. M = 200k, C = 256): n_iters + 1 launches of a persistent grid
  (<= 4 x #SM programs, grid-stride over row tiles): launch 0 computes per-program online column
  (max, sum exp) pairs, launches 1..n-1 the partial sums of diag(u) G, the last one writes Q.
  Every launch re-reduces the previous launch's partials in a fixed order.

Determinism: no float atomics; each partial is written by exactly one program and reduced in a
fixed order by tl.sum / tl.max over a fixed tiling, so the same inputs on the same device give
the same bits (the tiling depends on M, C and the SM count only).

Precision: float32 inside for float16 / bfloat16 / float32 logits (output float32); float64
logits use the float64 reference (exact semantics, no fp64 kernel).
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from case_fast.ops.sinkhorn import sinkhorn_rank_prior_reference, sinkhorn_reference

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_MAX_TILE = 8192  # elements of G a program keeps in registers (resident designs)

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
def _global_shift(ms, a, cols, C):
    """n_iters = 0: the global max and the total of exp(z - global max) * prior."""
    cm = cols < C
    gm = tl.max(tl.where(cm, ms, float("-inf")), axis=0)
    total = tl.sum(tl.where(cm, a * tl.exp(ms - gm), 0.0), axis=0)
    return gm, total


@triton.jit
def _grid_barrier(FLAGS, pid, nprog, epoch, BLOCK_P: tl.constexpr):
    """All programs of the launch reach this point (epoch = 1, 2, ...; flags start at 0).

    Each program publishes ``epoch`` in its own flag (an idempotent exchange, correct however
    many threads issue it) with release semantics after a CTA barrier, then polls every flag
    until all reached ``epoch``; the acquire exchange and the CTA barrier order the following
    (L1-bypassing) partial loads after the other programs' partial stores.
    """
    tl.debug_barrier()
    tl.atomic_xchg(FLAGS + pid, epoch, sem="release", scope="gpu")
    ps = tl.arange(0, BLOCK_P)
    pm = ps < nprog
    low = tl.min(tl.load(FLAGS + ps, mask=pm, other=epoch, volatile=True), axis=0)
    while low < epoch:
        low = tl.min(tl.load(FLAGS + ps, mask=pm, other=epoch, volatile=True), axis=0)
    tl.atomic_xchg(FLAGS + pid, epoch, sem="acquire", scope="gpu")
    tl.debug_barrier()


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
@triton.jit
def _sinkhorn_resident_kernel(
        L, PR, R, FG, BETA, OUT, WS, FLAGS,
        M, C, stride_lm, stride_lc, stride_pm, stride_pc,
        scale, two_s2, n_iters, nprog,
        PRIOR: tl.constexpr, HAS_BETA: tl.constexpr, SINGLE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
        BLOCK_PC: tl.constexpr):
    """Each program keeps its BLOCK_M x BLOCK_C block of G in registers for all iterations.

    SINGLE: one program, reductions in registers. Otherwise a grid barrier per pass; workspace
    slot j (j = 0..n_iters-1) holds [max | sum] partials of shape (2, nprog, BLOCK_C).
    """
    pid = tl.program_id(0)
    Mf = M * 1.0
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < M
    cmask = cols < C
    z, q = _load_tile(L, PR, R, FG, rows, cols, M, C, stride_lm, stride_lc, stride_pm, stride_pc,
                      scale, Mf, two_s2, PRIOR)
    beta = _load_beta(BETA, cols, C, HAS_BETA)
    slot = 2 * nprog * BLOCK_C
    pofs = pid * BLOCK_C + cols

    ml = _safe(tl.max(z, axis=0))
    sl = tl.sum(_gibbs(z, q, ml, PRIOR), axis=0)
    if SINGLE:
        ms = ml
        a = sl
    else:
        tl.store(WS + pofs, ml)
        tl.store(WS + nprog * BLOCK_C + pofs, sl)
        _grid_barrier(FLAGS, pid, nprog, 1, BLOCK_P)
        ms, a = _combine_stats(WS, WS + nprog * BLOCK_C, nprog, cols, BLOCK_C, BLOCK_PC)

    optr = OUT + rows.to(tl.int64)[:, None] * C + cols[None, :]
    omask = rmask[:, None] & cmask[None, :]
    if n_iters == 0:
        gm, total = _global_shift(ms, a, cols, C)
        g0 = _gibbs(z, q, tl.zeros([BLOCK_C], tl.float32) + gm, PRIOR)
        tl.store(optr, g0 / total * Mf, mask=omask)
    else:
        g = _gibbs(z, q, ms, PRIOR)
        v = _scale_v(beta, a, cols, C)
        it = 1
        while it < n_iters:
            rs = tl.sum(g * v[None, :], axis=1)
            u = tl.where(rmask, 1.0 / (Mf * tl.where(rmask, rs, 1.0)), 0.0)
            part = tl.sum(u[:, None] * g, axis=0)
            if SINGLE:
                a = part
            else:
                tl.store(WS + it * slot + pofs, part)
                _grid_barrier(FLAGS, pid, nprog, it + 1, BLOCK_P)
                a = _combine_sums(WS + it * slot, nprog, cols, BLOCK_C, BLOCK_PC)
            v = _scale_v(beta, a, cols, C)
            it += 1
        gv = g * v[None, :]
        rs = tl.where(rmask, tl.sum(gv, axis=1), 1.0)
        tl.store(optr, gv / rs[:, None], mask=omask)


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
    cmask = cols < C
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
                g0 = _gibbs(z, q, shift, PRIOR)
                omask = (rows < M)[:, None] & cmask[None, :]
                tl.store(OUT + rows.to(tl.int64)[:, None] * C + cols[None, :], g0 / total * Mf,
                         mask=omask)
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
                    omask = (rows < M)[:, None] & cmask[None, :]
                    tl.store(OUT + rows.to(tl.int64)[:, None] * C + cols[None, :],
                             gv / rs[:, None], mask=omask)


                    t += nprog
# ----------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------
_SM_COUNT = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    idx = device.index if device.index is not None else torch.cuda.current_device()
    n = _SM_COUNT.get(idx)
    if n is None:
        n = _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return n


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _warps(tile: int, cap: int = 8) -> int:
    return max(1, min(cap, tile // 512))


def _grid_sync_enabled() -> bool:
    return os.environ.get("CASE_FAST_SINKHORN_GRID_SYNC", "0") == "1"


def _choose_mode(m: int, block_c: int, device: torch.device) -> str:
    if _pow2(m) * block_c <= _MAX_TILE:
        return "single"
    n_sm = _sm_count(device)
    if (device.type == "cuda" and not _INTERPRET and _grid_sync_enabled()
            and _pow2(-(-m // n_sm)) * block_c <= _MAX_TILE):
        return "grid"
    return "step"


def _launch(logits, prior, rank, fg, beta, n_iters, scale, two_s2, mode=None, step_programs=None):
    m, c = logits.shape
    dev = logits.device
    out = torch.empty((m, c), dtype=torch.float32, device=dev)
    block_c = _pow2(c)
    if prior is not None:
        kind, pr, spm, spc = PRIOR_TENSOR, prior, prior.stride(0), prior.stride(1)
    elif rank is not None:
        kind, pr, spm, spc = PRIOR_RANK, logits, 0, 0
    else:
        kind, pr, spm, spc = PRIOR_NONE, logits, 0, 0
    r = rank if rank is not None else logits
    f = fg if fg is not None else logits
    b = beta if beta is not None else logits
    if mode is None:
        mode = _choose_mode(m, block_c, dev)
    elif mode == "grid" and not _INTERPRET and (
            _pow2(-(-m // _sm_count(dev))) * block_c > _MAX_TILE or dev.type != "cuda"):
        mode = "step"  # a forced grid launch must fit one row block per SM in registers
    n_slots = max(n_iters, 1)
    common = dict(PRIOR=kind, HAS_BETA=beta is not None, BLOCK_C=block_c)
    if mode in ("single", "grid"):
        if mode == "single":
            block_m = _pow2(m)
            nprog = 1
        else:
            # the interpreter runs programs one after another: a barrier needs a single program
            block_m = _pow2(m) if _INTERPRET else _pow2(-(-m // _sm_count(dev)))
            nprog = -(-m // block_m)
        single = nprog == 1 and mode == "single"
        block_p = _pow2(nprog)
        if single:
            ws = flags = out
        else:
            flags = torch.zeros(n_slots * 2 * nprog * block_c + block_p, dtype=torch.int32,
                                device=dev)
            ws = flags[block_p:].view(torch.float32)
        _sinkhorn_resident_kernel[(nprog,)](
            logits, pr, r, f, b, out, ws, flags, m, c, logits.stride(0), logits.stride(1),
            spm, spc, scale, two_s2, n_iters, nprog, SINGLE=single, BLOCK_M=block_m, BLOCK_P=block_p,
            BLOCK_PC=max(1, min(block_p, 2048 // block_c)),
            num_warps=_warps(block_m * block_c, 16), **common)
        return out
    # step
    block_m = max(1, min(_pow2(m), 4096 // block_c))
    num_tiles = -(-m // block_m)
    nprog = step_programs or min(num_tiles, 4 * _sm_count(dev))
    ws = torch.empty(n_slots * 2 * nprog * block_c, dtype=torch.float32, device=dev)
    block_pc = max(1, min(_pow2(nprog), 4096 // block_c))
    for step in range(max(n_iters, 1) + 1):
        _sinkhorn_step_kernel[(nprog,)](
            logits, pr, r, f, b, out, ws, m, c, logits.stride(0), logits.stride(1), spm, spc,
            scale, two_s2, n_iters, step, nprog, BLOCK_M=block_m, BLOCK_PC=block_pc,
            num_warps=_warps(block_m * block_c), **common)
    return out


def _prepare(logits, prior, col_marginal, rank, fg_prob):
    if logits.dim() != 2:
        raise ValueError(f"sinkhorn: logits must be (M, C), got shape {tuple(logits.shape)}")
    m, c = logits.shape
    if prior is not None and prior.shape != logits.shape:
        raise ValueError(f"sinkhorn: prior shape {tuple(prior.shape)} != logits shape {tuple(logits.shape)}")
    beta = None
    if col_marginal is not None:
        beta = col_marginal.reshape(-1)
        if beta.numel() != c:
            raise ValueError(f"sinkhorn: col_marginal has {beta.numel()} entries, logits have {c} columns")
        if beta.device != logits.device:
            beta = beta.to(logits.device)
        beta = beta.contiguous()
    if rank is not None:
        rank = rank.reshape(-1)
        fg_prob = fg_prob.reshape(-1)
        if rank.numel() != m or fg_prob.numel() != c:
            raise ValueError(f"sinkhorn_rank_prior: rank has {rank.numel()} entries and fg_prob "
                             f"{fg_prob.numel()}, logits are {m} x {c}")
        if rank.device != logits.device:
            rank = rank.to(logits.device)
        if fg_prob.device != logits.device:
            fg_prob = fg_prob.to(logits.device)
        rank, fg_prob = rank.contiguous(), fg_prob.contiguous()
    return beta, rank, fg_prob


def _use_reference(logits, prior, rank, fg_prob) -> bool:
    if logits.dtype == torch.float64 or (prior is not None and prior.dtype == torch.float64):
        return True
    if rank is not None and (rank.dtype == torch.float64 or fg_prob.dtype == torch.float64):
        return True
    return not (logits.is_cuda or _INTERPRET) or logits.numel() == 0


def _sinkhorn_impl(logits, prior, col_marginal, rank, fg_prob, n_iters, epsilon, temperature,
                   sigma, mode=None, step_programs=None):
    if n_iters < 0:
        raise ValueError(f"sinkhorn: n_iters must be >= 0, got {n_iters}")
    if rank is not None and fg_prob is None:
        raise ValueError("sinkhorn: rank needs fg_prob")
    if _use_reference(logits, prior, rank, fg_prob):
        if rank is not None:
            return sinkhorn_rank_prior_reference(logits, rank, fg_prob, sigma, col_marginal,
                                                 n_iters, epsilon, temperature)
        return sinkhorn_reference(logits, prior, col_marginal, n_iters, epsilon, temperature)
    beta, rank, fg_prob = _prepare(logits, prior, col_marginal, rank, fg_prob)
    scale = 1.0 / (temperature * epsilon)
    two_s2 = 2.0 * sigma * sigma
    with torch.no_grad():
        return _launch(logits.detach(), None if prior is None else prior.detach(), rank, fg_prob,
                       beta, int(n_iters), scale, two_s2, mode, step_programs)


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
    f64 = logits.dtype == torch.float64 or (prior is not None and prior.dtype == torch.float64)
    if rank is not None:
        f64 = f64 or rank.dtype == torch.float64 or fg_prob.dtype == torch.float64
    return logits.new_empty(logits.shape, dtype=torch.float64 if f64 else torch.float32)


def sinkhorn_triton(logits: torch.Tensor, prior: Optional[torch.Tensor] = None,
                    col_marginal: Optional[torch.Tensor] = None, n_iters: int = 3,
                    epsilon: float = 0.05, temperature: float = 10.0,
                    rank: Optional[torch.Tensor] = None, fg_prob: Optional[torch.Tensor] = None,
                    sigma: float = 10.0) -> torch.Tensor:
    """Fused Sinkhorn (see the module docstring); same result as ``sinkhorn_reference`` (or
    ``sinkhorn_rank_prior_reference`` when ``rank``/``fg_prob`` are given, the prior then being
    computed in-kernel and never materialised). No gradient. Eager calls launch directly; under
    torch.compile the call goes through the custom op ``case_fast_triton::sinkhorn``.
    """
    if prior is not None and rank is not None:
        raise ValueError("sinkhorn: give either prior or rank/fg_prob, not both")
    if torch.compiler.is_compiling():
        return _sinkhorn_op(logits, prior, col_marginal, rank, fg_prob, int(n_iters),
                            float(epsilon), float(temperature), float(sigma))
    return _sinkhorn_impl(logits, prior, col_marginal, rank, fg_prob, n_iters, epsilon,
                          temperature, sigma)


__all__ = ["sinkhorn_triton"]
