"""The one backend vocabulary of case_fast.ops, passed to every op as ``backend=``:

``'auto'`` (default): the fast path when it is available for these inputs, else the reference.
``'reference'``: the plain PyTorch/NumPy implementation (always available).
``'fast'``: the fast path (Triton kernel or compiled op); an error when it is not available for
these inputs, never silently the reference.

Nothing is global: each call says what it wants.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "reference", "fast")


def use_fast(backend: str, available: bool, unavailable) -> bool:
    """Whether an op runs its fast path. ``available``: the fast path can run these inputs;
    ``unavailable()``: the exception raised for backend='fast' when it cannot."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "fast" and not available:
        raise unavailable()
    return backend != "reference" and available


def triton_runs(t, backend: str) -> bool:
    """Whether the Triton kernels can run on tensor ``t``: triton is installed and ``t`` is a CUDA
    tensor. Under TRITON_INTERPRET=1 (the CPU tests) backend='fast' also runs them on CPU
    tensors, through the interpreter; 'auto' never picks the interpreter."""
    interpret = backend == "fast" and os.environ.get("TRITON_INTERPRET", "0") == "1"
    if not (t.is_cuda or interpret):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_fast(backend: str, op: str, t: torch.Tensor, *float64_refused) -> bool:
    """The Triton kernels take CUDA tensors (see ``triton_runs``); the Sinkhorn kernel computes in
    float32 and refuses float64 logits / prior / rank."""
    ok = triton_runs(t, backend) and all(x is None or x.dtype != torch.float64
                                         for x in float64_refused)
    return use_fast(backend, ok, lambda: RuntimeError(
        f"{op}: backend='fast' needs triton and CUDA tensors (or TRITON_INTERPRET=1)"
        + (", not float64" if float64_refused else "")))
