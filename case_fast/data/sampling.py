"""Sampling a video of T_v snippets to a fixed length T (method.md §1).

* Training (:func:`sample_train_indices`, :func:`sample_train_batch`), as released (BaS-Net's
  ``random_perturb``, inherited by CASE): with lo_i = floor(i*T_v/T), bin i < T-1 draws uniformly
  from the *closed* range [lo_i, lo_{i+1}] when lo_i != lo_{i+1} (so it can pick the next bin's first
  index) and takes lo_i otherwise; the last bin draws from [lo_{T-1}, T_v-1] when
  lo_{T-1} < T_v-1, else takes lo_{T-1}. T_v == T gives 0..T-1 with no draw; T_v == 1 gives zeros.
  Every draw is a legacy bounded draw of a ``numpy.random.RandomState`` (the MT19937 stream behind
  ``numpy.random.seed``), bin by bin in order, video by video in batch order. A bounded draw with
  an array of bounds consumes the stream exactly as the per-bin scalar draws do, so the fast path
  draws a whole batch in one call; :func:`sample_train_indices_loop` is the per-bin reference.
* Testing (:func:`sample_test_indices`): floor(i*T_v/T) for i = 0..T-1, deterministic;
  :func:`sample_test_features` gathers a dataset's videos at those indices (every evaluation,
  ``detect`` and the plots read test features through it).

All bounds are computed with exact integer arithmetic ((i*T_v)//T), which equals the float
formula ``int(i * T_v / T)`` of the released code for every T_v, T in range.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def _check(num_snippets: int, T: int) -> Tuple[int, int]:
    tv, t = int(num_snippets), int(T)
    if tv < 1:
        raise ValueError(f"cannot sample a video with {tv} snippets")
    if t < 1:
        raise ValueError(f"T must be positive, got {t}")
    return tv, t


def sample_test_indices(num_snippets: int, T: int) -> np.ndarray:
    """(T,) int64: floor(i * T_v / T)."""
    tv, t = _check(num_snippets, T)
    return (np.arange(t, dtype=np.int64) * tv) // t


def sample_test_features(dataset, ids: Sequence[int], T: int) -> np.ndarray:
    """(len(ids), T, D) features of the videos ``ids`` (at least one) of ``dataset`` at their test
    indices."""
    return np.stack([dataset.features(i)[sample_test_indices(int(dataset.num_snippets[i]), T)]
                     for i in ids])


def _closed_ranges(tv: int, t: int) -> Tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of every bin's closed range; lo == hi: no draw."""
    lo = sample_test_indices(tv, t)
    hi = np.empty_like(lo)
    hi[:-1] = lo[1:]
    hi[-1] = tv - 1
    if tv == t:   # the released code returns 0..T-1 without looking at the bins
        hi = lo
    return lo, hi


def sample_train_batch(num_snippets: Sequence[int], T: int, rng: np.random.RandomState) -> np.ndarray:
    """(B, T) int64: the training indices of B videos (T_v each), drawn in batch order from ``rng``
    in one bounded draw (the same stream use as :func:`sample_train_indices_loop` video by video)."""
    bounds = [_closed_ranges(*_check(tv, T)) for tv in num_snippets]
    if not bounds:
        return np.zeros((0, int(T)), np.int64)
    lo = np.stack([b[0] for b in bounds])
    hi = np.stack([b[1] for b in bounds])
    out = lo.copy()
    draw = lo != hi
    if draw.any():
        out[draw] = rng.randint(lo[draw], hi[draw] + 1)
    return out


def sample_train_indices(num_snippets: int, T: int, rng: np.random.RandomState) -> np.ndarray:
    """(T,) int64: the training indices of one video (see the module docstring)."""
    return sample_train_batch([num_snippets], T, rng)[0]


def sample_train_indices_loop(num_snippets: int, T: int, rng: np.random.RandomState) -> np.ndarray:
    """The plain reference of :func:`sample_train_indices`: one scalar draw per bin, in order."""
    tv, t = _check(num_snippets, T)
    if tv == t:
        return np.arange(t, dtype=np.int64)
    out = np.empty(t, np.int64)
    for i in range(t):
        lo = int(i * tv / t)
        hi = int((i + 1) * tv / t) if i < t - 1 else tv - 1
        out[i] = rng.randint(lo, hi + 1) if hi > lo else lo
    return out


def sample_batch(dataset, video_ids: Sequence[int], T: int,
                 rng: np.random.RandomState) -> Tuple[np.ndarray, np.ndarray]:
    """Training batch: feats (B, T, 2D) float32 (the training sampler, video by video in batch
    order) and the multi-hot labels (B, G) float32 of ``dataset``."""
    ids = [int(v) for v in video_ids]
    idx = sample_train_batch([dataset.num_snippets[v] for v in ids], T, rng)
    out = np.empty((len(ids), int(T), int(dataset.feature_dim)), dtype=np.float32)
    for b, vid in enumerate(ids):
        out[b] = dataset.features(vid)[idx[b]]
    labels = np.asarray(dataset.labels, dtype=np.float32)[ids]
    return out, labels
