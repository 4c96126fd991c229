"""Sampling a video of T_v snippets to a fixed length T (method.md §1).

* Training (:func:`sample_train_indices`): the range [0, T_v) is cut into T equal bins,
  bin i = [floor(i*T_v/T), floor((i+1)*T_v/T)), and one index is drawn uniformly inside each bin.
  When a bin is empty (only possible when T_v < T) its lower bound floor(i*T_v/T) is used, so
  indices repeat and the result is still sorted and covers the whole video. T_v == T gives
  0..T-1 exactly (every bin holds one index); T_v == 1 gives all zeros.
* Testing (:func:`sample_test_indices`): floor(i*T_v/T) for i = 0..T-1, deterministic.

All bounds are computed with exact integer arithmetic ((i*T_v)//T), which equals the float
formula ``int(i * T_v / T)`` of the reference code for every T_v, T in range.

Note on the released code (BaS-Net's ``random_perturb``, inherited by CASE): it draws from the
*closed* range [floor(i*T_v/T), floor((i+1)*T_v/T)], so it can also pick the next bin's first index,
and the last bin is [floor((T-1)*T_v/T), T_v). The half-open bins here follow method.md §1's wording;
the difference is at most one snippet per draw and does not change the expected coverage.
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


def _bins(tv: int, t: int) -> Tuple[np.ndarray, np.ndarray]:
    i = np.arange(t + 1, dtype=np.int64)
    edges = (i * tv) // t
    return edges[:-1], edges[1:]


def sample_test_indices(num_snippets: int, T: int) -> np.ndarray:
    """(T,) int64: floor(i * T_v / T)."""
    tv, t = _check(num_snippets, T)
    return _bins(tv, t)[0]


def sample_train_indices(num_snippets: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) int64: one uniform random index in each of T equal bins of [0, T_v); an empty bin
    (T_v < T) gives its lower bound floor(i*T_v/T)."""
    tv, t = _check(num_snippets, T)
    lo, hi = _bins(tv, t)
    width = np.maximum(hi - lo, 1)
    # one uniform draw per bin; floor(u * width) is in [0, width) for u in [0, 1)
    off = np.floor(rng.random(t) * width).astype(np.int64)
    return lo + np.minimum(off, width - 1)


def sample_batch(dataset, video_ids: Sequence[int], T: int,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Training batch: feats (B, T, 2D) float32 (random in-bin sampling per video) and the
    multi-hot labels (B, G) float32 of ``dataset``."""
    ids = [int(v) for v in video_ids]
    out = np.empty((len(ids), int(T), int(dataset.feature_dim)), dtype=np.float32)
    for b, vid in enumerate(ids):
        f = dataset.features(vid)
        out[b] = f[sample_train_indices(f.shape[0], T, rng)]
    labels = np.asarray(dataset.labels, dtype=np.float32)[ids]
    return out, labels
