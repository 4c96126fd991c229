"""Temporal NMS (SPEC §5): the faithful one-pass decay, hard NMS and true Soft-NMS.

``temporal_nms`` runs every group (e.g. ``video * G + class``) in one call, on the compiled
extension ``case_fast._C`` when it is built (``torch.ops.case_fast.temporal_nms``; CUDA kernels
for CUDA tensors), else on ``nms_reference``, the plain-Python executable form of the spec.

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

Tie rule (processing order): within a group the proposals are taken in the group's input order
and walked in ``numpy.argsort(scores)[::-1]`` order, numpy's *default* (not stable) argsort,
reversed — as the released code does. Among equal scores this is not a reversed stable sort;
``nms_small.npz`` ``n10_ties`` is reproduced exactly only this way. The order is computed in
Python with numpy (on the host, also for CUDA tensors) and handed to the extension, so every
backend walks the same order. When the scores are finite and pairwise distinct, every sort gives
that order: ``processing_order`` then sorts float64 keys carrying the indices in their low bits
(1024 to 65536 scores; numpy sorts about 3x faster than it argsorts) and puts the groups in
order with a radix sort of 16-bit group ids; a group with ties or NaN is argsorted on its own.

Backends: the C++ CPU kernels run every method (one-pass decay and hard NMS visit only the
candidates whose start can reach the threshold, through start-time buckets). The CUDA kernels
(CUDA tensors, extension built against a CUDA torch) run every method on the device too:
``one_pass_decay`` and ``hard`` through 64x64 bitmask IoU tiles, the greedy walk in one thread
block per group and output assembly on the device; the Soft-NMS variants in one thread block
per group (each pick is a block-wide argmax over the candidates' current scores, then a
parallel decay), the picks compacted on the device. Segments must be finite; all backends agree
exactly on the order and to rounding (exp) on the scores. Every decay factor of the extension
(C++ and CUDA) and of this reference's Gaussian Soft-NMS comes from ``exp_nonpos``: the same
IEEE operations in C++, CUDA and numpy, so Soft-NMS picks agree exactly even when current scores
tie (a libm exp and numpy's SIMD exp differ by an ulp on about 5% of inputs); it is within 1 ulp
of ``math.exp``, which the one-pass decay reference keeps (the released formula): decayed
scores agree to 5e-16 relative, and no one-pass decision depends on them.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from ._backend import resolve, warn_once

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


_PACK_MAX_BITS = 16  # up to 65536 scores: beyond, distinct scores too often share the kept bits
_PACK_INDEX = np.arange(1 << _PACK_MAX_BITS, dtype=np.int64)


def _distinct_desc_order(sc: np.ndarray) -> Optional[np.ndarray]:
    """``np.argsort(sc)[::-1]`` when the scores are finite and pairwise distinct (then every sort
    gives that order), about twice as fast: numpy sorts float64 about 3x faster than it argsorts
    them, so each score's low k mantissa bits (2^k >= n) are replaced by its index and the keys
    are sorted as float64. Keys of different scores keep the scores' order unless the scores
    agree in all their other bits; that is checked, and then (ties included, and -0.0 with 0.0,
    made equal by the + 0.0) the answer is None, as for a non-finite score (its key sorts to an
    end as inf or NaN), fewer than 1024 scores (the argsort is as fast) or more than 2^16 (the
    caller argsorts instead)."""
    n = sc.shape[0]
    k = max(1, (n - 1).bit_length())
    if n < 1024 or k > _PACK_MAX_BITS:
        return None
    key = sc + 0.0
    bits = key.view(np.int64)
    bits &= -(1 << k)  # clear the low k bits
    bits |= _PACK_INDEX[:n]
    key.sort()
    if not (math.isfinite(key[0]) and math.isfinite(key[-1])):
        return None
    high = bits >> k
    if (high[1:] == high[:-1]).any():
        return None
    bits &= (1 << k) - 1
    return bits[::-1].copy()


def _desc_order(sc: np.ndarray) -> np.ndarray:
    """``np.argsort(sc)[::-1]`` as int64, the released walk order."""
    order = _distinct_desc_order(sc)
    return np.argsort(sc)[::-1].astype(np.int64) if order is None else order


def _group_ids(gr: np.ndarray, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(ids, counts)``: per proposal an id increasing with its group id (``lo``/``hi``: the
    smallest and largest group id), as uint16 whenever the groups allow (numpy's stable argsort
    of 16-bit integers is a radix sort, ~8x its merge sort of int64), and the size of each
    non-empty group in group-id order."""
    if hi - lo < 1 << 16:  # e.g. video * num_classes + class: the ids themselves, shifted
        ids = (gr - lo).astype(np.uint16)
        counts = np.bincount(ids, minlength=hi - lo + 1)
        return ids, counts[counts > 0]
    _, ids, counts = np.unique(gr, return_inverse=True, return_counts=True)
    return ids.astype(np.uint16 if counts.size <= 1 << 16 else np.int64), counts


def processing_order(scores, groups=None) -> Tuple[np.ndarray, np.ndarray]:
    """The walk every backend uses: ``(order, offsets)``.

    ``order`` (n,) int64 lists the input indices group by group (group id ascending), each group
    in ``np.argsort(group_scores)[::-1]`` order, where ``group_scores`` are the group's scores in
    input order; ``offsets`` (num_groups + 1,) int64 are the group boundaries in ``order``.
    """
    sc = _to_numpy(scores, np.float64).reshape(-1)
    n = sc.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    gr = None if groups is None else _to_numpy(groups, np.int64).reshape(-1)
    lo, hi = (0, 0) if gr is None else (int(gr.min()), int(gr.max()))
    if lo == hi:  # one group: the released rule directly
        return _desc_order(sc), np.array([0, n], np.int64)
    gid, counts = _group_ids(gr, lo, hi)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    desc = _distinct_desc_order(sc)
    if desc is not None:  # finite, pairwise distinct scores: each group in descending score
        return desc[np.argsort(gid[desc], kind="stable")], offsets
    # descending score inside each group, exact whenever a group has no ties / NaN
    desc = np.argsort(sc)[::-1]
    order = desc[np.argsort(gid[desc], kind="stable")]
    so, go = sc[order], gid[order]
    same_group = go[1:] == go[:-1]
    bad = same_group & ((so[1:] == so[:-1]) | np.isnan(so[1:]) | np.isnan(so[:-1]))
    if bad.any():  # groups with ties or NaN: numpy's default argsort, reversed, as released
        by_group = np.argsort(gid, kind="stable")  # each group's members in input order
        gid_of_pos = np.searchsorted(offsets, np.arange(n), side="right") - 1
        for g in np.unique(gid_of_pos[1:][bad]):
            a, b = offsets[g], offsets[g + 1]
            members = by_group[a:b]
            order[a:b] = members[np.argsort(sc[members])[::-1]]
    return order, offsets


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
# the compiled extension

_ext = {"loaded": None}


def extension_available() -> bool:
    """True when ``case_fast._C`` is built and registered ``torch.ops.case_fast.temporal_nms``."""
    if _ext["loaded"] is None:
        try:
            import case_fast._C  # noqa: F401  (registers torch.ops.case_fast.*)
            torch.ops.case_fast.temporal_nms  # noqa: B018
            _ext["loaded"] = True
        except Exception:
            _ext["loaded"] = False
    return _ext["loaded"]


_compiled_cache: dict = {}


def compiled_ops(*names: str):
    """The ops ``torch.ops.case_fast.<name>`` as a tuple when the extension is built and has all
    of them (an extension built before an op was added lacks it), else None. Cached."""
    if names not in _compiled_cache:
        ops = None
        if extension_available():
            try:
                ops = tuple(getattr(torch.ops.case_fast, n) for n in names)
            except (AttributeError, RuntimeError):
                ops = None
        _compiled_cache[names] = ops
    return _compiled_cache[names]


def cuda_extension_available() -> bool:
    """True when the extension was built with its CUDA kernels (a CUDA torch and nvcc)."""
    if not extension_available():
        return False
    try:
        return bool(torch.ops.case_fast.has_cuda())
    except Exception:
        return False


def _fast(segments, scores, groups, method, iou_threshold, alpha, min_score, plus_one):
    on_cuda = isinstance(segments, torch.Tensor) and segments.is_cuda
    if on_cuda:
        if not cuda_extension_available():
            raise RuntimeError("temporal_nms: CUDA tensors given but case_fast._C was built "
                               "without CUDA kernels (use backend='reference' or CPU tensors)")
        device = segments.device
        seg_t = segments.detach().to(torch.float64).reshape(-1, 2).contiguous()
        sc_t = torch.as_tensor(scores).detach().to(device=device, dtype=torch.float64).reshape(-1)
        if sc_t.shape[0] != seg_t.shape[0]:
            raise ValueError(f"scores must have shape ({seg_t.shape[0]},), got {tuple(sc_t.shape)}")
        # the walk order is numpy's (tie rule): scores and groups visit the host (n x 16 bytes)
        order, offsets = processing_order(sc_t, groups)
        order_t = torch.from_numpy(order).to(device)
    else:
        seg, sc, gr = _as_numpy_inputs(segments, scores, groups)
        order, offsets = processing_order(sc, None if groups is None else gr)
        seg_t, sc_t, order_t = torch.from_numpy(seg), torch.from_numpy(sc), torch.from_numpy(order)
    keep, new = torch.ops.case_fast.temporal_nms(
        seg_t, sc_t, order_t, torch.from_numpy(offsets), method, float(iou_threshold),
        float(alpha), float(min_score), bool(plus_one))
    if isinstance(segments, torch.Tensor):
        return keep, new
    return keep.numpy(), new.numpy()


def temporal_nms(segments, scores, groups=None, *, method: str = "one_pass_decay",
                 iou_threshold: float = 0.4, alpha: float = 0.35, min_score: float = 1e-3,
                 plus_one: Optional[bool] = None, backend: Optional[str] = None):
    """Temporal NMS over all groups in one call (SPEC §5; semantics in the module docstring).

    segments: (n, 2) [start, end] seconds; scores: (n,); groups: (n,) int64 ids (e.g.
    ``video * G + class``) or None for one group. numpy arrays or torch tensors (CPU or CUDA).
    method: one of ``NMS_METHODS``; ``iou_threshold`` 0.4, ``alpha`` 0.35 (the Gaussian's
    divisor), ``min_score`` (Soft-NMS pruning only), ``plus_one`` None = method default.
    backend: None/'auto' (extension if built, else the reference with a one-time warning),
    'reference', or 'fast' (extension, else RuntimeError).

    Returns ``(keep, new_scores)`` of the input's kind (and device): int64 indices into the
    input and float64 scores, ordered by group id ascending, within a group in the method's
    output order.
    """
    _check_method(method, alpha)
    po = _plus_one(method, plus_one)
    b = resolve(backend)
    if b == "reference":
        return nms_reference(segments, scores, groups, method=method, iou_threshold=iou_threshold,
                             alpha=alpha, min_score=min_score, plus_one=po)
    if not extension_available():
        if b == "fast":
            raise RuntimeError("temporal_nms: backend='fast' needs the compiled extension "
                               "case_fast._C; reinstall with `pip install --no-build-isolation "
                               "-e .` (a C++ compiler and torch are needed at build time)")
        warn_once("nms_extension", "case_fast._C (compiled NMS) is not built: temporal_nms falls "
                  "back to the slow Python reference")
        return nms_reference(segments, scores, groups, method=method, iou_threshold=iou_threshold,
                             alpha=alpha, min_score=min_score, plus_one=po)
    return _fast(segments, scores, groups, method, iou_threshold, alpha, min_score, po)
