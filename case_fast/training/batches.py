"""The training data: the feature bank on the device a batch is gathered from, the run's random
streams (the batch order and snippet sampling of every step, drawn on the CPU), and the
class-stratified validation hold-out."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data.sampling import sample_train_batch


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
        rows = self.offsets[np.asarray(video_ids)][:, None] + np.asarray(index_lists)
        rows_t = torch.from_numpy(rows.reshape(-1)).to(self.device, non_blocking=True)
        if out is not None:
            torch.index_select(self.flat, 0, rows_t, out=out.view(rows.size, -1))
            return out
        return self.flat.index_select(0, rows_t).view(len(video_ids), rows.shape[1], -1)


class RunStreams:
    """The random streams of a training run after its set-up, as the released run draws them
    (method.md §8): which videos form each step's batch and which snippets are sampled from each.

    * ``loader``: torch's global generator after set-up (a fresh ``seed``). Every epoch draws one
      int64 (the released DataLoader iterator's base seed, unused with 0 workers) and a second one
      that seeds a private ``torch.Generator``; the epoch's order is ``torch.randperm(n)`` from it,
      cut into n // B batches (the last incomplete one dropped; ``drop_last=False``, as AICL's
      loader: ceil(n / B) batches, the last one smaller). Every periodic evaluation draws one
      int64 (:meth:`evaluation`: the released test loader's iterator).
    * ``snippets``: numpy's global legacy generator after set-up (``RandomState(seed)``): the
      closed-range sampler of each video, in batch order (``data/sampling.py``).

    Both live on the CPU (only indices are drawn there). Every rank of a data-parallel job draws the
    whole global batch and keeps its slice, so the streams are those of one process. ``state_dict``
    holds both generators and the current epoch's order: a run resumed from it draws what the
    uninterrupted run draws."""

    def __init__(self, seed: int, n_videos: int, batch: int, drop_last: bool = True):
        self.n, self.batch = int(n_videos), int(batch)
        self.per_epoch = self.n // self.batch if drop_last else -(-self.n // self.batch)
        if self.per_epoch < 1:
            raise ValueError(f"{self.n} training videos, fewer than one batch of {self.batch}")
        self.loader = torch.Generator().manual_seed(int(seed))
        self.snippets = np.random.RandomState(int(seed) % 2 ** 32)
        self.order: Optional[np.ndarray] = None

    def _int64(self) -> int:
        return int(torch.empty((), dtype=torch.int64).random_(generator=self.loader))

    def batch_videos(self, step: int) -> np.ndarray:
        """(B,) indices into the training videos (their order in the dataset) of step ``step``;
        the first step of an epoch draws the epoch's order. Steps are drawn one after the other."""
        epoch_pos = step % self.per_epoch
        if epoch_pos == 0:
            self._int64()   # the iterator's base seed
            perm = torch.Generator().manual_seed(self._int64())
            self.order = torch.randperm(self.n, generator=perm).numpy()
        elif self.order is None:
            raise RuntimeError(f"step {step} is inside an epoch whose order was never drawn")
        return self.order[epoch_pos * self.batch:(epoch_pos + 1) * self.batch]

    def sample(self, video_ids: np.ndarray, num_snippets: np.ndarray, t: int) -> np.ndarray:
        """(B, t) snippet indices of the batch's videos, drawn in batch order."""
        return sample_train_batch(np.asarray(num_snippets)[video_ids], t, self.snippets)

    def evaluation(self) -> None:
        """The draw of a periodic evaluation (it shifts the order of every later epoch)."""
        self._int64()

    def state_dict(self) -> dict:
        _, keys, pos, has_gauss, gauss = self.snippets.get_state()
        return {"loader": self.loader.get_state(),
                "snippets": {"key": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                             "has_gauss": int(has_gauss), "gauss": float(gauss)},
                "order": None if self.order is None else torch.from_numpy(self.order.copy()),
                "n": self.n, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        if (state["n"], state["batch"]) != (self.n, self.batch):
            raise ValueError(f"the streams were saved for {state['n']} videos in batches of "
                             f"{state['batch']}, not {self.n} in batches of {self.batch}")
        self.loader.set_state(state["loader"].cpu())
        s = state["snippets"]
        self.snippets.set_state(("MT19937", s["key"].cpu().numpy().astype(np.uint32), s["pos"],
                                 s["has_gauss"], s["gauss"]))
        self.order = None if state["order"] is None else state["order"].cpu().numpy().astype(np.int64)


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

