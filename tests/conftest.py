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


# released parameter name -> ours (per stream)
_NAMES = {"cas_module_{s}.0": "{s}.cls_conv1", "cas_module_{s}.2": "{s}.cls_conv2",
          "base_module_{s}.0": "{s}.att_conv1", "att_module_{s}": "{s}.att_conv2"}


@pytest.fixture(scope="session")
def released_to_ours():
    """The released code's parameter name -> ours (``clu_head_rgb.prototypes.weight`` ->
    ``rgb.prototypes``, ...), for the reference tests of the released run."""
    def to_ours(name: str) -> str:
        for s in ("rgb", "flow"):
            if name == f"clu_head_{s}.prototypes.weight":
                return f"{s}.prototypes"
            for theirs, ours in _NAMES.items():
                theirs = theirs.format(s=s)
                if name.startswith(theirs + "."):
                    return ours.format(s=s) + name[len(theirs):]
        raise KeyError(name)
    return to_ours
