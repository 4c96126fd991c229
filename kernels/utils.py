"""Launch helpers shared by the Triton kernels (block sizes, warps, the device's SM count)."""
from __future__ import annotations

import torch

_SM_COUNT = {}


def pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): a block size that holds n."""
    return 1 << max(0, (int(n) - 1).bit_length())


def num_warps(tile: int, per: int = 512, cap: int = 8) -> int:
    """Warps for a program working on ``tile`` elements: one per ``per``, 1 to ``cap``."""
    return max(1, min(cap, tile // per))


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (4 elsewhere: the CPU interpreter)."""
    if device.type != "cuda":
        return 4
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]
