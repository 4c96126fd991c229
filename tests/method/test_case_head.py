"""The CASE head on its own (case_head.py): plugged into a small foreign model exactly as the
README shows, the module form against CASE's own step (the same SCC, CCC, Q^S, Q^C and prototype
gradients, bit for bit), and the head on streams of any names and number."""
import pytest
import torch

from case_fast.method.case_head import (CaseHead, CaseSettings, cluster_logits, foreground_scores,
                                        head_losses)
from case_fast.config.loading import load_config
from case_fast.method.model import CaseModel
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.training.step import case_losses


# ---- the README's example, verbatim from "Plugging the CASE head into your model" ----------------
class Foreign(torch.nn.Module):              # any WTAL model: per stream an embedding and an attention
    def __init__(self, d=64, h=32, g=5):
        super().__init__()
        self.emb, self.att, self.cls = torch.nn.Linear(d, h), torch.nn.Linear(h, 1), torch.nn.Linear(h, g)
        self.head = CaseHead({"main": h}, num_clusters=8)   # K prototype rows per stream

    def forward(self, x):                                    # x (B, T, d)
        e = torch.relu(self.emb(x))                          # E (B, T, H), with gradient
        return self.cls(e), torch.sigmoid(self.att(e)).squeeze(-1), e


def my_losses(cas, att, y, k=4):             # the host's own MIL loss and its Q^A (B, T)
    top = cas.topk(k, dim=1).values.mean(1)
    q_a = torch.zeros_like(att).scatter_(1, (cas * y[:, None]).amax(-1).topk(k, dim=1).indices, 1.0)
    return torch.nn.functional.binary_cross_entropy_with_logits(top, y), q_a
# ---------------------------------------------------------------------------------------------------


def test_readme_example_trains_a_foreign_model():
    torch.manual_seed(0)
    model = Foreign()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    q_c = model.head.initial_q_c()
    x, y = torch.rand(6, 20, 64), (torch.rand(6, 5) < 0.4).float()
    proto0 = model.head.prototypes["main"].detach().clone()
    emb_w0 = model.emb.weight.detach().clone()
    history = []
    for _ in range(5):
        cas, att, emb = model(x)
        loss, q_a = my_losses(cas, att, y)
        case = model.head({"main": emb}, {"main": att}, q_a, q_c)
        (loss + case.loss).backward()
        grad_emb_from_ccc = model.emb.weight.grad is not None
        opt.step()
        opt.zero_grad()
        q_c = case.q_c
        history.append((case.scc.item(), case.ccc.item()))
    model.eval()
    with torch.no_grad():
        _, att, emb = model(x)
        p_t = model.head.foreground({"main": emb}, q_c)["main"]
    assert grad_emb_from_ccc
    assert all(torch.isfinite(torch.tensor(h)).all() for h in history)
    assert history[0][1] > 0
    assert q_c.shape == (8, 2) and torch.allclose(q_c.sum(1), torch.ones(8), atol=1e-5)
    assert not torch.equal(q_c, initial_cluster_labels(8))
    assert p_t.shape == (6, 20) and bool(((p_t >= 0) & (p_t <= 1)).all())
    assert not torch.equal(model.head.prototypes["main"], proto0)
    assert not torch.equal(model.emb.weight, emb_w0)
    # the prototype rows were renormalised in place before the last training forward, then stepped
    assert torch.allclose(model.head.prototypes["main"].norm(dim=1), torch.ones(8), atol=1e-2)


def test_module_form_equals_cases_own_step_bit_for_bit():
    """CaseHead on CASE's embeddings, attentions and Q^A, with CASE's prototypes: the same SCC,
    CCC, Q^S, Q^C and prototype gradients as the step of the CASE network (which keeps its
    prototypes in its streams and uses the functional form)."""
    cfg = load_config("synthetic", ["model.stream_dim=16", "data.feature_dim=32", "model.hidden_dim=24",
                                    "model.num_clusters=6", "data.num_segments=32",
                                    "train.prior_sigma=0.3"])
    torch.manual_seed(3)
    model = CaseModel(cfg.model)
    head = CaseHead({"rgb": 24, "flow": 24}, settings=CaseSettings.from_config(cfg))
    with torch.no_grad():
        for s in ("rgb", "flow"):
            head.prototypes[s].copy_(getattr(model, s).prototypes)
    x, y = torch.rand(3, 32, 32), (torch.rand(3, 20) < 0.2).float()
    y[:, 0] = 1
    q_c = torch.softmax(torch.randn(6, 2), dim=1)
    out = model(x)
    res = case_losses(out, y, q_c, cfg)
    emb = {s: out[s].embedding for s in ("rgb", "flow")}
    h = head(emb, {s: out[s].attention for s in ("rgb", "flow")}, res.q_a, q_c)
    assert torch.equal(h.scc, res.parts["scc"]) and torch.equal(h.ccc, res.parts["ccc"])
    assert torch.equal(h.q_s, res.q_s) and torch.equal(h.q_c, res.q_c)
    ours = torch.autograd.grad(h.loss, [head.prototypes["rgb"], head.prototypes["flow"]],
                               retain_graph=True)
    theirs = torch.autograd.grad(res.loss, [model.rgb.prototypes, model.flow.prototypes])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.eval()
    head.eval()
    with torch.no_grad():
        out = model(x)
        p_t = head.foreground({s: out[s].embedding for s in ("rgb", "flow")}, res.q_c)
        want = foreground_scores({s: out[s].cluster_logits for s in ("rgb", "flow")}, res.q_c)
    for s in ("rgb", "flow"):
        assert torch.equal(p_t[s], want[s])


@pytest.mark.parametrize("streams", [("a",), ("x", "y", "z")])
def test_any_streams_functional_form(streams):
    torch.manual_seed(1)
    b, t, k = 2, 10, 5
    protos = {s: torch.nn.Parameter(torch.randn(k, 8 + i)) for i, s in enumerate(streams)}
    emb = {s: torch.rand(b, t, 8 + i, requires_grad=True) for i, s in enumerate(streams)}
    att = {s: torch.rand(b, t) for s in streams}
    q_a = (torch.rand(b, t) < 0.3).float()
    logits = {s: cluster_logits(emb[s], protos[s]) for s in streams}
    for s in streams:   # training: the parameter itself now holds unit rows
        torch.testing.assert_close(protos[s].norm(dim=1), torch.ones(k))
    h = head_losses(logits, emb, att, q_a, initial_cluster_labels(k))
    h.loss.backward()
    assert all(emb[s].grad is not None and protos[s].grad is not None for s in streams)
    assert h.q_s.shape == (b * t, k) and h.q_c.shape == (k, 2)
    with pytest.raises(ValueError, match="streams"):
        head_losses(logits, {streams[0]: emb[streams[0]], "other": emb[streams[0]]}, att, q_a,
                    initial_cluster_labels(k))


def test_streams_as_tensors_and_sequences():
    """A one-stream head takes bare tensors and (B, T, 1) attentions; a sequence is taken in the
    head's stream order; Q^C defaults to the initial one."""
    torch.manual_seed(2)
    head = CaseHead({"x": 8}, num_clusters=4)
    emb, att = torch.rand(2, 6, 8, requires_grad=True), torch.rand(2, 6, 1)
    q_a = (torch.rand(2, 6) < 0.5).float()
    a = head(emb, att, q_a)
    b = head({"x": emb}, {"x": att.squeeze(-1)}, q_a, initial_cluster_labels(4))
    # the second call renormalises the already unit rows again: equal up to rounding
    for u, v in ((a.scc, b.scc), (a.ccc, b.ccc), (a.q_c, b.q_c)):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-6)
    two = CaseHead(("rgb", "flow"), hidden=8, num_clusters=4)
    out = two([emb, emb], [att, att], q_a)
    assert out.q_s.shape == (12, 4)
    with pytest.raises(ValueError, match="streams"):
        two([emb], [att], q_a)
    with pytest.raises(ValueError, match="lack the streams"):
        two({"rgb": emb}, {"rgb": att, "flow": att}, q_a)
