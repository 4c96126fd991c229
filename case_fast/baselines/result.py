"""What a baseline's training losses give the step (``step.case_losses``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch


@dataclass
class BaselineLosses:
    loss: torch.Tensor               # the baseline's total loss
    parts: Dict[str, torch.Tensor]   # its terms (logged), with gradient
    q_a: torch.Tensor                # (B, T) foreground pseudo-labels, the CASE head's input
    topk_idx: torch.Tensor           # (B, k, G) top-k MIL indices
