"""Number-for-number checks of the method (method.md §2-4) on small hand-made inputs and the
reference outputs of the released code."""
import math

import numpy as np
import pytest
import torch

from case_fast import ops
from case_fast.config.loading import load_config
from case_fast.method.losses import gce_loss, soft_cross_entropy, video_loss
from case_fast.method.model import CaseModel, count_macs, count_parameters
from case_fast.method.pseudo_labels import (attention_pseudo_labels, ccc_marginal,
                                            cluster_fb_logits, initial_cluster_labels,
                                            scc_pseudo_labels)
from case_fast.baselines.two_stream import selection_scores
from case_fast.method.step import case_losses

REF = __import__("pathlib").Path(__file__).parent / "reference"


# ---------------------------------------------------------------- Sinkhorn
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


# ---------------------------------------------------------------- prior
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


# ---------------------------------------------------------------- top-k MIL, losses
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


# ---------------------------------------------------------------- CCC
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


# ---------------------------------------------------------------- model size
def test_model_size_matches_paper():
    cfg = load_config("thumos14")
    m = CaseModel(cfg.model)
    assert count_parameters(m) == 2_137_130
    assert count_parameters(m.rgb) == 1_068_565
    assert count_macs(m, 1) == 2_135_040
    assert count_macs(m, 750) == 1_601_280_000


# ---------------------------------------------------------------- full step
def _tiny_cfg(**over):
    cfg = load_config("synthetic", [f"{k}={v}" for k, v in over.items()])
    cfg.model.stream_dim, cfg.data.feature_dim, cfg.model.hidden_dim = 8, 16, 12
    cfg.model.num_classes, cfg.model.num_clusters = 3, 4
    return cfg


def test_step_composes_the_parts():
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = CaseModel(cfg.model).double()
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    qc = initial_cluster_labels(4).double()
    out = model(x)
    res = case_losses(out, labels, qc, cfg, backend="reference")
    # recompute by hand from the parts
    k = 16 // 8
    sel = selection_scores(out)
    idx = torch.topk(sel, k, dim=1).indices
    vr = torch.gather(out["rgb"].cas, 1, idx).mean(1)
    vf = torch.gather(out["flow"].cas, 1, idx).mean(1)
    lv = 0.5 * video_loss(vf, labels) + 0.5 * video_loss(vr, labels)
    qa = attention_pseudo_labels(idx, labels, 16)
    la = gce_loss(out["rgb"].attention, qa) + gce_loss(out["flow"].attention, qa)
    fused = 0.5 * (out["rgb"].cluster_logits + out["flow"].cluster_logits)
    att = 0.5 * (out["rgb"].attention + out["flow"].attention)
    rank = torch.argsort(-att.reshape(-1)).double()
    prior = ops.rank_prior(rank, qc[:, 0], 10.0)
    qs = ops.sinkhorn(fused.reshape(-1, 4).detach(), prior)
    torch.testing.assert_close(res.q_s, qs)
    ls = sum(soft_cross_entropy(out[s].cluster_logits.reshape(-1, 4), qs) for s in ("rgb", "flow"))
    lg = {s: cluster_fb_logits(out[s].embedding.reshape(32, -1), qs, qa.reshape(-1)) for s in ("rgb", "flow")}
    m = qa.mean()
    qc_new = ops.sinkhorn((0.5 * lg["rgb"] + 0.5 * lg["flow"]).detach(), None, torch.stack([m, 1 - m]))
    torch.testing.assert_close(res.q_c.double(), qc_new, rtol=1e-6, atol=1e-7)
    lc = sum(soft_cross_entropy(lg[s], qc_new) for s in ("rgb", "flow"))
    total = lv + la + 1.0 * ls + 0.3 * lc
    torch.testing.assert_close(res.loss, total)
    res.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_ablation_switches():
    torch.manual_seed(0)
    x = torch.rand(2, 16, 16)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    base = _tiny_cfg(**{"train.use_scc": "false", "train.use_ccc": "false"})
    model = CaseModel(base.model)
    out = model(x)
    qc = initial_cluster_labels(4)
    r = case_losses(out, labels, qc, base)
    assert r.q_s is None and float(r.parts["scc"]) == 0 and torch.equal(r.q_c, qc)
    for lab in ("ot_hard", "hard", "soft"):
        cfg = _tiny_cfg(**{"train.scc_labels": lab})
        r = case_losses(out, labels, qc, cfg)
        torch.testing.assert_close(r.q_s.sum(1), torch.ones(32))
        if "hard" in lab:
            assert set(r.q_s.unique().tolist()) <= {0.0, 1.0}
    q_plain = scc_pseudo_labels(torch.randn(32, 4), torch.rand(32), qc, use_prior=False)
    torch.testing.assert_close(q_plain.sum(1), torch.ones(32))
