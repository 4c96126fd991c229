"""The losses (method.md §3): video MIL loss, generalized BCE, soft cross-entropy, by hand."""
import math

import pytest
import torch

from case_fast.method.losses import gce_loss, soft_cross_entropy, video_loss


def test_losses_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    z = math.log(math.e + math.e ** 2 + 1)
    expect = -0.5 * ((1 - z) + (2 - z)) * (2 / (2 + 1e-10))
    assert video_loss(logits, labels).item() == pytest.approx(expect, rel=1e-6)
    p = torch.tensor([[0.9, 0.2, 0.6]])
    qa = torch.tensor([[1.0, 0.0, 1.0]])
    q = 0.7
    pos = ((1 - (0.9 + 1e-7) ** q) / q + (1 - (0.6 + 1e-7) ** q) / q) / (2 + 1e-7)
    neg = ((1 - (1 - 0.2 + 1e-7) ** q) / q) / (1 + 1e-7)
    assert gce_loss(p, qa, q).item() == pytest.approx(pos + neg, rel=1e-6)
    t = torch.tensor([[0.25, 0.75]])
    lg = torch.tensor([[0.0, 1.0]])
    ls = torch.log_softmax(lg, 1)
    assert soft_cross_entropy(lg, t).item() == pytest.approx(-(0.25 * ls[0, 0] + 0.75 * ls[0, 1]).item())
