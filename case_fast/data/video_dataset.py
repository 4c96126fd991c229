"""The dataset object: a list of videos with multi-hot labels, lengths, ground-truth segments and
lazily read, checked features (every layout's loader builds one; see :mod:`case_fast.data.load`)."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .annotations import DataError


class VideoDataset:
    """A list of videos with multi-hot labels, lengths and (lazily read) features.

    Attributes: ``name``, ``class_names`` (G), ``videos`` (V), ``labels`` (V, G) float32 multi-hot,
    ``num_snippets`` (V,) int64, ``fps``, ``frames_per_snippet``, ``feature_dim`` (2D), ``sources``
    (V, where each video's features come from, for messages).
    ``features(i)`` returns a read-only (T_v, 2D) float32 array (RGB first half, flow second half).
    """

    def __init__(self, name: str, class_names: Sequence[str], videos: Sequence[str],
                 labels: np.ndarray, num_snippets: Sequence[int], fps: float, frames_per_snippet: int,
                 feature_dim: int, loader: Callable[[int], np.ndarray],
                 sources: Optional[Sequence[str]] = None,
                 gt: Optional[Tuple[Sequence[str], Sequence[int], Sequence[Tuple[float, float]]]] = None,
                 ambiguous: Optional[Dict[str, np.ndarray]] = None,
                 cache: bool = True, trusted: bool = False):
        self.name = str(name)
        self.class_names = [str(c) for c in class_names]
        self.videos = [str(v) for v in videos]
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.videos), len(self.class_names))
        self.num_snippets = np.asarray(num_snippets, dtype=np.int64).reshape(len(self.videos))
        self.fps = float(fps)
        self.frames_per_snippet = int(frames_per_snippet)
        self.feature_dim = int(feature_dim)
        self.sources = list(sources) if sources is not None else [self.name] * len(self.videos)
        self._loader = loader
        self._cache_enabled = bool(cache)
        self._cache: Dict[int, np.ndarray] = {}
        self._trusted = bool(trusted)
        gv, gl, gs = gt if gt is not None else ([], [], [])
        self._gt_video = np.asarray([str(v) for v in gv], dtype=str)
        self._gt_label = np.asarray(gl, dtype=np.int64).reshape(-1)
        self._gt_segment = np.asarray(gs, dtype=np.float64).reshape(-1, 2)
        self._ambiguous = {str(k): np.asarray(v, dtype=np.float64).reshape(-1, 2)
                           for k, v in (ambiguous or {}).items()}
        self.index = {v: i for i, v in enumerate(self.videos)}

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        return (f"VideoDataset({self.name!r}, {len(self)} videos, {len(self.class_names)} classes, "
                f"feature_dim={self.feature_dim}, snippets={int(self.num_snippets.sum())})")

    @property
    def snippet_seconds(self) -> float:
        """Seconds per snippet (frames_per_snippet / fps, 0.64 s for THUMOS14 I3D features)."""
        return self.frames_per_snippet / self.fps

    def _check(self, i: int, arr) -> np.ndarray:
        v, src = self.videos[i], self.sources[i]
        try:
            arr = np.asarray(arr)
        except Exception as e:  # pragma: no cover - ragged objects etc.
            raise DataError(f"{self.name}: features of video {v!r} ({src}) are not an array: {e}") from e
        if arr.ndim != 2:
            raise DataError(f"{self.name}: features of video {v!r} ({src}) have shape {arr.shape}, "
                            f"expected (T_v, {self.feature_dim})")
        if arr.shape[0] == 0:
            raise DataError(f"{self.name}: video {v!r} ({src}) has zero snippets")
        if arr.shape[1] != self.feature_dim:
            raise DataError(f"{self.name}: features of video {v!r} ({src}) are {arr.shape[1]} wide, "
                            f"expected data.feature_dim = {self.feature_dim}")
        if arr.shape[0] != self.num_snippets[i]:
            raise DataError(f"{self.name}: video {v!r} ({src}) has {arr.shape[0]} snippets, "
                            f"expected {int(self.num_snippets[i])}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataError(f"{self.name}: features of video {v!r} ({src}) have dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not self._trusted:
            bad = ~np.isfinite(arr)
            if bad.any():
                t, c = np.argwhere(bad)[0]
                raise DataError(f"{self.name}: features of video {v!r} ({src}) contain "
                                f"{int(bad.sum())} NaN/inf values (first at snippet {t}, channel {c})")
        return arr

    def features(self, i: int) -> np.ndarray:
        """(T_v, 2D) float32, read-only; validated on first access (DataError if bad)."""
        i = int(i)
        got = self._cache.get(i)
        if got is not None:
            return got
        if not 0 <= i < len(self.videos):
            raise IndexError(f"{self.name}: video index {i} out of range [0, {len(self.videos)})")
        try:
            raw = self._loader(i)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.name}: cannot read features of video {self.videos[i]!r} "
                            f"({self.sources[i]}): {type(e).__name__}: {e}") from e
        arr = self._check(i, raw)
        arr.flags.writeable = False
        if self._cache_enabled:
            self._cache[i] = arr
        return arr

    def validate(self) -> "VideoDataset":
        """Read (and check) every video's features now; raises DataError on the first bad one."""
        for i in range(len(self.videos)):
            self.features(i)
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    def ground_truth(self) -> dict:
        """Ground-truth segments of this set (seconds), for evaluation.

        video (n,) str, label (n,) int64 class index, segment (n, 2) float64, videos (all V videos of
        the set, including those without segments), class_names, ambiguous {video: (m, 2) float64}.
        """
        return dict(video=self._gt_video.copy(), label=self._gt_label.copy(),
                    segment=self._gt_segment.copy(), videos=list(self.videos),
                    class_names=list(self.class_names),
                    ambiguous={k: v.copy() for k, v in self._ambiguous.items()})
