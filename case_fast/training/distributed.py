"""Data-parallel training on torch.distributed (``torchrun --nproc_per_node N -m case_fast train``).

The method is the same as in one process at the same global batch: every rank draws the whole
global batch (``RunStreams``' videos and snippets, the streams of one process) and keeps its
contiguous slice of ``B / world`` videos, and the pieces of CASE that look at the whole batch are
reduced across ranks through a :class:`ProcessGroup` passed to the pseudo-label functions
(``pg=None``, the default, is the single-process code path, unchanged):

* SCC rank prior (``ops.prior_rank``, ``ops.rank_prior`` with this group as their ``coll`` hook):
  the fused attention of all N snippets is all-gathered, ordered once (identical on every rank:
  the same ordering of the same vector) and each rank takes its slice; the prior's normalisation
  over all N·K entries is an all-reduced sum.
* SCC Sinkhorn (``ops.sinkhorn_reference`` with the hook, the reference sequence of method.md §4):
  the column maxima, the kernel's total and the column sums of every iteration are all-reduced;
  rows are local; M is the global N.
* CCC: the Q^S- and [Q^A, 1-Q^A]-weighted sums of E are all-reduced *with autograd*
  (``torch.distributed.nn.functional.all_reduce``), so the (K, 2) logits, the loss and Q^C are the
  same on every rank; β = mean Q^A over the global batch.

Gradient scaling. DDP averages gradients over the W ranks. The per-video / per-snippet losses
(L_V, L_A, L_S) are means over a rank's B/W videos (N/W snippets): the average of the W local
means is the global mean, so DDP's average is the global gradient. The CCC loss is computed on every
rank from the all-reduced prototypes P = Σ_r P_r: its gradient dL/dP = g is the same on all ranks;
the all_reduce backward sums it (W·g reaches each rank's P_r) and DDP's 1/W average gives
Σ_r g·∂P_r/∂θ, the true gradient. Logged losses are averaged over ranks at logging time.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, List, NoReturn, Optional

import torch


@dataclass
class ProcessGroup:
    """This process's place in a data-parallel job: ``rank`` of ``world`` (``group``: a
    torch.distributed group, None for the default one)."""
    rank: int
    world: int
    group: Any = None
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- no-gradient collectives ----------------------------------------------------------------
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks (a new tensor, no gradient)."""
        import torch.distributed as dist
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def max(self, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenation along dim 0 of every rank's ``t`` (equal shapes), in rank order."""
        import torch.distributed as dist
        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t, group=self.group)
        return torch.cat(parts, dim=0)

    # -- with gradient --------------------------------------------------------------------------
    def sum_grad(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks with autograd: the backward all-reduces (sums) the incoming gradients
        (what torch.distributed.nn.functional.all_reduce does; that one is deprecated)."""
        return _SumOverRanks.apply(t, self.group)

    # -- Python objects -------------------------------------------------------------------------
    def gather_objects(self, obj) -> List[Any]:
        import torch.distributed as dist
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_object(self, obj, src: int = 0):
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier(group=self.group)

    def agree(self, error: Optional[BaseException]) -> None:
        """Collective: every rank raises if any rank had an error (the first one's text), so a check
        that fails on one rank (rank 0's run-directory checks) ends every rank, not a hang."""
        msgs = self.gather_objects(None if error is None else (type(error).__name__, str(error)))
        for r, m in enumerate(msgs):
            if m is not None:
                if error is not None:
                    raise error
                raise RankError(f"rank {r}: {m[1]}")


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, group):
        import torch.distributed as dist
        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


class RankError(RuntimeError):
    """Another rank of the job failed a check (its message is repeated)."""


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with WORLD_SIZE > 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def env_world() -> tuple:
    """(rank, world size, local rank) from the launcher's environment (0, 1, 0 without one)."""
    if not launched():
        return 0, 1, 0
    return (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", "0")))


def init(device_kind: str = "cpu", timeout_s: float = 1800.0) -> Optional[ProcessGroup]:
    """Join the launcher's process group (gloo for CPU training, nccl for CUDA); None when this is a
    single process. Idempotent. Prefer :func:`process_group`, which also leaves it correctly."""
    global _joined
    if not launched():
        return None
    import torch.distributed as dist
    rank, world, local = env_world()
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    _joined = True
    return ProcessGroup(rank=rank, world=world, group=None, local_rank=local)


_joined = False   # this process joined a process group (it is a launcher's worker)


def joined() -> bool:
    """Whether this process has been a rank of a process group (then it ends with :func:`exit_worker`)."""
    return _joined


def shutdown(clean: bool = True) -> None:
    """Leave the process group. ``clean``: every rank got here normally, so they first meet at a
    barrier: no rank closes its gloo connections while a peer still has a collective in flight on
    them. After an error the barrier is skipped (a peer may be gone). Then the Python objects that
    still hold the group (DDP's reducer and finished-but-unreleased work, often in reference cycles)
    are collected, so that ``destroy_process_group`` really joins the backend's threads now, while
    the interpreter is fully alive."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device_kind: str = "cpu", timeout_s: float = 1800.0) -> Iterator[Optional[ProcessGroup]]:
    """``with process_group(kind) as pg:`` the launcher's process group for the block (``pg`` is None
    in a single process); on leaving, :func:`shutdown`, with the barrier only when the block ended
    normally."""
    pg = init(device_kind, timeout_s)
    if pg is None:
        yield None
        return
    try:
        yield pg
    except BaseException:
        shutdown(clean=False)
        raise
    shutdown()


def exit_worker(code: int) -> NoReturn:
    """End a launcher's worker process with ``code``, skipping interpreter finalisation. A gloo
    process group leaves C++ state behind it (the transport's threads, work objects that own
    tensors); when the interpreter and the C++ runtime tear down around it, a thread can be
    destroyed while joinable or a tensor freed without an interpreter, and the process aborts
    ("terminate called without an active exception", SIGABRT) after its work is done, so torchrun
    reports a failed job. Here the atexit handlers run, the standard streams are flushed, and the
    process ends with ``os._exit`` (every file the package writes is already closed and fsynced)."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
