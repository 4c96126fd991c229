"""Pipeline benchmarks: one training step and one evaluation pass, the package's default
(fast) path against the reference path (every op forced to its plain PyTorch/NumPy reference:
Sinkhorn, top-k pooling, Python NMS, reference proposal generation, reference mAP).

    pytest bench/bench_pipeline.py --benchmark-only

* training step: B=16, T=750, 2 x 1024-d (the paper's shapes), random features and labels, on
  CUDA when available, else CPU. On the CPU both paths run the same reference ops (the Triton
  kernels are for CUDA tensors), so the CPU comparison checks "no slower".
* evaluation pass: the 210 embedded THUMOS14 test videos (real lengths and ground truth) with
  T-CAS curves that look like a trained model's (smooth, with bumps over the ground-truth
  segments and some false bumps), 1-3 predicted classes per video: proposals + NMS + mAP. The
  network forward is the same for both paths and is left out.
"""
import numpy as np
import pytest
import torch

from case_fast.config.loading import load_config
from case_fast.data.synthetic import embedded_thumos14_test
from case_fast.evaluation.ground_truth import GroundTruth
from case_fast.evaluation.metric import evaluate
from case_fast.inference.detect import localize_video
from case_fast.method.model import CaseModel
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.training.step import case_losses
from case_fast.training.periodic_eval import proposals_to_detections

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def step_setup():
    cfg = load_config("thumos14")
    torch.manual_seed(0)
    model = CaseModel(cfg.model).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 750, 2048, generator=g).to(DEVICE)
    y = torch.zeros(16, 20)
    y[torch.arange(16), torch.randint(0, 20, (16,), generator=g)] = 1
    return cfg, model, opt, x, y.to(DEVICE), initial_cluster_labels(16, DEVICE)


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_training_step(benchmark, step_setup, path):
    cfg, model, opt, x, y, qc = step_setup
    backend = "reference" if path == "reference" else "auto"

    def step():
        out = model(x)
        res = case_losses(out, y, qc, cfg, backend=backend)
        opt.zero_grad(set_to_none=True)
        res.loss.backward()
        opt.step()
        _sync()

    step()  # warm-up (Triton compilation on CUDA)
    benchmark.group = f"pipeline training step B=16 T=750 D=2x1024 ({DEVICE.type})"
    benchmark.pedantic(step, rounds=5 if DEVICE.type == "cpu" else 50, iterations=1)


def _fake_cas(names, lengths, gt, t, g, seed=0):
    """Per video: T-CAS (T, G) and video scores (G,) that look like a trained model's."""
    rng = np.random.default_rng(seed)
    by_video = {}
    for v, c, (s, e) in zip(gt["video"], gt["label"], gt["segment"]):
        by_video.setdefault(v, []).append((c, s, e))
    out = []
    for name, tv in zip(names, lengths):
        secs = np.arange(t) * tv / t * 16 / 25.0
        cas = 0.15 * rng.random((t, g)) + 0.1
        scores = np.full(g, 0.01)
        for c, s, e in by_video.get(name, []):
            bump = np.exp(-0.5 * ((secs - (s + e) / 2) / max((e - s) / 2, 0.5)) ** 2)
            cas[:, c] += rng.uniform(0.5, 0.8) * bump
            scores[c] = rng.uniform(0.3, 0.9)
        for _ in range(3):  # false alarms
            c = rng.integers(g)
            cas[:, c] += 0.5 * np.exp(-0.5 * ((secs - rng.uniform(0, secs[-1] + 1)) / 3.0) ** 2)
        k = np.convolve(np.ones(5) / 5, np.ones(1), mode="full")
        cas = np.stack([np.convolve(cas[:, j], k, mode="same") for j in range(g)], 1)
        out.append((cas.astype(np.float32), scores.astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def eval_setup():
    cfg = load_config("thumos14")
    names, lengths, gt = embedded_thumos14_test()
    return cfg, names, lengths, GroundTruth(**gt), _fake_cas(names, lengths, gt, 750, 20)


def _eval_pass(cfg, names, lengths, gt, cas, backend):
    props = {v: localize_video(c, s, int(n), cfg, backend=backend)
             for v, n, (c, s) in zip(names, lengths, cas)}
    det = proposals_to_detections(props)
    return evaluate(det, gt, tuple(cfg.infer.tiou),
                    backend="reference" if backend == "reference" else "fast")


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_evaluation_pass(benchmark, eval_setup, path):
    cfg, names, lengths, gt, cas = eval_setup
    backend = "reference" if path == "reference" else "auto"
    benchmark.group = "pipeline evaluation pass: 210 videos, proposals + NMS + mAP (CPU)"
    m = benchmark.pedantic(_eval_pass, args=(cfg, names, lengths, gt, cas, backend),
                           rounds=1 if path == "reference" else 5, iterations=1)
    ref = _eval_pass(cfg, names, lengths, gt, cas, "reference") if path == "fast" else m
    np.testing.assert_array_equal(m["ap"], ref["ap"])
