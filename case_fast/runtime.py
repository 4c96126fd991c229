"""The process around a run: the device it asks for, its seeding, and the null phase timer
(``case-fast profile`` passes a real one)."""
from __future__ import annotations

import random
import re
from contextlib import nullcontext

import numpy as np
import torch


def no_timer(name: str):
    """The default phase timer: times nothing (``case-fast profile`` passes a real one)."""
    return nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise ValueError(f"unknown device {name!r} (expected auto, cpu, cuda or cuda:N)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)
