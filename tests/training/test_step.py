"""One training step (method.md §3): the step composes the parts; the ablation switches."""

import torch

from case_fast import ops
from case_fast.config.loading import load_config
from case_fast.method.losses import gce_loss, soft_cross_entropy, video_loss
from case_fast.method.model import CaseModel
from case_fast.method.pseudo_labels import (attention_pseudo_labels, cluster_fb_logits,
                                            initial_cluster_labels, scc_pseudo_labels)
from case_fast.baselines.two_stream import selection_scores
from case_fast.training.step import case_losses


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
