import os

# Triton kernels are exercised on the CPU through the interpreter; this must be set before any
# kernel is defined (i.e. before case_fast.kernels is imported anywhere).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared (reference outputs, THUMOS14 annotations) is not beside the checkout")
    return SHARED


@pytest.fixture
def interrupt_at(monkeypatch):
    """``with interrupt_at(step): train(...)``: the run raises KeyboardInterrupt when it is about to
    draw the batch of ``step`` (as if killed between two steps); outside the block training is
    untouched."""
    import contextlib

    from case_fast.training.batches import RunStreams

    @contextlib.contextmanager
    def arm(step: int):
        real = RunStreams.batch_videos

        def batch_videos(self, s):
            if s == step:
                raise KeyboardInterrupt(f"interrupted at step {s} (test)")
            return real(self, s)
        with monkeypatch.context() as m:
            m.setattr(RunStreams, "batch_videos", batch_videos)
            yield
    return arm
