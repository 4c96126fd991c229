"""Triton kernels vs the eager PyTorch references (pytest-benchmark; needs a CUDA device).

    pytest bench/bench_kernels.py --benchmark-only

Each benchmarked call ends with torch.cuda.synchronize(), so times are end-to-end (launch
overhead + GPU). Reference and kernel share a ``benchmark.group``; names containing
'reference' are the baselines (bench/gpu_check.sh pairs them by group).
"""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _sync(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def _sinkhorn_inputs(m, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    dev = torch.device("cuda")
    logits = (torch.rand(m, c, generator=g) * 20 - 10).to(dev)
    att = torch.rand(m, generator=g).to(dev)
    fg = torch.rand(c, generator=g).to(dev)
    prior = (torch.rand(m, c, generator=g) + 0.05).to(dev)
    beta = torch.rand(c, generator=g) + 0.1
    return logits, att, fg, prior, (beta / beta.sum()).to(dev)


SINKHORN_CASES = ["12000x16_rank_prior", "12000x64_prior", "16x2_beta", "12000x64_rank_prior"]


def _sinkhorn_fns(case):
    from case_fast.kernels.sinkhorn import sinkhorn_triton
    from case_fast.ops.sinkhorn_knopp import (prior_rank, sinkhorn_rank_prior_reference,
                                              sinkhorn_reference)
    m, c = (int(x) for x in case.split("_")[0].split("x"))
    logits, att, fg, prior, beta = _sinkhorn_inputs(m, c)
    if "rank_prior" in case:
        r = prior_rank(att, "faithful")
        ref = lambda: sinkhorn_rank_prior_reference(logits, r, fg, 10.0)  # noqa: E731
        fast = lambda: sinkhorn_triton(logits, rank=r, fg_prob=fg)  # noqa: E731
    elif "beta" in case:
        ref = lambda: sinkhorn_reference(logits, None, beta)  # noqa: E731
        fast = lambda: sinkhorn_triton(logits, col_marginal=beta)  # noqa: E731
    else:
        ref = lambda: sinkhorn_reference(logits, prior)  # noqa: E731
        fast = lambda: sinkhorn_triton(logits, prior)  # noqa: E731
    return ref, fast


@pytest.mark.parametrize("case", SINKHORN_CASES)
@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_bench_sinkhorn(benchmark, case, impl):
    benchmark.group = f"sinkhorn {case}"
    ref, fast = _sinkhorn_fns(case)
    fn = ref if impl == "reference" else fast
    if impl != "reference":  # correctness guard before timing
        torch.testing.assert_close(fast().double(), ref().double(), rtol=1e-4, atol=1e-7)
    fn()
    torch.cuda.synchronize()
    benchmark(_sync(fn))


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_bench_topk_pool_fwd_bwd(benchmark, impl):
    from case_fast.kernels.topk_pool import topk_mil_pool_triton
    from case_fast.ops.topk_pool import topk_mil_pool_reference
    b, t, g, k = 16, 750, 20, 93
    gen = torch.Generator().manual_seed(0)
    dev = torch.device("cuda")
    scores = torch.rand(b, t, g, generator=gen).to(dev)
    v1 = torch.randn(b, t, g, generator=gen).to(dev).requires_grad_()
    v2 = torch.randn(b, t, g, generator=gen).to(dev).requires_grad_()
    pool = topk_mil_pool_reference if impl == "reference" else topk_mil_pool_triton

    def step():
        (p1, p2), idx = pool(scores, [v1, v2], k)
        (p1.sum() + p2.sum()).backward()
        return idx

    benchmark.group = "topk_mil_pool fwd+bwd 16x750x20 k=93 two streams"
    step()
    torch.cuda.synchronize()
    benchmark(_sync(step))
