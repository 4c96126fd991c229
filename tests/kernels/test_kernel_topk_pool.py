"""Fused top-k MIL pooling kernel (kernels/topk_pool.py) vs the reference, under
TRITON_INTERPRET=1 on CPU (grids kept tiny: the interpreter costs ~0.1 s per program)."""
import pytest
import torch

from case_fast.kernels.topk_pool import topk_mil_pool_triton
from case_fast.ops import topk_mil_pool
from case_fast.ops.topk_pool import topk_mil_pool_reference


def _documented_rule(scores, k):
    """Top-k with ties broken by the lowest time index, NaN largest (kernel's documented rule)."""
    s = scores.double().nan_to_num(nan=float("inf"))
    nan = torch.isnan(scores.double())
    order = torch.sort(-s, dim=1, stable=True).indices  # ties: ascending index
    # NaN above +inf: put NaN entries first, keeping index order
    key = torch.where(nan, torch.zeros_like(s), torch.ones_like(s))
    order2 = torch.sort(torch.gather(key, 1, order), dim=1, stable=True).indices
    order = torch.gather(order, 1, order2)
    return order[:, :k]


def _check_against(scores, vals, k, idx_expected, single):
    out, idx = topk_mil_pool_triton(scores, vals[0] if single else vals, k)
    pooled = (out,) if single else out
    assert idx.dtype == torch.int64 and idx.shape == (scores.shape[0], k, scores.shape[2])
    # ascending time order within the k
    assert (idx[:, 1:] > idx[:, :-1]).all()
    torch.testing.assert_close(idx, idx_expected.sort(dim=1).values, rtol=0, atol=0)
    for v, p in zip(vals, pooled):
        ref = torch.gather(v.detach(), 1, idx_expected).mean(dim=1)
        assert p.dtype == v.dtype and p.shape == ref.shape
        torch.testing.assert_close(p, ref)
    return pooled, idx


SHAPES = [(2, 37, 3, 5), (1, 10, 2, 10), (2, 9, 2, 1), (1, 100, 2, 13), (1, 5, 1, 3)]


@pytest.mark.parametrize("b,t,g,k", SHAPES)
@pytest.mark.parametrize("streams", [1, 2])
def test_forward_backward_vs_reference(b, t, g, k, streams):
    gen = torch.Generator().manual_seed(b * 100 + t + k)
    scores = torch.rand(b, t, g, generator=gen)  # distinct: index sets must match
    vals = [torch.randn(b, t, g, generator=gen, requires_grad=True) for _ in range(streams)]
    single = streams == 1
    pooled, idx = topk_mil_pool_triton(scores, vals[0] if single else vals, k)
    pooled = (pooled,) if single else pooled
    rp, ridx = topk_mil_pool_reference(scores, vals[0] if single else vals, k)
    rp = (rp,) if single else rp
    assert torch.equal(idx, ridx.sort(dim=1).values)
    for p, r in zip(pooled, rp):
        torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-7)
    w = [torch.randn(b, g, generator=gen) for _ in range(streams)]
    gk = torch.autograd.grad(sum((p * wi).sum() for p, wi in zip(pooled, w)), vals)
    gr = torch.autograd.grad(sum((p * wi).sum() for p, wi in zip(rp, w)), vals)
    for a, r in zip(gk, gr):
        assert torch.equal(a, r)  # go / k at the selected positions, 0 elsewhere


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype):
    gen = torch.Generator().manual_seed(1)
    b, t, g, k = 1, 23, 2, 6
    scores = torch.randperm(b * t * g, generator=gen).reshape(b, t, g).to(dtype)  # no ties
    vals = [torch.randn(b, t, g, generator=gen).to(dtype) for _ in range(2)]
    _check_against(scores, vals, k, torch.topk(scores.double(), k, dim=1).indices, False)


@pytest.mark.parametrize("k", [1, 4, 11])
def test_ties_lowest_index_wins(k):
    gen = torch.Generator().manual_seed(k)
    b, t, g = 2, 11, 2
    scores = torch.randint(0, 3, (b, t, g), generator=gen).float()
    scores[0, 3, 0] = -0.0  # -0 == +0
    vals = [torch.randn(b, t, g, generator=gen), torch.randn(b, t, g, generator=gen)]
    _check_against(scores, vals, k, _documented_rule(scores, k), False)
    # all equal: the first k time steps
    same = torch.full((1, 7, 1), 0.25)
    _check_against(same, [torch.randn(1, 7, 1)], 3, torch.arange(3).view(1, 3, 1), True)


def test_nan_and_inf_scores():
    scores = torch.tensor([0.5, float("nan"), float("inf"), -float("inf"), float("nan"), 2.0,
                           -1e30, 3.0]).view(1, 8, 1)
    vals = [torch.arange(8.0).view(1, 8, 1)]
    for k in (1, 2, 3, 5, 8):
        _check_against(scores, vals, k, _documented_rule(scores, k), True)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    b, t, g, k = 1, 6, 2, 2
    scores = torch.rand(b, t, g, generator=gen, dtype=torch.float64)
    v1 = torch.randn(b, t, g, generator=gen, dtype=torch.float64, requires_grad=True)
    v2 = torch.randn(b, t, g, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(a, c):
        p, _ = topk_mil_pool_triton(scores, [a, c], k)
        return p

    assert torch.autograd.gradcheck(fn, (v1, v2), fast_mode=True)


def test_three_streams_and_dispatch():
    gen = torch.Generator().manual_seed(5)
    scores = torch.rand(1, 12, 2, generator=gen)
    vals = [torch.randn(1, 12, 2, generator=gen) for _ in range(3)]
    _check_against(scores, vals, 4, torch.topk(scores, 4, dim=1).indices, False)
    p, idx = topk_mil_pool(scores, vals[:2], 4, backend="fast")
    rp, ridx = topk_mil_pool_reference(scores, vals[:2], 4)
    assert torch.equal(idx, ridx.sort(1).values)
    torch.testing.assert_close(p, rp)
    # auto on CPU: the reference itself (torch.topk order)
    p, idx = topk_mil_pool(scores, vals[0], 4)
    assert torch.equal(idx, ridx)


def test_torch_compile_fullgraph_with_backward():
    gen = torch.Generator().manual_seed(2)
    scores = torch.rand(1, 9, 2, generator=gen)
    v1 = torch.randn(1, 9, 2, generator=gen, requires_grad=True)
    v2 = torch.randn(1, 9, 2, generator=gen, requires_grad=True)

    def fn(s, a, c):
        (p1, p2), idx = topk_mil_pool_triton(s * 1.0, [a * 2.0, c], 3)
        return p1.sum() + (p2 * p2).sum(), idx

    torch._dynamo.reset()
    cf = torch.compile(fn, backend="aot_eager", fullgraph=True)
    loss, idx = cf(scores, v1, v2)
    ga = torch.autograd.grad(loss, (v1, v2))
    loss_e, idx_e = fn(scores, v1, v2)
    ge = torch.autograd.grad(loss_e, (v1, v2))
    assert torch.equal(idx, idx_e)
    torch.testing.assert_close(loss, loss_e)
    for a, e in zip(ga, ge):
        torch.testing.assert_close(a, e)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("b,t,g,k", [(16, 750, 20, 93), (16, 750, 20, 375), (3, 1000, 5, 1),
                                     (2, 4097, 3, 4097)])
def test_cuda_paper_shape(b, t, g, k):
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(b, t, g, generator=gen).to(dev)
    vals = [torch.randn(b, t, g, generator=gen).to(dev).requires_grad_() for _ in range(2)]
    (p1, p2), idx = topk_mil_pool_triton(scores, vals, k)
    (r1, r2), ridx = topk_mil_pool_reference(scores, vals, k)
    assert torch.equal(idx, ridx.sort(dim=1).values)
    torch.testing.assert_close(p1, r1)
    torch.testing.assert_close(p2, r2)
    gk = torch.autograd.grad(p1.sum() + 2 * p2.sum(), vals)
    gr = torch.autograd.grad(r1.sum() + 2 * r2.sum(), vals)
    for a, r in zip(gk, gr):
        assert torch.equal(a, r)
    ties = torch.randint(0, 4, (b, t, g), generator=gen).float().to(dev)
    _, idx = topk_mil_pool_triton(ties, vals[0].detach(), k)
    assert torch.equal(idx, _documented_rule(ties.cpu(), k).sort(1).values.to(dev))
