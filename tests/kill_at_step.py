"""Helper of tests/test_distributed.py (not a test module): ``case-fast`` whose rank 0 is SIGKILLed
when it is about to draw the batch of step N, as a crash between two steps.

    torchrun --nproc_per_node 2 tests/kill_at_step.py N train --out RUN [overrides...]
"""
import os
import signal
import sys

from case_fast.cli import main
from case_fast.train_data import RunStreams

_real = RunStreams.batch_videos


def _batch_videos(self, step):
    if step == int(sys.argv[1]) and os.environ.get("RANK", "0") == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(self, step)


if __name__ == "__main__":
    RunStreams.batch_videos = _batch_videos
    sys.exit(main(sys.argv[2:]))
