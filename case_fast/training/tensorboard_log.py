"""TensorBoard event files of a run (train.tensorboard); metrics.jsonl stays the source of truth."""
from __future__ import annotations

import os


class TensorBoardLog:
    """TensorBoard event files in <run>/tensorboard, opened on the first write (a resumed run that has
    nothing left to do writes nothing). On resume from step s, events after s left by the killed run
    are purged (purge_step = s + 1). Without the tensorboard package: one line, then nothing."""

    def __init__(self, run_dir: str, enabled: bool, start: int, log):
        self.dir, self.enabled, self.start, self.log = os.path.join(run_dir, "tensorboard"), enabled, start, log
        self.writer = None

    def _open(self):
        if self.writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.log("tensorboard is not installed: no TensorBoard event files (metrics.jsonl has "
                         "every number; pip install tensorboard, or train.tensorboard=false)")
                self.enabled = False
                return None
            self.writer = SummaryWriter(self.dir, purge_step=self.start + 1 if self.start else None)
        return self.writer

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        w = self._open()
        if w is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                w.add_scalar(f"{prefix}/{k}", float(v), step)

    def evaluation(self, prefix: str, summ: dict, step: int) -> None:
        vals = {"avg": summ["avg"], **{k: summ[k] for k in ("avg_0.1:0.5", "avg_0.3:0.7") if k in summ}}
        vals.update({f"mAP@{t:g}": m for t, m in zip(summ["tiou"], summ["map"])})
        self.scalars(prefix, vals, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
