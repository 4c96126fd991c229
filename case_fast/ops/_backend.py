"""Backend selection for case_fast.ops.

``reference``: the plain PyTorch/NumPy implementations in this package (always available).
``fast``: Triton kernels for CUDA tensors, the compiled extension for NMS.
``auto`` (default): fast where it applies (CUDA tensors for the Triton ops, the compiled
extension when it is built), reference otherwise.

Set globally with ``case_fast.ops.set_backend(...)`` or the ``CASE_FAST_BACKEND`` environment
variable; every op also takes ``backend=`` for one call.
"""
from __future__ import annotations

import os
import warnings

BACKENDS = ("auto", "reference", "fast")
_state = {"backend": os.environ.get("CASE_FAST_BACKEND", "auto")}
_warned = set()


def set_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _state["backend"] = name


def get_backend() -> str:
    b = _state["backend"]
    if b not in BACKENDS:
        raise ValueError(f"CASE_FAST_BACKEND must be one of {BACKENDS}, got {b!r}")
    return b


def resolve(backend) -> str:
    b = backend or get_backend()
    if b not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {b!r}")
    return b


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
