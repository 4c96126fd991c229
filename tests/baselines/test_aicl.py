"""AICL against its release (tests/reference/aicl_steps.npz, aicl_trajectory.npz; shared/AICL.md):
the initial weights drawn from seed 1, three whole steps with every intermediate and loss term, the
gradients and parameters after each step, a 50-step trajectory, and one 750-snippet test video
through the package's inference (scores, classes and every proposal). Steps go through
``step.case_losses`` / ``step.train_step`` and the test video through ``inference.forward_videos``
and ``localize_video``: the trainer's own paths.

The float32 convolutions are not bit-reproducible across machines: on the CPU of these tests the
CAS of the test video is up to 3.3e-6 from the file's with oneDNN (PyTorch's default CPU
convolution) and 9.5e-7 without it, while the file's own CAS is 1.2e-6 from a float64 convolution.
So the steps run with oneDNN off (every loss term then within 1e-6 relative; with it the contrast
terms and L_M, values near 0.5 and 0.002, are up to 1.3e-6 off), and the test video compares every
discrete output exactly (top-k, classes, number, order, classes and boundaries of the proposals) and
the real-valued ones (S, video scores, proposal scores) to 1e-6."""
import json
import pathlib

import numpy as np
import pytest
import torch

from case_fast.baselines import aicl
from case_fast.baselines import build_model, init_order
from case_fast.config.loading import load_config
from case_fast.inference.detect import forward_videos, localize_video
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.method.released_init import draw_initial_weights
from case_fast.training.step import case_losses, train_step

REF = pathlib.Path(__file__).resolve().parents[1] / "reference"


def build(batch: int, t: int = 64):
    cfg = load_config("aicl", [f"data.num_segments={t}", f"train.batch_size={batch}"])
    model = build_model(cfg)
    draw_initial_weights(model, 1, init_order(model))
    optim = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return cfg, model, optim


def checksums(tensors):
    a = [t.detach().numpy().astype(np.float64) for t in tensors]
    return (np.array([x.sum() for x in a]), np.array([(x * x).sum() for x in a]),
            [x.reshape(-1)[:16] for x in a])


def released_names(d):
    return [n.replace("actionness_module.", "") for n in d["param_names"]]


def rel(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-30))


def test_initial_weights_from_seed_1_bit_exact():
    d = np.load(REF / "aicl_steps.npz")
    _, model, _ = build(3)
    params = dict(model.named_parameters())
    assert list(params) == released_names(d)
    s, sq, head = checksums(params.values())
    assert np.array_equal(s, d["init/sum"])
    np.testing.assert_allclose(sq, d["init/sumsq"], rtol=1e-14, atol=0)
    for i, h in enumerate(head):
        assert np.array_equal(h, d["init/head16"][i][:h.size]), released_names(d)[i]
    assert sum(p.numel() for p in params.values()) == 6_304_278 == int(d["param_numel"].sum())


@pytest.fixture
def plain_conv():
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev


def sums_close(ours, theirs, sumsq, numel, rtol):
    """Parameter / gradient sums, relative to the tensor's scale sqrt(numel * sumsq) (a sum of
    entries of both signs can be near 0)."""
    scale = np.sqrt(np.asarray(sumsq, np.float64) * np.asarray(numel, np.float64))
    assert np.all(np.abs(np.asarray(ours) - theirs) <= rtol * scale), (ours, theirs)


def test_three_released_steps_every_intermediate_loss_gradient_parameter(plain_conv):
    d = np.load(REF / "aicl_steps.npz")
    cfg, model, optim = build(3)
    names = released_names(d)
    params = dict(model.named_parameters())
    q_c = initial_cluster_labels(cfg.model.num_clusters)
    for step in (1, 2, 3):
        p = f"step{step}/"
        x = torch.from_numpy(d["features"][step - 1])
        y = torch.from_numpy(d["labels"][step - 1])
        optim.zero_grad(set_to_none=True)
        out = model(x)
        np.testing.assert_allclose(out.cas.detach().numpy(), d[p + "cas"], rtol=0, atol=2e-6)
        np.testing.assert_allclose(out.att_flow.detach().numpy(), d[p + "att_flow"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out.att_rgb.detach().numpy(), d[p + "att_rgb"], rtol=0, atol=1e-6)
        a1, a2 = aicl.actionness(out)
        np.testing.assert_allclose(a1.detach().numpy(), d[p + "a1"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(a2.detach().numpy(), d[p + "a2"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(aicl.above_median(a1).numpy(), d[p + "bin1"])
        np.testing.assert_array_equal(aicl.above_median(a2).numpy(), d[p + "bin2"])
        scores = aicl.mining_scores(a1, a2)
        k_sel = int(d[p + "k_sel"])
        for n in ("CA", "CB", "IA", "IB"):
            np.testing.assert_allclose(scores[n].numpy(), d[p + "sel_score/" + n], rtol=0, atol=1e-6)
            for space in ("base", "rgb", "flow"):
                np.testing.assert_array_equal(aicl.pick(scores[n], k_sel).numpy(),
                                              d[f"{p}sel/{space}/{n}"])
        np.testing.assert_allclose(aicl.mil_scores(out).detach().numpy(), d[p + "mil_score"],
                                   rtol=0, atol=1e-6)
        res = case_losses(out, y, q_c, cfg)
        np.testing.assert_array_equal(res.topk_idx.numpy(), d[p + "topk"])
        np.testing.assert_array_equal(res.q_a.numpy(), d[p + "q_a"])
        # every loss term to 1e-6 relative
        picks = {n: aicl.pick(s, k_sel) for n, s in scores.items()}
        nce = torch.stack([aicl.contrast_terms(e, picks) for e in
                           (out.embedding, out.emb_rgb, out.emb_flow)]).detach().numpy()
        assert rel(nce, d[p + "loss/nce"]) <= 1e-6
        mse = [torch.nn.functional.mse_loss(u, v).item() for u, v in
               ((out.att_flow, out.att_rgb), (out.att_rgb, out.att_flow), (a1, a2), (a2, a1))]
        assert rel(mse, d[p + "loss/mse"]) <= 1e-6
        for ours, theirs in (("video", "video"), ("att_flow", "att_flow"), ("att_rgb", "att_rgb"),
                             ("modality", "modality"), ("action", "action")):
            assert rel(res.parts[ours].item(), d[p + "loss/" + theirs]) <= 1e-6, ours
        assert rel(res.parts["contrast"].item(), d[p + "loss/contrast"].sum()) <= 1e-6
        assert rel(res.loss.item(), d[p + "loss/total"]) <= 1e-6
        res.loss.backward()
        s, sq, head = checksums([params[n].grad for n in names])
        assert rel(sq, d[p + "grad/sumsq"]) <= 1e-5
        sums_close(s, d[p + "grad/sum"], sq, d["param_numel"], 1e-5)
        for i, h in enumerate(head):   # relative to the row's largest entry
            ref = d[p + "grad/head16"][i][:h.size]
            assert np.max(np.abs(h - ref)) <= 1e-5 * np.max(np.abs(ref)), (step, names[i])
        optim.step()
        s, sq, head = checksums([params[n] for n in names])
        assert rel(s, d[p + "after/sum"]) <= 1e-5
        assert rel(sq, d[p + "after/sumsq"]) <= 1e-5
        for i, h in enumerate(head):
            np.testing.assert_allclose(h, d[p + "after/head16"][i][:h.size], rtol=0, atol=1e-9)


def test_released_trajectory_50_steps(plain_conv):
    d = np.load(REF / "aicl_trajectory.npz")
    d_numel = np.load(REF / "aicl_steps.npz")["param_numel"]
    batches = d["batch_videos"]
    cfg, model, optim = build(batches.shape[1])
    names = released_names(d)
    params = dict(model.named_parameters())
    s, sq, _ = checksums([params[n] for n in names])
    assert np.array_equal(s, d["init/sum"])
    feats, labels = torch.from_numpy(d["pool_features"]), torch.from_numpy(d["pool_labels"])
    q_c = initial_cluster_labels(cfg.model.num_clusters)
    losses, terms, sums, sumsqs = [], [], [], []
    for ids in batches:
        ids = torch.from_numpy(ids)
        optim.zero_grad(set_to_none=True)
        res = train_step(model, optim, feats[ids], labels[ids], q_c, cfg)
        losses.append(res.loss.item())
        terms.append([res.parts[n].item() for n in
                      ("video", "att_flow", "att_rgb", "contrast", "modality", "action")])
        s, sq, _ = checksums([params[n] for n in names])
        sums.append(s)
        sumsqs.append(sq)
    assert rel(losses, d["loss_per_step"]) <= 1e-6
    assert rel(terms, d["loss_terms"]) <= 1e-6
    for step in range(len(batches)):
        sums_close(sums[step], d["param_sum_per_step"][step], sumsqs[step], d_numel, 1e-5)
    assert rel(sumsqs, d["param_sumsq_per_step"]) <= 1e-5
    s, sq, head = checksums([params[n] for n in names])
    assert rel(sq, d["final/sumsq"]) <= 1e-5
    for i, h in enumerate(head):
        np.testing.assert_allclose(h, d["final/head16"][i][:h.size], rtol=0, atol=1e-7)


def test_test_video_scores_classes_and_proposals_exactly():
    d = np.load(REF / "aicl_steps.npz")
    cfg, model, _ = build(1, 750)
    model.eval()
    feats = torch.from_numpy(d["test/features"])[None]
    with torch.no_grad():
        out = model(feats)
    np.testing.assert_allclose(out.cas[0].numpy(), d["test/cas"], rtol=0, atol=5e-6)
    np.testing.assert_allclose(out.att_flow[0].numpy(), d["test/att_flow"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.att_rgb[0].numpy(), d["test/att_rgb"], rtol=0, atol=1e-6)
    cas, scores = forward_videos(model, feats, None, cfg)
    np.testing.assert_allclose(cas[0], d["test/loc_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(torch.topk(torch.from_numpy(cas[0]), 93, dim=0).indices.numpy(),
                                  d["test/topk"])
    np.testing.assert_allclose(scores[0], d["test/video_scores"], rtol=0, atol=1e-6)
    assert cfg.oic_lambda() == float(d["test/oic_lambda"]) and cfg.infer.oic_gamma == float(d["test/oic_gamma"])
    np.testing.assert_array_equal(np.asarray(cfg.infer.act_thresholds), d["test/act_thresh"])
    props = localize_video(cas[0], scores[0], int(d["test/v_len"]), cfg)
    want = d["test/results"]
    np.testing.assert_array_equal(np.unique(props[:, 0]).astype(int), d["test/pred_classes"])
    assert props.shape == want.shape
    np.testing.assert_array_equal(props[:, [0, 2, 3]], want[:, [0, 2, 3]])
    np.testing.assert_allclose(props[:, 1], want[:, 1], rtol=0, atol=1e-6)
    # the results JSON: the same detections in the same order
    from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
    from case_fast.evaluation.results import results_dict
    ours = results_dict({"video_test_0000001": props}, list(THUMOS14_CLASSES))["results"]
    theirs = json.loads(str(d["test/results_json"]))["results"]
    assert [(r["label"], r["segment"]) for r in ours["video_test_0000001"]] == \
        [(r["label"], r["segment"]) for r in theirs["video_test_0000001"]]


def test_last_incomplete_batch_is_kept():
    """AICL's loader keeps each epoch's last incomplete batch: 200 videos in batches of 16 make 13
    steps an epoch, the last of 8, and the epoch covers every video once."""
    from case_fast.training.batches import RunStreams
    cfg = load_config("aicl")
    assert cfg.train.drop_last is False
    streams = RunStreams(1, 200, 16, cfg.train.drop_last)
    assert streams.per_epoch == 13
    epoch = [streams.batch_videos(s) for s in range(13)]
    assert [len(b) for b in epoch] == [16] * 12 + [8]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(200))
    # the released DataLoader (shuffle, drop_last=False) on the same generator gives these batches
    with torch.random.fork_rng():
        torch.manual_seed(1)
        loader = torch.utils.data.DataLoader(list(range(200)), batch_size=16, shuffle=True)
        want = [b.numpy() for b in loader]
    for ours, theirs in zip(epoch, want):
        np.testing.assert_array_equal(ours, theirs)


def test_size_and_macs_of_the_bundled_config():
    from case_fast.method.model import count_macs, count_parameters
    cfg = load_config("aicl")
    model = build_model(cfg)
    assert model.head is None
    assert count_parameters(model) == 6_304_278
    assert count_macs(model, 750) == 4_727_040_000     # `case-fast info --config aicl`: 4.73 G


def test_aicl_with_the_case_head_step_and_test_score():
    """AICL + CASE: the head's SCC and CCC join AICL's loss, Q^C moves, and the test score gains
    the two P^T terms: (softmax(CAS) + (P_f + P_r) + P^T_f + P^T_r) / 5."""
    from case_fast.method.case_head import foreground_scores
    from case_fast.inference.detect import localization_cas
    cfg = load_config("aicl", ["data.num_segments=32", "model.stream_dim=16", "data.feature_dim=32",
                               "model.hidden_dim=24", "model.num_clusters=6", "train.use_scc=true",
                               "train.use_ccc=true", "infer.use_cat=true", "infer.fg_score=PM"])
    model = build_model(cfg)
    assert set(dict(model.named_parameters())) >= {"head.prototypes.rgb", "head.prototypes.flow"}
    draw_initial_weights(model, 1, init_order(model))
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    x, y = torch.rand(4, 32, 32), (torch.rand(4, 20) < 0.2).float()
    y[:, 1] = 1
    q_c = initial_cluster_labels(6)
    res = train_step(model, optim, x, y, q_c, cfg)
    base = res.parts["video"] + (res.parts["att_flow"] + res.parts["att_rgb"]) \
        + 5 * res.parts["modality"] + 0.01 * res.parts["contrast"] + 0.1 * res.parts["action"]
    torch.testing.assert_close(res.loss.detach(), base + res.parts["scc"] + 0.3 * res.parts["ccc"])
    assert res.parts["scc"] > 0 and res.parts["ccc"] > 0 and res.q_s.shape == (4 * 32, 6)
    assert not torch.equal(res.q_c, q_c)
    assert model.head.prototypes["rgb"].grad is not None
    model.eval()
    with torch.no_grad():
        out = model(x)
        p_t = foreground_scores(out.cluster_logits, res.q_c)
        want = (torch.softmax(out.cas, -1) + (out.att_flow + out.att_rgb)[..., None]
                + p_t["flow"][..., None] + p_t["rgb"][..., None]) / 5
        torch.testing.assert_close(localization_cas(out, res.q_c, "PM", aicl), want, rtol=0, atol=0)
        assert torch.equal(localization_cas(out, None, "PA", aicl), aicl.mil_scores(out))
        # the video scores: top-k of the test score (default), or of AICL's own S
        # (infer.video_topk_on=baseline: P^T then serves localisation only)
        cas, scores = forward_videos(model, x, res.q_c, cfg)
        torch.testing.assert_close(torch.from_numpy(cas), want, rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(scores), aicl.video_scores(out, want, cfg.k))
        cfg.infer.video_topk_on = "baseline"
        cas_b, scores_b = forward_videos(model, x, res.q_c, cfg)
        assert np.array_equal(cas_b, cas)
        s_own = aicl.video_scores(out, aicl.mil_scores(out), cfg.k)
        torch.testing.assert_close(torch.from_numpy(scores_b), s_own)
        assert not np.allclose(scores_b, scores)


def test_aicl_trains_through_the_trainer_with_the_last_batch(tmp_path):
    """`case-fast train` with the AICL baseline on a small synthetic set: 20 videos in batches of
    6 are 4 steps an epoch, the last of 2 videos."""
    from case_fast.training import trainer as trainer_mod
    from case_fast.training.batches import RunStreams
    sizes = []
    real = RunStreams.batch_videos

    def spy(self, step):
        ids = real(self, step)
        sizes.append(len(ids))
        return ids
    cfg = load_config("synthetic", ["model.baseline=aicl", "train.drop_last=false",
                                    "data.synthetic_videos=20", "data.synthetic_max_len=200",
                                    "data.num_segments=64", "train.batch_size=6", "train.num_steps=5",
                                    "train.eval_every=5", "train.progress=false",
                                    "train.use_scc=false", "train.use_ccc=false",
                                    "infer.use_cat=false", "infer.fg_score=PA"])
    RunStreams.batch_videos = spy
    try:
        best = trainer_mod.train(cfg, str(tmp_path / "run"), log=lambda *_: None)
    finally:
        RunStreams.batch_videos = real
    assert sizes == [6, 6, 6, 2, 6]
    assert 0.0 <= best["avg"] <= 1.0
    from case_fast.training.checkpoint import load_checkpoint
    model, _, loaded = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    assert isinstance(model, aicl.AiclModel) and loaded.model.baseline == "aicl"
