"""The software and hardware a run used, recorded in its train.log and summary.json: case-fast,
Python, torch, CUDA (torch's build) and Triton versions, the device's name and the git commit of
the package's source when it is a git checkout."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Optional

import torch


def _triton_version() -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version("triton")
    except PackageNotFoundError:
        return None


def git_commit() -> Optional[str]:
    """The commit of the checkout holding the package's source ('+modified' when it has changes),
    None when it is not a git checkout (an installed wheel) or git is missing."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD", "--show-toplevel"],
                              capture_output=True, text=True, timeout=5)
        lines = head.stdout.split("\n")
        # the package must be this checkout's case_fast/ (not an install inside another repository)
        if head.returncode != 0 or len(lines) < 2 or not os.path.samefile(
                os.path.join(lines[1].strip(), "case_fast"), here):
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return lines[0].strip() + ("+modified" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def environment(device="cpu") -> dict:
    from . import __version__
    return {"case_fast": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "cuda": torch.version.cuda, "triton": _triton_version(), "device": device_name(device),
            "git_commit": git_commit()}


def describe(env: dict) -> str:
    """One line: 'case-fast 0.1.0, Python 3.11.4, torch 2.4.0, CUDA 12.1, Triton 3.0.0, device ...,
    git abc123' (missing items as 'none')."""
    return (f"case-fast {env['case_fast']}, Python {env['python']}, torch {env['torch']}, "
            f"CUDA {env['cuda'] or 'none'}, Triton {env['triton'] or 'none'}, device {env['device']}, "
            f"git commit {env['git_commit'] or 'none'}")
