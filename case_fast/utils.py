"""Small shared helpers: atomic writes, seeding, a dependency-free progress bar, devices."""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Optional

import numpy as np
import torch


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path in the target's folder; on success it replaces ``path`` atomically,
    on an exception it is removed and ``path`` is untouched."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def no_timer(name: str):
    """The default phase timer: times nothing (``case-fast profile`` passes a real one)."""
    return nullcontext()


def save_torch(obj: Any, path: str) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_json(obj: Any, path: str, indent: Optional[int] = 1) -> None:
    text = json.dumps(obj, indent=indent)   # serialise first: a failure leaves nothing behind
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def save_text(text: str, path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
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
