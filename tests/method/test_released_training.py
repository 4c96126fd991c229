"""Whole training steps against the released code (tests/reference/train_steps_*.npz and
train_trajectory.npz): losses, Q^S, Q^C, every gradient and every parameter after every step,
through ``step.train_step``, the function the trainer calls."""
import pathlib

import numpy as np
import pytest
import torch

from case_fast.config.loading import load_config
from case_fast.method.model import CaseModel
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.training.step import train_step

REF = pathlib.Path(__file__).resolve().parents[1] / "reference"
LR = 1e-4

def build(d, prefix: str, sigma: float, batch: int, released_to_ours):
    init = {k[len(prefix):]: d[k] for k in d.files if k.startswith(prefix)}
    stream_dim = init["cas_module_rgb.0.weight"].shape[1]
    cfg = load_config("synthetic", [
        f"model.stream_dim={stream_dim}", f"data.feature_dim={2 * stream_dim}", "model.hidden_dim=512",
        "model.num_clusters=16", "model.num_classes=20", "data.num_segments=64", "train.k_divisor=8",
        f"train.prior_sigma={sigma}", f"train.lr={LR}", "train.weight_decay=0.0005",
        f"train.batch_size={batch}", "train.mode=faithful"])
    model = CaseModel(cfg.model)
    params = dict(model.named_parameters())
    assert len(params) == len(init)
    with torch.no_grad():
        for name, value in init.items():
            params[released_to_ours(name)].copy_(torch.from_numpy(value))
    optim = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return cfg, model, optim


def rel_close(actual: float, expected: float, rtol: float) -> None:
    assert abs(actual - expected) <= rtol * abs(expected), (actual, expected)


@pytest.mark.parametrize("ref", ["train_steps_std10.npz", "train_steps_std01.npz"])
def test_three_released_steps(ref, released_to_ours):
    d = np.load(REF / ref)
    cfg, model, optim = build(d, "init/", float(d["std"]), d["features"].shape[1], released_to_ours)
    params = dict(model.named_parameters())
    q_c = initial_cluster_labels(16)
    for step in (1, 2, 3):
        p = f"step{step}/"
        optim.zero_grad(set_to_none=True)
        res = train_step(model, optim, torch.from_numpy(d["features"][step - 1]),
                         torch.from_numpy(d["labels"][step - 1]), q_c, cfg)
        q_c = res.q_c
        rel_close(res.parts["video"].item(), float(d[p + "loss_video"]), 1e-6)
        rel_close(res.parts["att_rgb"].item(), float(d[p + "loss_att_rgb"]), 1e-6)
        rel_close(res.parts["att_flow"].item(), float(d[p + "loss_att_flow"]), 1e-6)
        rel_close(res.loss.item(), float(d[p + "loss_total"]), 1e-6)
        np.testing.assert_allclose(res.q_s.numpy(), d[p + "clu_gt"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(q_c.numpy(), d[p + "cls_gt"], rtol=1e-5, atol=1e-5)
        for name in (k[len(p + "grad/"):] for k in d.files if k.startswith(p + "grad/")):
            ours = params[released_to_ours(name)]
            expect = d[p + "grad/" + name]
            # relative to the tensor's scale (entries near zero carry only rounding)
            err = np.abs(ours.grad.numpy() - expect).max() / np.abs(expect).max()
            assert err <= 1e-5, (step, name, err)
            np.testing.assert_allclose(ours.detach().numpy(), d[p + "after/" + name], rtol=0,
                                       atol=1e-2 * LR, err_msg=f"step {step} {name}")


def test_released_trajectory_50_steps(released_to_ours):
    d = np.load(REF / "train_trajectory.npz")
    batches = d["batch_videos"]
    cfg, model, optim = build(d, "init/", float(d["std"]), batches.shape[1], released_to_ours)
    feats, labels = torch.from_numpy(d["pool_features"]), torch.from_numpy(d["pool_labels"])
    q_c = initial_cluster_labels(16)
    losses = []
    for ids in batches:
        ids = torch.from_numpy(ids)
        optim.zero_grad(set_to_none=True)
        res = train_step(model, optim, feats[ids], labels[ids], q_c, cfg)
        q_c = res.q_c
        losses.append(res.loss.item())
    np.testing.assert_allclose(losses, d["loss_per_step"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(q_c.numpy(), d["final_cls_gt"], rtol=1e-5, atol=1e-5)
    params = dict(model.named_parameters())
    for name in (k[len("final/"):] for k in d.files if k.startswith("final/")):
        np.testing.assert_allclose(params[released_to_ours(name)].detach().numpy(), d["final/" + name],
                                   rtol=0, atol=1e-2 * LR, err_msg=name)


def test_checkpoint_with_unnormalised_prototypes_evaluates_as_before(tmp_path):
    """A checkpoint written before the released normalisation rule holds prototype rows of any
    norm; it must evaluate as the in-graph normalisation did."""
    from case_fast.training.checkpoint import load_checkpoint

    cfg = load_config("synthetic", ["model.stream_dim=8", "data.feature_dim=16", "model.hidden_dim=32",
                                    "model.num_clusters=4"])
    torch.manual_seed(0)
    model = CaseModel(cfg.model)
    with torch.no_grad():
        for s in ("rgb", "flow"):
            getattr(model, s).prototypes.mul_(torch.rand(4, 1) * 5 + 0.1)
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "q_c": initial_cluster_labels(4), "config": cfg.to_dict()},
               path)
    x = torch.rand(2, 9, 16)
    expect = {}
    for s in ("rgb", "flow"):
        stream = getattr(model, s)
        emb = torch.relu(stream.att_conv1(x[..., :8].transpose(1, 2)) if s == "rgb"
                         else stream.att_conv1(x[..., 8:].transpose(1, 2))).transpose(1, 2)
        expect[s] = 10.0 * torch.nn.functional.normalize(emb, dim=-1) @ \
            torch.nn.functional.normalize(stream.prototypes, dim=1).t()
    loaded, q_c, _ = load_checkpoint(str(path))
    with torch.no_grad():
        out = loaded(x)
    for s in ("rgb", "flow"):
        torch.testing.assert_close(out[s].cluster_logits, expect[s].detach(), rtol=1e-6, atol=1e-6)
