"""Helper of tests/training/test_distributed.py (not a test module): ``case-fast`` with two test-side hooks,
for one process or each rank of a torchrun job.

    [torchrun --nproc_per_node 2] tests/training/watched_train.py [--kill-at N] [--record DIR] -- train ...

``--kill-at N``: rank 0 is SIGKILLed when it is about to draw the batch of step N (a crash between
two steps). ``--record DIR``: every rank saves DIR/rank<r>.pt at exit: per step, the videos and
snippet indices it gathered (its slice of the global batch).
"""
import argparse
import atexit
import os
import signal
import sys

import numpy as np
import torch

from case_fast.cli.main import main
from case_fast.training.batches import FeatureBank, RunStreams


def watch(kill_at, record):
    rank = int(os.environ.get("RANK", "0"))
    state = {"step": None, "videos": {}, "snippets": {}}
    real_batch, real_gather = RunStreams.batch_videos, FeatureBank.gather

    def batch_videos(self, step):
        if step == kill_at and rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        state["step"] = step
        return real_batch(self, step)

    def gather(self, video_ids, index_lists, out=None):
        state["videos"][state["step"]] = np.array(video_ids)
        state["snippets"][state["step"]] = np.array(index_lists)
        return real_gather(self, video_ids, index_lists, out)
    RunStreams.batch_videos = batch_videos
    if record:
        FeatureBank.gather = gather
        atexit.register(lambda: torch.save({"videos": state["videos"], "snippets": state["snippets"]},
                                           os.path.join(record, f"rank{rank}.pt")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--record")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    watch(args.kill_at, args.record)
    sys.exit(main(args.rest[1:] if args.rest[:1] == ["--"] else args.rest))
