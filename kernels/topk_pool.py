"""Fused top-k multiple-instance pooling (method.md §3.1).

Reference: ``case_fast.ops.topk_pool.topk_mil_pool_reference`` (torch.topk + gather + mean).

Forward kernel: one program per (video b, class g) column, the column (T scores, stride G) held in
registers (BLOCK_T = next power of two >= T). The scores become order-preserving integer keys
(float32 -> int32; float64 -> int64; half / bfloat16 are widened to float32 first), the k-th
largest key is found exactly by a bitwise radix select (sign bit, then one bit per pass from the
most significant: 32 or 64 counting passes over the column, no sort), then the selection is
every key > threshold plus the first (k - #greater) keys == threshold in ascending time order.
The program writes the k indices in ascending time order (prefix sum of the selection), the
pooled mean of each value stream at those positions (accumulated in float32, float64 for float64
values, stored in the values' dtype), and a (B, T, G) bool selection mask for the backward.
One or two value streams per launch (more streams: further launches that skip the index
writes). 1 launch forward.

Backward kernel: elementwise over (B, T, G): grad_values = mask ? grad_pooled[b, g] / k : 0, for
both streams in one launch (no zero fill, no scatter, no atomics). No gradient reaches the
scores / indices.

One autograd path: ``_TopkMilPool`` (a torch.autograd.Function) runs both kernels through the
custom ops ``case_fast_triton::topk_mil_pool`` / ``topk_mil_pool_backward`` (fake kernels
registered), in eager mode and under torch.compile alike.

Semantics versus torch.topk (the reference):
* Index ORDER: ascending time index (torch.topk returns descending score order): compare sets.
* Ties at the threshold: the lowest time indices win (torch.topk's choice among equal values is
  unspecified). -0.0 and +0.0 are equal.
* NaN scores rank above +inf (as in torch.topk); among NaNs the lowest time index wins.
Deterministic: no atomics; same inputs give the same bits.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import triton
import triton.language as tl

from case_fast.ops.topk_pool import check_args

from .utils import num_warps, pow2

_I32_MAX = tl.constexpr(2 ** 31 - 1)
_I64_MAX = tl.constexpr(2 ** 63 - 1)
_I32_MIN = tl.constexpr(-(2 ** 31))
_I64_MIN = tl.constexpr(-(2 ** 63))


@triton.jit
def _order_key(s, KEY64: tl.constexpr):
    """Signed integer key with the float's order; NaN largest; -0 == +0."""
    if KEY64:
        x = s.to(tl.float64)
        x = tl.where(x == 0.0, 0.0, x)
        bits = x.to(tl.int64, bitcast=True)
        key = bits ^ ((bits >> 63) & _I64_MAX)
        key = tl.where(x != x, _I64_MAX, key)
    else:
        x = s.to(tl.float32)
        x = tl.where(x == 0.0, 0.0, x)
        bits = x.to(tl.int32, bitcast=True)
        key = bits ^ ((bits >> 31) & _I32_MAX)
        key = tl.where(x != x, _I32_MAX, key)
    return key


@triton.jit
def _kth_largest(key, valid, k, KEY64: tl.constexpr):
    """The k-th largest key of the valid entries: max t with #(key >= t) >= k (radix select)."""
    n_nonneg = tl.sum((valid & (key >= 0)).to(tl.int32), axis=0)
    if KEY64:
        prefix = tl.where(n_nonneg >= k, 0, _I64_MIN).to(tl.int64)
        for i in tl.static_range(62, -1, -1):
            cand = prefix | (1 << i)
            cnt = tl.sum((valid & (key >= cand)).to(tl.int32), axis=0)
            prefix = tl.where(cnt >= k, cand, prefix)
    else:
        prefix = tl.where(n_nonneg >= k, 0, _I32_MIN).to(tl.int32)
        for i in tl.static_range(30, -1, -1):
            cand = prefix | (1 << i)
            cnt = tl.sum((valid & (key >= cand)).to(tl.int32), axis=0)
            prefix = tl.where(cnt >= k, cand, prefix)
    return prefix


@triton.jit
def _pool_one(V, P, offs, sel, out_off, k, ACC64: tl.constexpr):
    v = tl.load(V + offs, mask=sel, other=0.0)
    if ACC64:
        acc = tl.sum(v.to(tl.float64), axis=0) / k
    else:
        acc = tl.sum(v.to(tl.float32), axis=0) / k
    tl.store(P + out_off, acc.to(P.dtype.element_ty))


@triton.jit
def _topk_pool_fwd_kernel(S, V1, V2, P1, P2, IDX, MASK, T, G, k,
                          TWO: tl.constexpr, WRITE_SEL: tl.constexpr, KEY64: tl.constexpr,
                          ACC64_1: tl.constexpr, ACC64_2: tl.constexpr, BLOCK_T: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // G
    g = pid - b * G
    t = tl.arange(0, BLOCK_T)
    tm = t < T
    b64 = b.to(tl.int64)
    offs = b64 * T * G + g + t.to(tl.int64) * G
    s = tl.load(S + offs, mask=tm, other=0.0)
    key = _order_key(s, KEY64)
    tau = _kth_largest(key, tm, k, KEY64)
    gt = tm & (key > tau)
    eq = tm & (key == tau)
    n_gt = tl.sum(gt.to(tl.int32), axis=0)
    sel = gt | (eq & (tl.cumsum(eq.to(tl.int32), axis=0) <= k - n_gt))
    if WRITE_SEL:
        pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
        tl.store(IDX + (b64 * k + pos) * G + g, t.to(tl.int64), mask=sel)
        tl.store(MASK + offs, sel, mask=tm)
    out_off = b64 * G + g
    _pool_one(V1, P1, offs, sel, out_off, k, ACC64_1)
    if TWO:
        _pool_one(V2, P2, offs, sel, out_off, k, ACC64_2)


@triton.jit
def _grad_one(GO, GV, off, m, sel, bidx, gidx, stride_gb, stride_gg, k):
    go = tl.load(GO + bidx * stride_gb + gidx * stride_gg, mask=m & sel, other=0.0)
    if GO.dtype.element_ty == tl.float64:
        gr = go / k
    else:
        gr = go.to(tl.float32) / k
    tl.store(GV + off, tl.where(sel, gr, 0.0).to(GV.dtype.element_ty), mask=m)


@triton.jit
def _topk_pool_bwd_kernel(MASK, GO1, GO2, GV1, GV2, N, TG, G, k,
                          s1b, s1g, s2b, s2g, TWO: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    off = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = off < N
    sel = tl.load(MASK + off, mask=m, other=0) != 0
    bidx = off // TG
    gidx = off % G
    _grad_one(GO1, GV1, off, m, sel, bidx, gidx, s1b, s1g, k)
    if TWO:
        _grad_one(GO2, GV2, off, m, sel, bidx, gidx, s2b, s2g, k)


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------
def _fwd_launch(scores: torch.Tensor, vals: Sequence[torch.Tensor], k: int):
    b, t, g = scores.shape
    dev = scores.device
    scores = scores.detach().contiguous()
    vals = [v.detach().contiguous() for v in vals]
    idx = torch.empty((b, k, g), dtype=torch.int64, device=dev)
    mask = torch.empty((b, t, g), dtype=torch.bool, device=dev)
    pooled = [torch.empty((b, g), dtype=v.dtype, device=dev) for v in vals]
    if b * g == 0:
        return pooled, idx, mask
    block_t = pow2(t)
    warps = num_warps(block_t, per=256)
    key64 = scores.dtype == torch.float64
    for j in range(0, len(vals), 2):
        two = j + 1 < len(vals)
        v1, p1 = vals[j], pooled[j]
        v2, p2 = (vals[j + 1], pooled[j + 1]) if two else (v1, p1)
        _topk_pool_fwd_kernel[(b * g,)](
            scores, v1, v2, p1, p2, idx, mask, t, g, k, TWO=two, WRITE_SEL=j == 0,
            KEY64=key64, ACC64_1=v1.dtype == torch.float64, ACC64_2=v2.dtype == torch.float64,
            BLOCK_T=block_t, num_warps=warps)
    return pooled, idx, mask


_BWD_BLOCK = 1024


def _bwd_launch(mask: torch.Tensor, grads: Sequence[torch.Tensor], k: int):
    b, t, g = mask.shape
    outs = [torch.empty((b, t, g), dtype=go.dtype, device=mask.device) for go in grads]
    n = b * t * g
    if n == 0:
        return outs
    grid = (triton.cdiv(n, _BWD_BLOCK),)
    for j in range(0, len(grads), 2):
        two = j + 1 < len(grads)
        g1, o1 = grads[j], outs[j]
        g2, o2 = (grads[j + 1], outs[j + 1]) if two else (g1, o1)
        _topk_pool_bwd_kernel[grid](mask, g1, g2, o1, o2, n, t * g, g, k, g1.stride(0),
                                    g1.stride(1), g2.stride(0), g2.stride(1), TWO=two,
                                    BLOCK=_BWD_BLOCK, num_warps=4)
    return outs


# ----------------------------------------------------------------------------------------------
# torch.library custom ops (what torch.compile sees) and the autograd function
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("case_fast_triton::topk_mil_pool", mutates_args=())
def _pool_op(scores: torch.Tensor, values: List[torch.Tensor], k: int) -> List[torch.Tensor]:
    pooled, idx, mask = _fwd_launch(scores, values, k)
    return [*pooled, idx, mask]


@_pool_op.register_fake
def _pool_fake(scores, values, k):
    b, t, g = scores.shape
    return ([v.new_empty((b, g)) for v in values]
            + [scores.new_empty((b, k, g), dtype=torch.int64),
               scores.new_empty((b, t, g), dtype=torch.bool)])


@torch.library.custom_op("case_fast_triton::topk_mil_pool_backward", mutates_args=())
def _pool_bwd_op(mask: torch.Tensor, grads: List[torch.Tensor], k: int) -> List[torch.Tensor]:
    return _bwd_launch(mask, grads, k)


@_pool_bwd_op.register_fake
def _pool_bwd_fake(mask, grads, k):
    return [go.new_empty(mask.shape) for go in grads]


class _TopkMilPool(torch.autograd.Function):
    """forward(scores, k, *values) -> (*pooled, indices); gradient to the values only."""

    @staticmethod
    def forward(ctx, scores, k, *vals):
        res = _pool_op(scores, list(vals), k)
        pooled, idx, mask = res[:len(vals)], res[len(vals)], res[len(vals) + 1]
        ctx.k = k
        ctx.save_for_backward(mask)
        ctx.mark_non_differentiable(idx)
        return (*pooled, idx)

    @staticmethod
    def backward(ctx, *grads):
        (mask,) = ctx.saved_tensors
        gp = grads[:-1]  # the last: the indices'
        live = [i for i, go in enumerate(gp) if go is not None and ctx.needs_input_grad[2 + i]]
        out = [None] * len(gp)
        if live:
            for i, r in zip(live, _pool_bwd_op(mask, [gp[i] for i in live], ctx.k)):
                out[i] = r
        return (None, None, *out)


def topk_mil_pool_triton(scores: torch.Tensor, values, k: int):
    """Same contract as ``topk_mil_pool_reference`` (index order within the k: ascending time;
    ties: lowest time index; see the module docstring)."""
    single = isinstance(values, torch.Tensor)
    vals = [values] if single else list(values)
    check_args(scores, vals, k)
    res = _TopkMilPool.apply(scores, int(k), *vals)
    pooled, idx = tuple(res[:-1]), res[-1]
    return (pooled[0] if single else pooled), idx


__all__ = ["topk_mil_pool_triton"]
