"""Pseudo-labels (method.md §3): top-k MIL and the attention labels Q^A, the CCC prototypes and
marginal, on small hand-made inputs."""

import numpy as np
import pytest
import torch

from case_fast import ops
from case_fast.method.pseudo_labels import attention_pseudo_labels, ccc_marginal, cluster_fb_logits


def test_topk_mil_pool_and_attention_labels_by_hand():
    scores = torch.tensor([[[0.1, 0.9], [0.8, 0.2], [0.5, 0.7], [0.3, 0.1]]])   # (1, 4, 2)
    values = torch.arange(8.0).reshape(1, 4, 2).requires_grad_()
    pooled, idx = ops.topk_mil_pool(scores, values, 2)
    assert sorted(idx[0, :, 0].tolist()) == [1, 2] and sorted(idx[0, :, 1].tolist()) == [0, 2]
    torch.testing.assert_close(pooled, torch.tensor([[(2 + 4) / 2, (1 + 5) / 2]]))
    pooled.sum().backward()
    expect = torch.zeros(1, 4, 2)
    expect[0, [1, 2], 0] = 0.5
    expect[0, [0, 2], 1] = 0.5
    torch.testing.assert_close(values.grad, expect)
    # Q^A: union of the top-k indices of the ground-truth classes only
    qa = attention_pseudo_labels(idx, torch.tensor([[0.0, 1.0]]), 4)
    assert qa.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    qa = attention_pseudo_labels(idx, torch.tensor([[1.0, 1.0]]), 4)
    assert qa.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="k=5"):
        ops.topk_mil_pool(scores, values, 5)


def test_ccc_prototypes_and_beta_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], requires_grad=True)
    qs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    qa = torch.tensor([1.0, 0.0, 0.0])
    logits = cluster_fb_logits(e, qs, qa, temperature=10.0)
    c0 = np.array([2.5, 0.0]); c1 = np.array([1.5, 2.0])          # Q^S-weighted sums
    f = np.array([1.0, 0.0]); b = np.array([3.0, 2.0])             # [Q^A, 1-Q^A]-weighted sums
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    expect = 10 * np.array([[cos(c0, f), cos(c0, b)], [cos(c1, f), cos(c1, b)]])
    np.testing.assert_allclose(logits.detach().numpy(), expect, rtol=1e-6)
    logits.sum().backward()
    assert e.grad is not None and e.grad.abs().sum() > 0          # gradients kept through E
    beta = ccc_marginal(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert beta.tolist() == [0.5, 0.5]
    beta = ccc_marginal(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert beta.tolist() == [0.25, 0.75]
    assert ccc_marginal(qa, "uniform").tolist() == [0.5, 0.5]
