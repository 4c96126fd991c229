"""Proposal generation (method.md §5): T-CAS upsampling, multi-threshold runs, OIC scoring, seconds.

Two implementations with bitwise-identical output (same rows, same order, same bits), picked by
``backend=`` (the words of case_fast.ops):

* 'reference' -- :func:`generate_proposals_reference`: upsamples the T-CAS, then loops over
  thresholds, classes (``np.nonzero(col >= thr)``) and runs.
* 'fast' -- the compiled op ``torch.ops.case_fast.oic_proposals`` (csrc/cpu/oic_cpu.cpp): never
  builds the (T*scale) upsampled array (within a snippet segment the upsampled values are
  monotone, so runs are found from segment end-point levels plus a bisection at the crossings),
  the same window-sum arithmetic in C++ (same IEEE operations in the same order, no FMA). It
  takes T >= 2 snippets of a float32 / float64 T-CAS.
* 'auto' (default) -- 'fast' when the extension is built and takes the inputs, else the reference.

Numerics, checked against ``tests/reference/oic.npz`` (the released code's outputs):

* **Upsampling** reproduces ``scipy.interpolate.interp1d(np.arange(T), cas, kind='linear',
  axis=0, fill_value='extrapolate')(np.arange(0, T, 1 / scale))`` bit for bit, without scipy:
  sample points ``x_i = i * (1 / scale)``; segment ``k = clip(searchsorted(arange(T), x_i), 1,
  T - 1)``; ``y_i = float64(c[k] - c[k-1]) * (x_i - (k - 1)) + c[k-1]``, the difference taken in
  the input dtype (float32 for the model's T-CAS), the rest in float64.  Like the released code,
  this is not exactly ``c[k]`` at integer ``x``.
* **Runs**: maximal runs of consecutive upsampled points with ``value >= threshold`` (float64
  against float64; the released code zeroed points ``< threshold`` and kept those ``> 0``, the
  same thing for positive thresholds).  Identical to ``thr{t}/seg{c}``.
* **Means**: ``window_sum / count``.  Window sums (the run; the outer region, its two pieces
  added) come from :class:`_Sums` (oic_cpu.cpp does the same): per segment of the linear
  interpolant a closed form in exact integer/float64 arithmetic, whole segments as exact int64
  fixed-point prefix sums -- O(1) per window, within ~1e-14 of the exact sum of the float64
  upsampled values.  The released code used ``np.mean`` (numpy pairwise summation), so scores
  differ from ``thr{t}/out`` by <= ~1.1e-14 (tests allow 1e-12); class, start and end are
  bitwise equal.  Reproducing numpy's pairwise rounding in vectorised form would touch every
  point of every run, too slow for the fast path; sharing one summation makes reference and fast
  bitwise equal instead.
* **Scores**: float64, ``inner - outer + gamma * float64(video_score[class])`` (the
  ``thr{t}/out`` arithmetic; ``out_np2`` used a float32 ``gamma * score``, <= 3e-9 apart).  The
  outer region of a run [s, e] of length n is ``[max(0, trunc(s - lambda*n)), s)`` plus
  ``(e, min(L-1, trunc(e + lambda*n))]``; empty -> outer mean 0.
* **Seconds**: ``index * t_factor`` with ``t_factor = (frames_per_snippet * num_snippets) /
  (scale * num_segments * fps)``; a run [s, e] spans ``s * t_factor`` .. ``(e + 1) * t_factor``.

**Order** of output rows: threshold-major, then the position of the class in ``class_ids``, then
run start -- ``thr{t}/out`` is class-major (``count_per_class``), and the released code
concatenates thresholds in order (per class, before NMS).

**[faithful] drop_zero_run**: the released code skips a (threshold, class) whose above-threshold
index set is falsy (``np.array(idx).any()``), i.e. exactly ``{0}`` (``oic3`` threshold 0.9,
class 0).  A run ``{0}`` beside other runs of the same class and threshold is kept.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from . import _extension
from ._backend import use_fast

__all__ = [
    "DEFAULT_THRESHOLDS",
    "upsample_cas",
    "time_factor",
    "generate_proposals_reference",
    "generate_proposals_per_threshold_reference",
    "generate_proposals",
    "generate_proposals_per_threshold",
]

DEFAULT_THRESHOLDS = np.arange(0.1, 1.0, 0.1)

# --------------------------------------------------------------------------------------------
# upsampling and time mapping
# --------------------------------------------------------------------------------------------

_PLAN_CACHE: dict = {}


class _Plan:
    """Index layout of the upsampled axis for (T, scale), T >= 2.  Point i lies in segment
    ``lo[i]`` (between snippets lo and lo+1) at fraction ``frac[i] = x_i - lo[i]``; segment s
    covers points ``[g[s], g[s+1])``; ``g[T-1] = L``."""

    def __init__(self, T: int, scale: int):
        L = T * scale
        x_new = np.arange(L, dtype=np.float64) * (1.0 / scale)  # == np.arange(0, T, 1/scale)
        hi = np.searchsorted(np.arange(T, dtype=np.float64), x_new, side="left")
        lo = np.clip(hi, 1, T - 1) - 1
        self.T, self.scale, self.L = T, scale, L
        self.lo_ext = np.append(lo, T - 1)  # point L: a virtual empty segment T-1
        self.frac = x_new - lo
        self.counts = np.bincount(lo, minlength=T - 1)  # points per segment
        self.g = np.zeros(T, dtype=np.int64)
        np.cumsum(self.counts, out=self.g[1:])
        # B_s = sum over the segment's points of (i - scale*s): the exact sum of scale*frac
        n, g0 = self.counts, self.g[:-1]
        s_idx = np.arange(T - 1, dtype=np.int64)
        self.seg_b = (n * (2 * g0 + n - 1)) // 2 - scale * s_idx * n


def _plan(T: int, scale: int) -> _Plan:
    key = (T, scale)
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        if len(_PLAN_CACHE) > 64:
            _PLAN_CACHE.clear()
        plan = _PLAN_CACHE[key] = _Plan(T, scale)
    return plan


def _as_cas(cas) -> np.ndarray:
    cas = np.asarray(cas)
    if cas.ndim == 1:
        cas = cas[:, None]
    if cas.ndim != 2:
        raise ValueError(f"cas must be (T, p), got shape {cas.shape}")
    if not np.issubdtype(cas.dtype, np.floating):
        cas = cas.astype(np.float64)
    return cas


def _upsample_t(cas: np.ndarray, scale: int) -> np.ndarray:
    """(T, p) float -> (p, T*scale) float64, C-contiguous."""
    T, p = cas.shape
    scale = int(scale)
    if scale < 1:
        raise ValueError("scale must be >= 1")
    if T == 0:
        return np.zeros((p, 0), dtype=np.float64)
    cas_t = np.ascontiguousarray(cas.T)
    if T == 1:  # interp1d needs two points; a single snippet is held constant
        return np.repeat(cas_t.astype(np.float64), scale, axis=1)
    plan = _plan(T, scale)
    lo_counts, frac = plan.counts, plan.frac
    # float32 -> float64 conversions are exact, so converting before repeating changes nothing
    diff = (cas_t[:, 1:] - cas_t[:, :-1]).astype(np.float64)  # difference in the input dtype
    out = np.repeat(diff, lo_counts, axis=1)  # out[:, i] = diff[:, lo[i]] (lo is non-decreasing)
    out *= frac
    out += np.repeat(cas_t[:, :-1].astype(np.float64), lo_counts, axis=1)
    return out


def upsample_cas(cas: np.ndarray, scale: int = 24) -> np.ndarray:
    """(T, p) -> (T*scale, p) float64: linear interpolation at ``x = i/scale`` with linear
    extrapolation past snippet T-1 from the last two snippets (bitwise the released code's
    ``interp1d`` output, ``oic.npz`` ``wtcam``)."""
    return np.ascontiguousarray(_upsample_t(_as_cas(cas), scale).T)


def time_factor(num_snippets, *, scale=24, num_segments=750, fps=25.0, frames_per_snippet=16) -> float:
    """Seconds per upsampled index: frames_per_snippet * T_v / (scale * num_segments * fps)."""
    return (frames_per_snippet * num_snippets) / (scale * num_segments * fps)


def _prepare(cas, class_ids, video_scores, thresholds):
    cas = _as_cas(cas)
    class_ids = np.asarray(class_ids).reshape(-1)
    if class_ids.shape[0] != cas.shape[1]:
        raise ValueError(
            f"generate_proposals: {class_ids.shape[0]} class ids for {cas.shape[1]} CAS columns")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    video_scores = np.asarray(video_scores).reshape(-1)
    return cas, class_ids, video_scores, thresholds



# --------------------------------------------------------------------------------------------
# window sums (the compiled op computes the same ones)
# --------------------------------------------------------------------------------------------

def _ceil_log2(x: float) -> int:
    m, e = np.frexp(x)  # x = m * 2**e, 0.5 <= m < 1
    return int(e) - (1 if m == 0.5 else 0)


class _Sums:
    """Sums of upsampled values over index windows, O(1) per window from snippet-level data.

    Point i of segment s has the value ``c[s] + d[s] * (i - scale*s) / scale`` (the linear
    interpolant at x = i/scale; the float64 upsampled value differs by <= ~1e-16 * |x| * |d|).
    The sum over a part [i0, i1) of one segment is ``m*c + d*(B/scale)`` with
    ``B = sum(i - scale*s)`` an exact integer; whole segments between the two ends of a window
    are summed as int64 fixed point (``rint(segment_sum * 2**k)``, k chosen so that all sums
    stay below 2**62) via exact prefix sums.  Result: within ~1e-14 of the exact sum of the
    float64 upsampled values for T-CAS in [0, 1], and the same bits whatever the caller.
    """

    def __init__(self, cas: np.ndarray, plan: _Plan):
        self.plan = plan
        cas_t = np.ascontiguousarray(cas.T)
        p, T = cas_t.shape
        self.c = cas_t.astype(np.float64)  # (p, T)
        self.d = np.zeros((p, T), dtype=np.float64)  # (p, T), the last column 0 (virtual)
        self.d[:, :-1] = cas_t[:, 1:] - cas_t[:, :-1]  # in the input dtype, as in upsampling
        seg = plan.counts * self.c[:, :-1] + self.d[:, :-1] * (plan.seg_b / plan.scale)
        total = float(np.abs(seg).sum(axis=1).max()) * 1.001 + 1e-300
        k = min(62 - _ceil_log2(total), 1000)
        self.w = 2.0 ** -k
        self.prefix = np.zeros((p, T), dtype=np.int64)  # prefix[:, s] = sum of segments < s
        np.cumsum(np.rint(seg * 2.0 ** k).astype(np.int64), axis=1, out=self.prefix[:, 1:])

    def window_scalar(self, col: int, a: int, b: int) -> float:
        """The sum over [a, b) (0 <= a, b <= L) in column col."""
        if b <= a:
            return 0.0
        plan = self.plan
        sc = plan.scale
        sa, sb = int(plan.lo_ext[a]), int(plan.lo_ext[b - 1])
        c, d = self.c[col], self.d[col]

        def part(s, i0, i1):
            m = i1 - i0
            bb = (m * (i0 + i1 - 1)) // 2 - sc * s * m
            return m * float(c[s]) + float(d[s]) * (bb / sc)

        if sa == sb:
            return part(sa, a, b)
        head = part(sa, a, int(plan.g[sa + 1]))
        mid = float(int(self.prefix[col, sb]) - int(self.prefix[col, sa + 1])) * self.w
        return (head + mid) + part(sb, int(plan.g[sb]), b)


# --------------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------------

def generate_proposals_per_threshold_reference(
    cas, class_ids, video_scores, num_snippets, *, thresholds=DEFAULT_THRESHOLDS, scale=24,
    num_segments=750, fps=25.0, frames_per_snippet=16, oic_lambda=0.15, oic_gamma=0.2,
    drop_zero_run=True,
) -> List[np.ndarray]:
    """One (m_t, 4) float64 array per threshold: rows [class, score, start_s, end_s], by class
    position then run start.  Straightforward loops over the upsampled T-CAS."""
    cas, class_ids, video_scores, thresholds = _prepare(cas, class_ids, video_scores, thresholds)
    up_t = _upsample_t(cas, scale)
    p, L = up_t.shape
    sums = _Sums(cas, _plan(cas.shape[0], int(scale))) if cas.shape[0] >= 2 else None
    t_factor = time_factor(num_snippets, scale=scale, num_segments=num_segments, fps=fps,
                           frames_per_snippet=frames_per_snippet)

    def window_sum(c, a, b):
        if sums is None:  # T == 1: a constant column
            return (b - a) * float(up_t[c, 0]) if b > a else 0.0
        return sums.window_scalar(c, a, b)

    per_thr = []
    for thr in thresholds:
        rows = []
        for c in range(p):
            idx = np.nonzero(up_t[c] >= thr)[0]
            if idx.size == 0:
                continue
            if drop_zero_run and not idx.any():  # the released code's `if temp_list.any():`
                continue
            cls = class_ids[c]
            bonus = oic_gamma * float(video_scores[cls])
            for r in np.split(idx, np.nonzero(np.diff(idx) != 1)[0] + 1):
                s, e, n = int(r[0]), int(r[-1]), len(r)
                inner = window_sum(c, s, e + 1) / n
                outer_s = max(0, int(s - oic_lambda * n))
                outer_e = min(L - 1, int(e + oic_lambda * n))
                n_out = (s - outer_s) + (outer_e - e)
                if n_out:
                    outer = (window_sum(c, outer_s, s) + window_sum(c, e + 1, outer_e + 1)) / n_out
                else:
                    outer = 0.0
                rows.append([float(cls), inner - outer + bonus, s * t_factor, (e + 1) * t_factor])
        per_thr.append(np.array(rows, dtype=np.float64).reshape(-1, 4))
    return per_thr


def generate_proposals_reference(cas, class_ids, video_scores, num_snippets, **kw) -> np.ndarray:
    """(m, 4) float64 rows [class, score, start_s, end_s], all thresholds concatenated
    (threshold-major, then class position, then run start)."""
    return np.concatenate(
        generate_proposals_per_threshold_reference(cas, class_ids, video_scores, num_snippets, **kw),
        axis=0)


# --------------------------------------------------------------------------------------------
# fast: the compiled op (case_fast._C, csrc/cpu/oic_cpu.cpp)
# --------------------------------------------------------------------------------------------

def _takes(cas, class_ids, scale) -> bool:
    """Whether the compiled op takes these inputs (T >= 2 snippets of a float32 / float64 T-CAS,
    integer class ids)."""
    return (cas.shape[0] >= 2 and cas.dtype in (np.float32, np.float64) and int(scale) >= 1
            and np.issubdtype(class_ids.dtype, np.integer))


def _compiled(cas, class_ids, video_scores, thresholds, scale, t_factor, oic_lambda, oic_gamma,
              drop_zero_run):
    if not (cas.flags.c_contiguous and cas.flags.writeable):
        cas = np.array(cas, order="C")
    out, counts = torch.ops.case_fast.oic_proposals(
        torch.from_numpy(cas), torch.from_numpy(np.array(class_ids, dtype=np.int64)),
        torch.from_numpy(np.array(video_scores, dtype=np.float64)),
        torch.from_numpy(np.array(thresholds, dtype=np.float64)), int(scale), float(t_factor),
        float(oic_lambda), float(oic_gamma), bool(drop_zero_run))
    return out.numpy(), counts.numpy()


def _unavailable() -> RuntimeError:
    if not _extension.available():
        return _extension.unavailable_error("generate_proposals")
    return RuntimeError("generate_proposals: backend='fast' takes T >= 2 snippets of a float32 / "
                        "float64 T-CAS and integer class ids")


def _generate(cas, class_ids, video_scores, num_snippets, thresholds, scale, num_segments, fps,
              frames_per_snippet, oic_lambda, oic_gamma, drop_zero_run, backend):
    """(m, 4) proposals and (n_thr,) rows per threshold, by ``backend``."""
    cas, class_ids, video_scores, thresholds = _prepare(cas, class_ids, video_scores, thresholds)
    if use_fast(backend, _extension.available() and _takes(cas, class_ids, scale), _unavailable):
        t_factor = time_factor(num_snippets, scale=scale, num_segments=num_segments, fps=fps,
                               frames_per_snippet=frames_per_snippet)
        return _compiled(cas, class_ids, video_scores, thresholds, scale, t_factor, oic_lambda,
                         oic_gamma, drop_zero_run)
    per = generate_proposals_per_threshold_reference(
        cas, class_ids, video_scores, num_snippets, thresholds=thresholds, scale=scale,
        num_segments=num_segments, fps=fps, frames_per_snippet=frames_per_snippet,
        oic_lambda=oic_lambda, oic_gamma=oic_gamma, drop_zero_run=drop_zero_run)
    return np.concatenate(per, axis=0), np.array([len(x) for x in per], dtype=np.int64)


def generate_proposals_per_threshold(
    cas, class_ids, video_scores, num_snippets, *, thresholds=DEFAULT_THRESHOLDS, scale=24,
    num_segments=750, fps=25.0, frames_per_snippet=16, oic_lambda=0.15, oic_gamma=0.2,
    drop_zero_run=True, backend="auto",
) -> List[np.ndarray]:
    """One (m_t, 4) array per threshold, bitwise equal to the reference's (``backend`` as in
    :func:`generate_proposals`)."""
    out, counts = _generate(cas, class_ids, video_scores, num_snippets, thresholds, scale,
                            num_segments, fps, frames_per_snippet, oic_lambda, oic_gamma,
                            drop_zero_run, backend)
    return np.split(out, np.cumsum(counts)[:-1], axis=0)


def generate_proposals(
    cas, class_ids, video_scores, num_snippets, *, thresholds=DEFAULT_THRESHOLDS, scale=24,
    num_segments=750, fps=25.0, frames_per_snippet=16, oic_lambda=0.15, oic_gamma=0.2,
    drop_zero_run=True, backend="auto",
) -> np.ndarray:
    """(m, 4) float64 rows [class, score, start_s, end_s], bitwise the reference's rows in the
    reference's order, whatever the backend.

    ``backend``: 'auto' -- the compiled op ``torch.ops.case_fast.oic_proposals`` when the
    extension is built and takes the inputs (T >= 2, a float32 / float64 T-CAS), else the
    reference; 'fast' -- the compiled op (RuntimeError where it cannot run); 'reference' --
    :func:`generate_proposals_reference`.
    """
    out, _ = _generate(cas, class_ids, video_scores, num_snippets, thresholds, scale, num_segments,
                       fps, frames_per_snippet, oic_lambda, oic_gamma, drop_zero_run, backend)
    return out
