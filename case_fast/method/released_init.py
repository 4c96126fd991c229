"""The initial weights of a run, drawn from its seed as the released code draws them (method.md §8).

The released network creates its layers in this order, and PyTorch's default initialisation draws
each one's weight, then its bias, from torch's global generator right after ``seed(s)``:
classification branch RGB (D→H, then H→G), the same for flow, attention-branch embedding RGB (D→H),
the same for flow, attention layer RGB (H→1), attention layer flow, then the prototypes (a bias-free
Linear H→K) of flow first, then RGB. :func:`draw_initial_weights` replays that order explicitly, by
state-dict name, whatever order our modules are created in. The draws are made into CPU tensors
and copied into the parameters, so a network on a GPU starts from the same weights."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

# (weight, bias or None) state-dict names, in the released draw order
CASE_ORDER: Tuple[Tuple[str, Optional[str]], ...] = (
    ("rgb.cls_conv1.weight", "rgb.cls_conv1.bias"), ("rgb.cls_conv2.weight", "rgb.cls_conv2.bias"),
    ("flow.cls_conv1.weight", "flow.cls_conv1.bias"), ("flow.cls_conv2.weight", "flow.cls_conv2.bias"),
    ("rgb.att_conv1.weight", "rgb.att_conv1.bias"), ("flow.att_conv1.weight", "flow.att_conv1.bias"),
    ("rgb.att_conv2.weight", "rgb.att_conv2.bias"), ("flow.att_conv2.weight", "flow.att_conv2.bias"),
    ("flow.prototypes", None), ("rgb.prototypes", None))


@torch.no_grad()
def draw_initial_weights(model: nn.Module, seed: int,
                         order: Sequence[Tuple[str, Optional[str]]] = CASE_ORDER) -> None:
    """Overwrite every parameter of ``model`` with PyTorch's default initialisation of a Conv1d /
    Linear layer (weight: Kaiming uniform with a = sqrt(5); bias: U(±1/sqrt(fan_in))), drawn from a
    generator seeded with ``seed`` in ``order``."""
    params = dict(model.named_parameters())
    named = [n for pair in order for n in pair if n is not None]
    if sorted(named) != sorted(params):
        missing, extra = sorted(set(params) - set(named)), sorted(set(named) - set(params))
        raise ValueError(f"the initialisation order does not cover this network's parameters "
                         f"(not drawn: {missing}; not in the network: {extra})")
    gen = torch.Generator().manual_seed(int(seed))
    for weight_name, bias_name in order:
        weight = params[weight_name]
        w = torch.empty(weight.shape, dtype=weight.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
        weight.copy_(w)
        if bias_name is not None:
            bias = params[bias_name]
            bound = 1.0 / math.sqrt(w[0].numel()) if w[0].numel() > 0 else 0.0
            b = torch.empty(bias.shape, dtype=bias.dtype)
            nn.init.uniform_(b, -bound, bound, generator=gen)
            bias.copy_(b)
