"""The process around a run: the device it asks for, its seeding, a progress bar on stderr, and the
null phase timer (``case-fast profile`` passes a real one)."""
from __future__ import annotations

import random
import re
import sys
import time
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


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True, start: int = 0):
        self.total, self.n, self.desc = total, start, desc
        self.enabled = enabled
        self.t0 = time.time()
        self.start = start
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.postfix = ""

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n += n
        if postfix:
            self.postfix = postfix
        if not self.enabled:
            return
        now = time.time()
        interval = 0.2 if self.tty else 15.0
        if now - self.last_print < interval and self.n < self.total:
            return
        self.last_print = now
        done = self.n - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        frac = self.n / max(self.total, 1)
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        line = (f"{self.desc} [{bar}] {self.n}/{self.total} {rate:.1f}it/s "
                f"eta {eta:.0f}s {self.postfix}")
        if self.tty:
            sys.stderr.write("\r" + line[:160])
            if self.n >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def write(self, msg: str) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 160 + "\r")
        print(msg, flush=True)
