"""The training data on the device: the feature bank a batch is gathered from, the batch order of
each step, and the class-stratified validation hold-out."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .data.sampling import sample_train_indices


class FeatureBank:
    """All videos of a split as one flat (sum T_v, 2D) tensor on the training device, so that a
    batch is one index_select (features stay resident on the GPU)."""

    def __init__(self, dataset, device):
        feats = [dataset.features(i) for i in range(len(dataset))]
        lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = lengths
        self.flat = torch.from_numpy(np.concatenate(feats, axis=0) if feats else
                                     np.zeros((0, 0), np.float32)).to(device)
        self.device = device

    def gather(self, video_ids, index_lists, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, 2D) features; ``out``: a contiguous (B, T, 2D) tensor to write them into."""
        rows = np.stack([self.offsets[v] + idx for v, idx in zip(video_ids, index_lists)])
        rows_t = torch.from_numpy(rows.reshape(-1)).to(self.device, non_blocking=True)
        if out is not None:
            torch.index_select(self.flat, 0, rows_t, out=out.view(rows.size, -1))
            return out
        return self.flat.index_select(0, rows_t).view(len(video_ids), rows.shape[1], -1)


def batch_for_step(step: int, n_videos: int, batch: int, seed: int) -> np.ndarray:
    per_epoch = n_videos // batch
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n_videos)
    return perm[pos * batch:(pos + 1) * batch]


def step_batch(step: int, num_snippets, batch: int, seed: int, t: int):
    """(video ids, snippet indices per video) of training step ``step``: the videos of
    ``batch_for_step`` and, drawn in batch order from (seed, step), each one's ``t`` sampled snippets
    (``num_snippets``: T_v of every training video)."""
    ids = batch_for_step(step, len(num_snippets), batch, seed)
    rng = np.random.default_rng([seed, step, 11])
    return ids, [sample_train_indices(int(num_snippets[v]), t, rng) for v in ids]


VAL_SEED = 15   # the hold-out does not depend on train.seed: every seed is selected on the same videos


def val_split(labels: np.ndarray, fraction: float, seed: int = VAL_SEED):
    """(train ids, val ids): a deterministic class-stratified hold-out of ``fraction`` of the videos.
    Videos are grouped by their first (lowest-index) class (unlabelled ones form a group); each
    group gives round(fraction * size) videos, at least one when it has two or more, drawn with a
    fixed seed."""
    n = labels.shape[0]
    if fraction <= 0 or n == 0:
        return np.arange(n), np.zeros(0, np.int64)
    primary = np.where(labels.sum(1) > 0, labels.argmax(1), -1)
    rng = np.random.default_rng([seed, 0])
    val = []
    for g in np.unique(primary):
        members = np.flatnonzero(primary == g)
        members = members[rng.permutation(len(members))]
        k = int(round(fraction * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        val += members[:k].tolist()
    val = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(n), val), val


class SubsetView:
    """Some videos of a VideoDataset (same interface as far as training and evaluation use it)."""

    def __init__(self, dataset, ids, name: str):
        self._ds, self._ids = dataset, np.asarray(ids, dtype=np.int64)
        self.name = name
        self.class_names = dataset.class_names
        self.videos = [dataset.videos[i] for i in self._ids]
        self.labels = dataset.labels[self._ids]
        self.num_snippets = dataset.num_snippets[self._ids]

    def __len__(self) -> int:
        return len(self._ids)

    def features(self, i: int) -> np.ndarray:
        return self._ds.features(int(self._ids[i]))

    def ground_truth(self) -> dict:
        gt = self._ds.ground_truth()
        keep = np.isin(gt["video"], np.asarray(self.videos, dtype=str))
        return dict(video=gt["video"][keep], label=gt["label"][keep], segment=gt["segment"][keep],
                    videos=list(self.videos), class_names=list(self.class_names),
                    ambiguous={v: a for v, a in gt["ambiguous"].items() if v in set(self.videos)})

