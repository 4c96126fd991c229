"""Sinkhorn-Knopp and the SCC rank prior (method.md §3.4, §4): the released code's outputs, known
solutions and marginals, overflow, the rank modes by hand."""
import math

import numpy as np
import pytest
import torch

from case_fast import ops

REF = __import__("pathlib").Path(__file__).resolve().parents[1] / "reference"


def test_sinkhorn_reference_outputs():
    d = np.load(REF / "sinkhorn_small.npz")
    logits = torch.tensor(d["d1/logits"])
    rank = ops.prior_rank(torch.tensor(d["d1/att"]), "faithful")
    fg = torch.tensor(d["d1/cls_gt"])[:, 0]
    prior = ops.rank_prior(rank, fg, float(d["d1/std"]))
    np.testing.assert_allclose(prior.numpy(), d["d1/T"], rtol=1e-5, atol=1e-9)
    out = ops.sinkhorn(logits, prior, backend="reference")
    np.testing.assert_allclose(out.numpy(), d["d1/out"], rtol=2e-6, atol=2e-7)
    out64 = ops.sinkhorn_rank_prior(logits.double(), rank.double(), fg.double(), 10.0, backend="reference")
    np.testing.assert_allclose(out64.numpy(), d["d1/out_f64"], rtol=1e-9, atol=1e-11)
    for case in ("c1", "c2"):
        q = ops.sinkhorn(torch.tensor(d[f"{case}/logits"]).double(), None,
                         torch.tensor(d[f"{case}/beta"]).double(), backend="reference")
        np.testing.assert_allclose(q.numpy(), d[f"{case}/out_f64"], rtol=1e-9, atol=1e-12)
        q32 = ops.sinkhorn(torch.tensor(d[f"{case}/logits"]), None, torch.tensor(d[f"{case}/beta"]),
                           backend="reference")
        np.testing.assert_allclose(q32.numpy(), d[f"{case}/out"], rtol=1e-5, atol=1e-6)
    # c1: three iterations leave the column sums far from beta * K (the method's behaviour)
    q = ops.sinkhorn(torch.tensor(d["c1/logits"]).double(), None, torch.tensor(d["c1/beta"]).double())
    np.testing.assert_allclose(q.sum(0).numpy(), [7.10, 8.90], atol=0.01)


def test_sinkhorn_known_solution_and_marginals():
    # Equal logits: every row of the solution is beta (normalised), whatever the iterations.
    beta = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    q = ops.sinkhorn(torch.zeros(7, 3, dtype=torch.float64), None, beta, n_iters=3)
    torch.testing.assert_close(q, beta.expand(7, 3))
    # 2x2 by hand, one iteration, uniform beta: G = exp(2L) = [[e^2, 1], [1, 1]].
    L = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    e2 = math.exp(2.0)
    col = np.array([[e2 / (e2 + 1), 0.5], [1 / (e2 + 1), 0.5]]) * 0.5
    expect = col / col.sum(1, keepdims=True)
    np.testing.assert_allclose(ops.sinkhorn(L, n_iters=1).numpy(), expect, rtol=1e-12)
    # Many iterations: rows sum to 1 and column sums converge to M * beta.
    torch.manual_seed(0)
    L = torch.randn(40, 4, dtype=torch.float64)
    beta = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    q = ops.sinkhorn(L, None, beta, n_iters=500)
    torch.testing.assert_close(q.sum(1), torch.ones(40, dtype=torch.float64))
    torch.testing.assert_close(q.sum(0), 40 * beta, rtol=1e-6, atol=1e-6)


def test_sinkhorn_cannot_overflow_and_handles_empty():
    L = torch.tensor([[200.0, -200.0], [150.0, 0.0], [0.0, 90.0]])
    q = ops.sinkhorn(L, backend="reference")
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(3))
    assert ops.sinkhorn(torch.zeros(0, 4)).shape == (0, 4)


def test_prior_rank_modes_and_prior_by_hand():
    a = torch.tensor([0.2, 0.9, 0.5, 0.1])
    # faithful: argsort(-a) used as the rank vector; paper: the true ranks
    assert ops.prior_rank(a, "faithful").tolist() == [1, 2, 0, 3]
    assert ops.prior_rank(a, "paper").tolist() == [2, 0, 1, 3]
    rank = torch.tensor([2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    fg = torch.tensor([0.75, 0.25], dtype=torch.float64)
    sigma = 0.5
    n = 4
    raw = np.empty((4, 2))
    for i in range(4):
        for k in range(2):
            dd = abs((rank[i].item() + 1) / n - (1 - fg[k].item()))
            raw[i, k] = math.exp(-dd * dd / (2 * sigma * sigma))
    np.testing.assert_allclose(ops.rank_prior(rank, fg, sigma).numpy(), raw / raw.sum(), rtol=1e-12)
    with pytest.raises(ValueError):
        ops.prior_rank(a, "other")
