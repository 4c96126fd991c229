"""``train.cuda_graph``: one whole CASE training step (forward, losses, backward, Adam) captured in a
CUDA graph and replayed for every later step, after PyTorch's "whole network capture" recipe.

Only the trainer uses this (``case_fast.training.trainer.train``); the eager step there is unchanged.
"""
from __future__ import annotations

import time
import warnings
from typing import Dict, NamedTuple, Optional, Sequence

import torch

from ..config.schema import Config
from .step import train_step

WARMUP_STEPS = 3


class GraphStepOutputs(NamedTuple):
    loss: torch.Tensor                 # detached scalar
    parts: Dict[str, torch.Tensor]     # detached scalars (StepResult.parts)
    q_s: Optional[torch.Tensor]        # (N, K) or None


def require_cuda(device: torch.device) -> None:
    """The clear error for ``train.cuda_graph=true`` off a CUDA device."""
    if device.type != "cuda":
        raise ValueError(f"train.cuda_graph=true needs a CUDA device, but this run's device is "
                         f"{device} (set train.device=cuda on a machine with a GPU, or "
                         "train.cuda_graph=false)")


def set_capturable(optim: torch.optim.Optimizer, capturable: bool) -> None:
    """Give every parameter group this run's ``capturable`` flag; where a group's flag changes,
    host its ``step`` counters where the new flag wants them (float32 on the parameter's device
    when capturable, as torch itself does; on the CPU otherwise). Groups that already have the
    flag are left exactly as loaded.

    ``Optimizer.load_state_dict`` restores the *saved* param_groups, ``capturable`` included:
    without this a checkpoint written by an eager run could not be captured (Adam refuses to step
    under capture unless capturable), and a graph run's checkpoint would make an eager resume take
    the capturable code path.
    """
    for group in optim.param_groups:
        if bool(group.get("capturable", False)) == capturable:
            continue
        group["capturable"] = capturable
        for p in group["params"]:
            state = optim.state.get(p)
            if state and torch.is_tensor(state.get("step")):
                state["step"] = (state["step"].to(device=p.device, dtype=torch.float32) if capturable
                                 else state["step"].to(device="cpu"))


class GraphedStep:
    """One training step of ``model`` + ``optim`` (Adam built with ``capturable=True``) as a CUDA
    graph.

    Static (allocated once; the graph reads and writes these same addresses on every replay):

    * inputs ``feats`` (B, T, 2D) and ``labels`` (B, G): the caller copies each step's batch into
      them (``copy_`` or ``out=``) before calling :meth:`step`;
    * ``q_c`` (K, 2): the step reads Q^C_t from it and, as its last captured operation, writes
      Q^C_{t+1} back into it, so the recurrence carries over from replay to replay. The caller
      reads it (evaluation, logging, checkpoints) but never rebinds it;
    * the outputs returned by :meth:`step` after capture (loss, loss parts, Q^S) are tensors of the
      graph's memory pool that the next replay overwrites: copy or clone what must outlive a step;
    * the parameters' ``.grad`` tensors (allocated from the graph's pool: gradients are set to
      None right before capture) and the optimizer state (updated in place: the parameters seen by
      an eager evaluation between replays are always the current ones).

    Sequence of calls to :meth:`step` (each call is one real training step):

    1. the first ``warmup`` calls run the step eagerly on a side stream (the recipe's warm-up:
       lazy initialisation of Adam's state, cuBLAS/cuDNN handles and Triton kernels happens here,
       not during capture);
    2. the next call zeroes the gradients (``set_to_none=True``), captures the step on that same
       side stream and then replays it once: capturing records the work without running it;
    3. every later call is one ``replay()`` on the current stream.

    A resumed run builds a new ``GraphedStep`` and warms up again.
    """

    def __init__(self, model: torch.nn.Module, optim: torch.optim.Optimizer, cfg: Config,
                 q_c: torch.Tensor, feats_shape: Sequence[int], labels_shape: Sequence[int], *,
                 feats_dtype: torch.dtype = torch.float32, labels_dtype: torch.dtype = torch.float32,
                 warmup: int = WARMUP_STEPS):
        device = q_c.device
        require_cuda(device)
        if warmup < 1:
            raise ValueError("GraphedStep: warmup must be >= 1 (Adam's state must exist before capture)")
        if not all(g.get("capturable", False) for g in optim.param_groups):
            raise ValueError("GraphedStep: the optimizer must be built with capturable=True")
        self.model, self.optim, self.cfg, self.device = model, optim, cfg, device
        self.warmup = warmup
        self.feats = torch.zeros(tuple(feats_shape), dtype=feats_dtype, device=device)
        self.labels = torch.zeros(tuple(labels_shape), dtype=labels_dtype, device=device)
        self.q_c = q_c.detach().to(torch.float32).clone()
        with torch.cuda.device(device):
            self.stream = torch.cuda.Stream(device)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.captured_at: Optional[int] = None   # call index (0-based) of the capture
        self.capture_seconds = 0.0                # host wall time of the capture itself
        self._static: Optional[GraphStepOutputs] = None
        self.calls = 0

    def _run(self) -> GraphStepOutputs:
        """The step itself (the same operations in the warm-up, the capture and every replay)."""
        res = train_step(self.model, self.optim, self.feats, self.labels, self.q_c, self.cfg)
        self.q_c.copy_(res.q_c)   # a no-op when CCC is off (res.q_c is then q_c itself)
        return GraphStepOutputs(res.loss.detach(), dict(res.parts), res.q_s)

    def step(self) -> GraphStepOutputs:
        with torch.cuda.device(self.device):
            if self.calls < self.warmup:
                out = self._warmup_step()
            else:
                if self.graph is None:
                    self._capture()
                self.graph.replay()
                out = self._static
        self.calls += 1
        return out

    def _warmup_step(self) -> GraphStepOutputs:
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)      # the batch was written on the current stream
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            # torch warns that a capturable optimizer stepping uncaptured is slower: expected here
            warnings.filterwarnings("ignore", message=r".*capturable=True.*without CUDA graph capture")
            self.optim.zero_grad(set_to_none=True)
            out = self._run()
        current.wait_stream(self.stream)      # the caller reads the outputs on its stream
        return out

    def _capture(self) -> None:
        t0 = time.perf_counter()
        self.optim.zero_grad(set_to_none=True)   # backward allocates .grad from the graph's pool
        graph = torch.cuda.CUDAGraph()
        # torch.cuda.graph synchronises the device first, so the batch copied in is complete
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._static = self._run()
        except Exception as e:
            raise RuntimeError(f"capturing the training step in a CUDA graph failed ({e}); "
                               "train with train.cuda_graph=false") from e
        self.graph = graph
        self.captured_at = self.calls
        self.capture_seconds = time.perf_counter() - t0
