"""Temporal NMS (method.md §5): the faithful one-pass decay, hard NMS and true Soft-NMS.

``temporal_nms`` runs every group (e.g. ``video * G + class``) in one call, on the compiled op
``torch.ops.case_fast.temporal_nms`` (CUDA kernels for CUDA tensors) or on ``nms_reference``, the
plain-Python executable form of the spec.

Methods (``NMS_METHODS``), for each group separately:

``one_pass_decay`` (the released code, the faithful default)
    Walk the proposals in processing order (see *Tie rule*). Take the first remaining one: it is
    kept. Every other remaining one whose IoU with it is ``>= iou_threshold`` leaves the
    candidates and gets the score ``score * exp(-IoU**2 / alpha)``. Nothing is dropped: the
    output is the kept ones in selection order, then every decayed one in the order it was
    decayed (by selection step, and within one step in processing order).
``hard``
    Standard greedy NMS with the same walk: a remaining proposal with IoU ``>= iou_threshold`` to
    a kept one is removed. Only the kept ones are returned (selection order, original scores).
    The kept set is exactly the kept part of ``one_pass_decay``.
``soft_gaussian`` / ``soft_linear``
    Iterative Soft-NMS (Bodla et al. 2017). Candidates start as the proposals with
    ``score >= min_score``. Repeatedly pick the candidate with the highest *current* score
    (ties: the earliest in processing order), output it with its current score, and decay every
    other candidate: gaussian ``*= exp_nonpos(-IoU**2 / alpha)`` (all of them), linear
    ``*= (1 - IoU)`` when ``IoU >= iou_threshold``; then drop the candidates whose score fell
    below ``min_score``. Output in pick order.

IoU: with ``plus_one`` (the released code's convention on seconds) ``inter = max(0, min(e) -
max(s) + 1)`` and ``area = e - s + 1``; without it ``inter = max(0, min(e) - max(s))`` and
``area = e - s``. ``IoU = inter / (area_a + area_b - inter)``, and 0 when that union is ``<= 0``
(e.g. two identical zero-length segments without ``plus_one``). All arithmetic is float64, in
that operation order, so the reference and the extension take identical threshold decisions.
``plus_one=None`` picks the method's default: True for ``one_pass_decay`` and ``hard`` (the
released code uses one function for both; ``nms_small.npz`` ``*/hard`` is reproduced only with
it), False for the two Soft-NMS variants (ordinary IoU).

Tie rule (walk order, ``processing_order``): within a group the proposals are taken in the
group's input order and walked in ``numpy.argsort(scores)[::-1]`` order, numpy's *default* (not
stable) argsort, reversed, as the released code does. Among equal scores this is not a reversed
stable sort; ``nms_small.npz`` ``n10_ties`` is reproduced exactly only this way. Only numpy knows
that order (it depends on the CPU and the array size), so it is computed here with numpy (on the
host, also for CUDA tensors) and handed to the compiled op as its ``order`` argument: every
backend walks the same order.

Backends (``backend=``, the words of case_fast.ops): 'reference' is ``nms_reference``; 'fast' is
the compiled op ``torch.ops.case_fast.temporal_nms`` (csrc/cpu/nms_cpu.cpp: per group a plain
scan of the live candidates; csrc/cuda/ for CUDA tensors when the extension was built against a
CUDA torch: ``one_pass_decay`` and ``hard`` through 64x64 bitmask IoU tiles, the greedy walk in
one thread block per group; the Soft-NMS variants in one thread block per group, each pick a
block-wide argmax); 'auto' is 'fast' when the extension can run the inputs, else the reference.
Called directly, the op takes ``groups`` and an optional ``order`` (default: descending score,
NaN first, equal scores in input order); it computes the group boundaries itself.

Segments must be finite; all backends agree exactly on the order and to rounding (exp) on the
scores. Every decay factor of the extension (C++ and CUDA) and of this reference's Gaussian
Soft-NMS comes from ``exp_nonpos``: the same IEEE operations in C++, CUDA and numpy, so Soft-NMS
picks agree exactly even when current scores tie (a libm exp and numpy's SIMD exp differ by an ulp
on about 5% of inputs); it is within 1 ulp of ``math.exp``, which the one-pass decay reference
keeps (the released formula): decayed scores agree to 5e-16 relative, and no one-pass decision
depends on them.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from . import _extension
from ._backend import use_fast

NMS_METHODS = ("one_pass_decay", "hard", "soft_gaussian", "soft_linear")

_DEFAULT_PLUS_ONE = {"one_pass_decay": True, "hard": True, "soft_gaussian": False,
                     "soft_linear": False}


# ----------------------------------------------------------------------------------------------
# inputs

def _check_method(method: str, alpha: float) -> None:
    if method not in NMS_METHODS:
        raise ValueError(f"method must be one of {NMS_METHODS}, got {method!r}")
    if method in ("one_pass_decay", "soft_gaussian") and not alpha > 0:
        raise ValueError(f"temporal_nms: alpha (the decay exp(-IoU^2 / alpha)) must be > 0, "
                         f"got {alpha!r}")


def _plus_one(method: str, plus_one: Optional[bool]) -> bool:
    return _DEFAULT_PLUS_ONE[method] if plus_one is None else bool(plus_one)


def _to_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


def _as_numpy_inputs(segments, scores, groups):
    seg = _to_numpy(segments, np.float64)
    if seg.size == 0:
        seg = seg.reshape(0, 2)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"segments must have shape (n, 2), got {seg.shape}")
    sc = _to_numpy(scores, np.float64).reshape(-1)
    n = seg.shape[0]
    if sc.shape[0] != n:
        raise ValueError(f"scores must have shape ({n},), got {sc.shape}")
    if groups is None:
        gr = np.zeros(n, dtype=np.int64)
    else:
        gr = _to_numpy(groups, np.int64).reshape(-1)
        if gr.shape[0] != n:
            raise ValueError(f"groups must have shape ({n},), got {gr.shape}")
    return seg, sc, gr


def processing_order(scores, groups=None) -> Tuple[np.ndarray, np.ndarray]:
    """The walk every backend uses: ``(order, offsets)``.

    ``order`` (n,) int64 lists the input indices group by group (group id ascending), each group
    in ``np.argsort(group_scores)[::-1]`` order, where ``group_scores`` are the group's scores (as
    float64) in input order; ``offsets`` (num_groups + 1,) int64 are the group boundaries in it.
    """
    sc = _to_numpy(scores, np.float64).reshape(-1)
    gr = None if groups is None else _to_numpy(groups, np.int64).reshape(-1)
    if gr is None or gr.size == 0 or gr.min() == gr.max():  # one group
        order = np.argsort(sc)[::-1].astype(np.int64)  # (a copy: positive strides)
        return order, np.array([0, sc.size] if sc.size else [0], np.int64)
    by_group = np.argsort(gr, kind="stable")  # each group's members in input order
    cuts = np.flatnonzero(gr[by_group][1:] != gr[by_group][:-1]) + 1
    members = np.split(by_group, cuts)
    order = np.concatenate([m[np.argsort(sc[m])[::-1]] for m in members]).astype(np.int64)
    return order, np.r_[0, cuts, sc.size].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# the reference: one group at a time, a plain loop

# e^r on |r| <= ln2 / 2: the Taylor coefficients of degree 13 down to 0 (Horner)
_EXP_TAYLOR = (1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
               1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
               1.0 / 6.0, 0.5, 1.0, 1.0)
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.int64))


def exp_nonpos(x) -> np.ndarray:
    """exp(x) for x <= 0, exactly as every backend computes the decay exp(-IoU^2 / alpha).

    The same IEEE float64 operations as ``exp_nonpos`` in ``csrc/nms.h`` (C++ and CUDA), one
    numpy ufunc per operation (numpy never fuses a multiply-add), so the result has the same bits:
    Gaussian Soft-NMS then picks the same proposal in every backend even when current scores
    tie. Within 1 ulp of ``math.exp``; 0 below -745.5 (and for -inf or NaN). x = n ln2 + r with
    n from the 1.5 * 2^52 rounding trick, e^r by the Taylor polynomial of degree 13, 2^n applied
    as two exact powers of two (so subnormal results round once).
    """
    x = np.asarray(x, np.float64)
    shape = x.shape
    x = x.reshape(-1)
    xc = np.where(x > -745.5, x, -745.5)
    t = xc * 1.4426950408889634 + _MAGIC
    fn = t - _MAGIC
    n = t.view(np.int64) - _MAGIC_BITS  # fn as an integer, in [-1076, 0]
    r = (xc - fn * 6.93147180369123816490e-01) - fn * 1.90821492927058770002e-10
    p = np.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    n1 = -((-n) >> 1)  # ceil(n / 2)
    n2 = n - n1
    out = (p * ((n1 + 1023) << 52).view(np.float64)) * ((n2 + 1023) << 52).view(np.float64)
    return out.reshape(shape)


def _iou(s0: float, e0: float, s: np.ndarray, e: np.ndarray, plus_one: bool) -> np.ndarray:
    """IoU of segment (s0, e0) with each (s, e); float64, the operation order the C++ uses."""
    one = 1.0 if plus_one else 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE, like the C++
        inter = np.maximum(0.0, np.minimum(e0, e) - np.maximum(s0, s) + one)
        union = ((e0 - s0 + one) + (e - s + one)) - inter
        iou = inter / union
    return np.where(union > 0.0, iou, 0.0)


def _group_one_pass_decay(s, e, sc, thr, alpha, plus_one):
    """Indices (into the group's walk) and scores of the faithful one-pass decay."""
    remaining = np.arange(len(sc))
    kept, decayed, decayed_scores = [], [], []
    while remaining.size:
        i, rest = int(remaining[0]), remaining[1:]
        kept.append(i)
        iou = _iou(s[i], e[i], s[rest], e[rest], plus_one)
        hit = iou >= thr
        for j, v in zip(rest[hit], iou[hit]):
            decayed.append(int(j))
            decayed_scores.append(sc[j] * math.exp(-(v * v) / alpha))
        remaining = rest[~hit]
    return kept + decayed, [sc[i] for i in kept] + decayed_scores


def _group_hard(s, e, sc, thr, plus_one):
    remaining = np.arange(len(sc))
    kept = []
    while remaining.size:
        i, rest = int(remaining[0]), remaining[1:]
        kept.append(i)
        iou = _iou(s[i], e[i], s[rest], e[rest], plus_one)
        remaining = rest[iou < thr]
    return kept, [sc[i] for i in kept]


def _group_soft(s, e, sc, thr, alpha, min_score, plus_one, linear):
    cand = np.flatnonzero(sc >= min_score)  # candidates, kept in walk order
    cur = sc.copy()
    picked, picked_scores = [], []
    while cand.size:
        k = int(np.argmax(cur[cand]))  # first maximum = earliest in the walk
        i = int(cand[k])
        picked.append(i)
        picked_scores.append(cur[i])
        cand = np.delete(cand, k)
        iou = _iou(s[i], e[i], s[cand], e[cand], plus_one)
        if linear:
            weight = np.where(iou >= thr, 1.0 - iou, 1.0)
        else:
            weight = exp_nonpos(-(iou * iou) / alpha)
        cur[cand] = cur[cand] * weight
        cand = cand[cur[cand] >= min_score]
    return picked, picked_scores


def nms_reference(segments, scores, groups=None, *, method: str = "one_pass_decay",
                  iou_threshold: float = 0.4, alpha: float = 0.35, min_score: float = 1e-3,
                  plus_one: Optional[bool] = None):
    """Plain-Python temporal NMS (see the module docstring). Same inputs/outputs as
    ``temporal_nms``: ``(keep, new_scores)`` int64 input indices and float64 scores, group by
    group (group id ascending), each group in the method's output order."""
    _check_method(method, alpha)
    like = segments
    seg, sc, gr = _as_numpy_inputs(segments, scores, groups)
    po = _plus_one(method, plus_one)
    order, offsets = processing_order(sc, gr)
    keep, new = [], []
    for g in range(len(offsets) - 1):
        idx = order[offsets[g]:offsets[g + 1]]  # the group's walk
        s, e, gs = seg[idx, 0], seg[idx, 1], sc[idx]
        if method == "one_pass_decay":
            pos, val = _group_one_pass_decay(s, e, gs, iou_threshold, alpha, po)
        elif method == "hard":
            pos, val = _group_hard(s, e, gs, iou_threshold, po)
        else:
            pos, val = _group_soft(s, e, gs, iou_threshold, alpha, min_score, po,
                                   linear=(method == "soft_linear"))
        keep.extend(idx[pos].tolist())
        new.extend(val)
    return _wrap(np.asarray(keep, np.int64), np.asarray(new, np.float64), like)


def _wrap(keep: np.ndarray, new: np.ndarray, like):
    if isinstance(like, torch.Tensor):
        return (torch.from_numpy(keep).to(like.device), torch.from_numpy(new).to(like.device))
    return keep, new


# ----------------------------------------------------------------------------------------------
# the compiled op

def _fast(segments, scores, groups, method, iou_threshold, alpha, min_score, plus_one):
    if isinstance(segments, torch.Tensor) and segments.is_cuda:
        dev = segments.device
        seg_t = segments.detach()
        sc_t = torch.as_tensor(scores, device=dev).detach().reshape(-1)
        gr_t = None if groups is None else torch.as_tensor(groups, device=dev).reshape(-1)
        # the walk order is numpy's (tie rule): scores and groups visit the host
        order, _ = processing_order(sc_t, gr_t)
        order_t = torch.from_numpy(order).to(dev)
    else:
        seg, sc, gr = _as_numpy_inputs(segments, scores, groups)
        order, _ = processing_order(sc, None if groups is None else gr)
        seg_t, sc_t, order_t = torch.from_numpy(seg), torch.from_numpy(sc), torch.from_numpy(order)
        gr_t = None if groups is None else torch.from_numpy(gr)
    keep, new = torch.ops.case_fast.temporal_nms(seg_t, sc_t, gr_t, method, float(iou_threshold),
                                                 float(alpha), float(min_score), plus_one, order_t)
    if isinstance(segments, torch.Tensor):
        return keep, new
    return keep.numpy(), new.numpy()


def temporal_nms(segments, scores, groups=None, *, method: str = "one_pass_decay",
                 iou_threshold: float = 0.4, alpha: float = 0.35, min_score: float = 1e-3,
                 plus_one: Optional[bool] = None, backend: str = "auto"):
    """Temporal NMS over all groups in one call (method.md §5; semantics in the module docstring).

    segments: (n, 2) [start, end] seconds; scores: (n,); groups: (n,) int64 ids (e.g.
    ``video * G + class``) or None for one group. numpy arrays or torch tensors (CPU or CUDA).
    method: one of ``NMS_METHODS``; ``iou_threshold`` 0.4, ``alpha`` 0.35 (the Gaussian's
    divisor), ``min_score`` (Soft-NMS pruning only), ``plus_one`` None = method default.
    backend: 'auto' (the compiled op when it is built for the inputs' device, else the
    reference), 'reference', or 'fast' (the compiled op, else RuntimeError).

    Returns ``(keep, new_scores)`` of the input's kind (and device): int64 indices into the
    input and float64 scores, ordered by group id ascending, within a group in the method's
    output order.
    """
    _check_method(method, alpha)
    po = _plus_one(method, plus_one)
    on_cuda = isinstance(segments, torch.Tensor) and segments.is_cuda
    available = _extension.cuda_available() if on_cuda else _extension.available()
    if use_fast(backend, available, lambda: _extension.unavailable_error(
            "temporal_nms on CUDA tensors (an extension built with CUDA)" if on_cuda
            else "temporal_nms")):
        return _fast(segments, scores, groups, method, iou_threshold, alpha, min_score, po)
    return nms_reference(segments, scores, groups, method=method, iou_threshold=iou_threshold,
                         alpha=alpha, min_score=min_score, plus_one=po)
