"""Fused Sinkhorn kernel (kernels/sinkhorn.py) vs the float64 reference, under TRITON_INTERPRET=1
on CPU (and on the GPU when one is present: tests marked ``cuda``)."""
import pathlib

import numpy as np
import pytest
import torch

from case_fast.kernels.sinkhorn import _sinkhorn_impl, sinkhorn_triton
from case_fast.ops import sinkhorn, sinkhorn_rank_prior
from case_fast.ops.sinkhorn_knopp import (prior_rank, sinkhorn_rank_prior_reference,
                                          sinkhorn_reference)

NPZ = pathlib.Path(__file__).resolve().parents[1] / "reference" / "sinkhorn_small.npz"
RTOL = 1e-5


def _close(out, ref, rtol=RTOL, atol=1e-12, equal_nan=False):
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double().cpu(), ref.double().cpu(), rtol=rtol, atol=atol,
                               equal_nan=equal_nan)


def _inputs(m, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(m, c, generator=g) * 20 - 10  # cosine x 10
    prior = torch.rand(m, c, generator=g) + 0.05
    beta = torch.rand(c, generator=g) + 0.1
    beta = beta / beta.sum()
    att = torch.rand(m, generator=g)
    fg = torch.rand(c, generator=g)
    return logits, prior, beta, att, fg


# (mode, step_programs): single = 1 program in registers; step = multi-launch with several
# programs (partials reduced across programs).
MODES = [("single", None), ("step", 3)]
SHAPES = [(37, 5), (300, 3), (16, 2), (130, 16), (70, 64)]


@pytest.mark.parametrize("m,c", SHAPES)
@pytest.mark.parametrize("mode,progs", MODES)
def test_prior_tensor_and_beta(m, c, mode, progs):
    if mode == "single" and m * c > 8192:
        pytest.skip("too big for one program")
    logits, prior, beta, _, _ = _inputs(m, c, m * 7 + c)
    out = _sinkhorn_impl(logits, prior, beta, None, None, 3, 0.05, 10.0, 10.0, mode, progs)
    ref = sinkhorn_reference(logits.double(), prior.double(), beta.double(), 3)
    _close(out, ref)
    torch.testing.assert_close(out.sum(1), torch.ones(m), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_iters", [0, 1, 3])
@pytest.mark.parametrize("mode,progs", MODES)
@pytest.mark.parametrize("with_prior", [False, True])
def test_n_iters(n_iters, mode, progs, with_prior):
    m, c = 45, 3
    logits, prior, _, _, _ = _inputs(m, c, 11 + n_iters)
    p = prior if with_prior else None
    out = _sinkhorn_impl(logits, p, None, None, None, n_iters, 0.05, 10.0, 10.0, mode, progs)
    ref = sinkhorn_reference(logits.double(), None if p is None else p.double(), None, n_iters)
    _close(out, ref)


@pytest.mark.parametrize("m,c", [(37, 5), (300, 3), (130, 16), (70, 64)])
@pytest.mark.parametrize("rank_mode", ["faithful", "paper"])
@pytest.mark.parametrize("mode,progs", MODES)
def test_fused_rank_prior(m, c, rank_mode, mode, progs):
    logits, _, _, att, fg = _inputs(m, c, m + c)
    r = prior_rank(att, rank_mode)
    out = _sinkhorn_impl(logits, None, None, r, fg, 3, 0.05, 10.0, 10.0, mode, progs)
    ref = sinkhorn_rank_prior_reference(logits.double(), r.double(), fg.double(), 10.0)
    _close(out, ref)


@pytest.mark.parametrize("n_iters", [0, 1, 3])
@pytest.mark.parametrize("sigma", [10.0, 0.05])
def test_rank_prior_normalisation_cancels(n_iters, sigma):
    """The kernel never normalises the prior: it must still equal the reference, which does
    (incl. n_iters = 0, G / sum(G) * M, and a sharp prior, sigma = 0.05)."""
    m, c = 40, 4
    logits, _, beta, att, fg = _inputs(m, c, 5)
    r = prior_rank(att, "paper")
    for mode, progs in MODES:
        out = _sinkhorn_impl(logits, None, beta, r, fg, n_iters, 0.05, 10.0, sigma, mode, progs)
        ref = sinkhorn_rank_prior_reference(logits.double(), r.double(), fg.double(), sigma,
                                            beta.double(), n_iters)
        _close(out, ref)


@pytest.mark.parametrize("mode,progs", MODES)
def test_extreme_logits(mode, progs):
    g = torch.Generator().manual_seed(3)
    m, c = 33, 3
    sign = torch.randint(0, 2, (m, c), generator=g).float() * 2 - 1
    big = sign * 1e4
    big[:, 0] = 1e4  # keep every row finite (a row of only -1e4 is 0/0 = NaN in both)
    for n_iters in (0, 1, 3):
        out = _sinkhorn_impl(big, None, None, None, None, n_iters, 0.05, 10.0, 10.0, mode, progs)
        ref = sinkhorn_reference(big.double(), None, None, n_iters)
        assert torch.isfinite(out).all()
        _close(out, ref)
    # rows that underflow completely: NaN exactly where the reference has NaN
    out = _sinkhorn_impl(sign * 1e4, None, None, None, None, 1, 0.05, 10.0, 10.0, mode, progs)
    ref = sinkhorn_reference((sign * 1e4).double(), None, None, 1)
    _close(out, ref, equal_nan=True)
    # all logits equal: uniform
    eq = torch.full((m, c), 7.5)
    out = _sinkhorn_impl(eq, None, None, None, None, 3, 0.05, 10.0, 10.0, mode, progs)
    torch.testing.assert_close(out, torch.full((m, c), 1.0 / c), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    m, c = 50, 16
    logits, prior, beta, att, fg = _inputs(m, c, 21)
    lh, ph = logits.to(dtype), prior.to(dtype)
    for mode, progs in MODES:
        out = _sinkhorn_impl(lh, ph, beta, None, None, 3, 0.05, 10.0, 10.0, mode, progs)
        ref = sinkhorn_reference(lh.double(), ph.double(), beta.double(), 3)
        _close(out, ref)


def test_float64_goes_to_the_reference():
    """The kernel computes in float32: it refuses float64, backend='fast' says so, 'auto' takes
    the float64 reference."""
    logits, prior, _, att, fg = _inputs(20, 3, 1)
    with pytest.raises(ValueError, match="float64"):
        sinkhorn_triton(logits.double(), prior.double())
    with pytest.raises(RuntimeError, match="float64"):
        sinkhorn(logits.double(), prior.double(), backend="fast")
    with pytest.raises(RuntimeError, match="float64"):
        sinkhorn_rank_prior(logits, prior_rank(att.double()), fg, backend="fast")
    out = sinkhorn(logits.double(), prior.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, sinkhorn_reference(logits.double(), prior.double()))


def test_deterministic_and_strided():
    m, c = 300, 16
    logits, prior, beta, att, fg = _inputs(m, c, 9)
    r = prior_rank(att, "faithful")
    a = _sinkhorn_impl(logits, None, beta, r, fg, 3, 0.05, 10.0, 10.0, "step", 3)
    b = _sinkhorn_impl(logits, None, beta, r, fg, 3, 0.05, 10.0, 10.0, "step", 3)
    assert torch.equal(a, b)
    lt = logits.t().contiguous().t()  # column-major view
    pt = prior.t().contiguous().t()
    for mode, progs in MODES:
        out = _sinkhorn_impl(lt, pt, None, None, None, 3, 0.05, 10.0, 10.0, mode, progs)
        _close(out, sinkhorn_reference(logits.double(), prior.double()))


def test_reference_npz():
    z = np.load(NPZ)
    logits = torch.from_numpy(z["d1/logits"])
    r = prior_rank(torch.from_numpy(z["d1/att"]), "faithful")
    fg = torch.from_numpy(z["d1/cls_gt"])[:, 0]
    for mode, progs in MODES:
        out = _sinkhorn_impl(logits, None, None, r, fg, 3, 0.05, 10.0, 10.0, mode, progs)
        _close(out, torch.from_numpy(z["d1/out_f64"]))
        _close(out, torch.from_numpy(z["d1/out"]).double(), rtol=1e-4)
        out_t = _sinkhorn_impl(logits, torch.from_numpy(z["d1/T"]), None, None, None, 3, 0.05,
                               10.0, 10.0, mode, progs)
        _close(out_t, torch.from_numpy(z["d1/out_f64"]))
        for case in ("c1", "c2"):
            lg = torch.from_numpy(z[f"{case}/logits"])
            beta = torch.from_numpy(z[f"{case}/beta"])
            out = _sinkhorn_impl(lg, None, beta, None, None, 3, 0.05, 10.0, 10.0, mode, progs)
            _close(out, torch.from_numpy(z[f"{case}/out_f64"]))
            _close(out, torch.from_numpy(z[f"{case}/out"]).double(), rtol=1e-4)


def test_public_dispatch():
    logits, prior, beta, att, fg = _inputs(37, 5, 2)
    r = prior_rank(att, "paper")
    out = sinkhorn(logits, prior, beta, backend="fast")
    _close(out, sinkhorn_reference(logits.double(), prior.double(), beta.double()))
    out = sinkhorn_rank_prior(logits, r, fg, backend="fast")
    _close(out, sinkhorn_rank_prior_reference(logits.double(), r.double(), fg.double()))
    # auto on CPU: the reference (auto never picks the interpreter)
    torch.testing.assert_close(sinkhorn(logits, prior), sinkhorn_reference(logits, prior))
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn(logits, n_iters=-1, backend="fast")
    with pytest.raises(ValueError, match="col_marginal"):
        sinkhorn(logits, col_marginal=beta[:3], backend="fast")


def test_torch_compile_fullgraph():
    logits, _, beta, att, fg = _inputs(16, 2, 4)
    r = prior_rank(att, "paper")

    def fn(x, r, fg, beta):
        q = sinkhorn_triton(x * 2.0, col_marginal=beta)
        q2 = sinkhorn_triton(x, rank=r, fg_prob=fg)
        return q + q2

    torch._dynamo.reset()
    cf = torch.compile(fn, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(cf(logits, r, fg, beta), fn(logits, r, fg, beta))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("m,c,kind", [(12000, 16, "rank"), (12000, 64, "prior"), (16, 2, "beta"),
                                      (20000, 256, "prior"), (1000, 7, "none")])
def test_cuda_vs_float64(m, c, kind):
    logits, prior, beta, att, fg = _inputs(m, c, 1)
    dev = torch.device("cuda")
    logits = logits.to(dev)
    args = dict(prior=None, col_marginal=None, rank=None, fg_prob=None)
    if kind == "rank":
        args.update(rank=prior_rank(att, "paper").to(dev), fg_prob=fg.to(dev))
        ref = sinkhorn_rank_prior_reference(logits.double(), args["rank"].double(),
                                            args["fg_prob"].double())
    elif kind == "prior":
        args.update(prior=prior.to(dev))
        ref = sinkhorn_reference(logits.double(), args["prior"].double())
    elif kind == "beta":
        args.update(col_marginal=beta.to(dev))
        ref = sinkhorn_reference(logits.double(), None, args["col_marginal"].double())
    else:
        ref = sinkhorn_reference(logits.double())
    for mode in (None, "step") if m * 16 > 8192 else (None, "single", "step"):
        out = _sinkhorn_impl(logits, args["prior"], args["col_marginal"], args["rank"],
                             args["fg_prob"], 3, 0.05, 10.0, 10.0, mode)
        _close(out, ref)
        again = _sinkhorn_impl(logits, args["prior"], args["col_marginal"], args["rank"],
                               args["fg_prob"], 3, 0.05, 10.0, 10.0, mode)
        assert torch.equal(out, again)
