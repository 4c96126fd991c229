"""The released run, seed for seed (method.md §8), through the trainer's own entry point
(``trainer.train``, what ``case-fast train`` calls) on tests/reference/released_run/: two whole runs
of the released code (seeds 1 and 2, 200 steps, an evaluation every 23 steps) with their initial
weights, every batch's videos and sampled snippets, every step's loss and every evaluation's mAP.

The trainer runs untouched; the test only watches it: the streams' draws (``RunStreams``) and the
step function's inputs and losses are recorded by wrappers around the functions the trainer calls.
Tolerances: a faithful step on the released batches keeps the losses within 2e-7 relative and the
final weights within 1.3e-7 of these files (tests/reference/README.md), checked here at 1e-5
(losses), 1e-4 (mAP fractions, final weights)."""
import pathlib

import numpy as np
import pytest
import torch

import case_fast.training.loop as loop_mod
import case_fast.training.trainer as trainer_mod
from case_fast.training.checkpoint import read_last
from case_fast.config.loading import load_config
from case_fast.training.run_files import RunError
from case_fast.training.batches import RunStreams

REF = pathlib.Path(__file__).resolve().parents[1] / "reference" / "released_run"
SEEDS = (1, 2)


def reference(seed: int):
    return np.load(REF / f"seed{seed}.npz")


def config(seed: int, *extra: str):
    d = reference(seed)
    return load_config("thumos14", [
        f"data.root={REF / 'data'}", f"data.num_segments={int(d['num_segments'])}",
        f"data.feature_dim={2 * int(d['stream_dim'])}", f"model.stream_dim={int(d['stream_dim'])}",
        f"train.batch_size={int(d['batch_size'])}", f"train.num_steps={int(d['num_steps'])}",
        f"train.eval_every={int(d['eval_every'])}", f"train.seed={seed}", "train.device=cpu",
        "train.progress=false", "train.tensorboard=false", *extra])


class Watch:
    """Records, per step, what the trainer drew and computed (the last execution of a step wins)."""

    def __init__(self, monkeypatch):
        self.step, self.init = None, None
        self.videos, self.snippets, self.losses, self.q_c = {}, {}, {}, {}
        real_batch, real_sample, real_step = RunStreams.batch_videos, RunStreams.sample, loop_mod.train_step

        def batch_videos(streams, step):
            self.step = step
            self.videos[step] = real_batch(streams, step).copy()
            return self.videos[step]

        def sample(streams, ids, num_snippets, t):
            self.snippets[self.step] = real_sample(streams, ids, num_snippets, t)
            return self.snippets[self.step]

        def train_step(model, optim, feats, labels, q_c, cfg, **kw):
            if self.step == 0:
                self.init = {k: v.detach().clone() for k, v in model.state_dict().items()}
            res = real_step(model, optim, feats, labels, q_c, cfg, **kw)
            self.losses[self.step] = float(res.loss.detach())
            return res
        monkeypatch.setattr(RunStreams, "batch_videos", batch_videos)
        monkeypatch.setattr(RunStreams, "sample", sample)
        monkeypatch.setattr(loop_mod, "train_step", train_step)


def run(seed, run_dir, monkeypatch, interrupt_at=None, interrupts=()):
    """Train the reference recipe with ``seed`` (killed before each step in ``interrupts`` and
    resumed); returns the Watch and last.pt."""
    watch = Watch(monkeypatch)
    for step in interrupts:
        with pytest.raises(KeyboardInterrupt), interrupt_at(step):
            trainer_mod.train(config(seed), str(run_dir), log=lambda *_: None)
    trainer_mod.train(config(seed), str(run_dir), log=lambda *_: None)
    return watch, torch.load(run_dir / "last.pt", weights_only=True)


def check_against_reference(seed, watch, last, released_to_ours):
    d = reference(seed)
    n = int(d["num_steps"])
    init = {released_to_ours(k[len("init/"):]): d[k] for k in d.files if k.startswith("init/")}
    assert set(init) == set(watch.init)
    for name, value in init.items():   # bit for bit
        assert np.array_equal(watch.init[name].numpy(), value), name
    assert sorted(watch.videos) == list(range(n))
    for s in range(n):
        assert np.array_equal(watch.videos[s], d["batch_videos"][s]), f"the videos of step {s}"
        assert np.array_equal(watch.snippets[s], d["sampled_indices"][s]), f"the snippets of step {s}"
    losses = np.array([watch.losses[s] for s in range(n)])
    rel = np.abs(losses / d["loss_per_step"] - 1)
    assert rel.max() <= 1e-5, f"step {int(rel.argmax())}: loss {losses[rel.argmax()]} vs {d['loss_per_step'][rel.argmax()]}"
    evals = [h for h in last["history"] if "eval" in h and h.get("periodic", True)]
    assert [h["step"] for h in evals] == d["eval_steps"].tolist()
    for h, ref in zip(evals, d["eval_map"]):
        np.testing.assert_allclose(h["eval"]["map"], ref, rtol=0, atol=1e-4,
                                   err_msg=f"mAP of the evaluation at step {h['step']}")
    best = int(np.argmax(d["eval_map"].mean(1)))   # the first of equal bests, as released
    assert last["best"]["step"] == int(d["eval_steps"][best])
    assert last["best"]["avg"] == pytest.approx(float(d["best_map"]), abs=1e-4)
    final = {released_to_ours(k[len("final/"):]): d[k] for k in d.files if k.startswith("final/")}
    for name, value in final.items():
        np.testing.assert_allclose(last["model"][name].numpy(), value, rtol=0, atol=1e-4, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """seed -> (Watch, last.pt) of the uninterrupted run (shared by the tests below)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for seed in SEEDS:
            out[seed] = run(seed, tmp_path_factory.mktemp(f"seed{seed}"), mp)
            mp.undo()
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_case_fast_train_is_the_released_run(seed, uninterrupted, released_to_ours):
    check_against_reference(seed, *uninterrupted[seed], released_to_ours)


def test_resumed_run_is_the_uninterrupted_and_the_released_run(tmp_path, monkeypatch, interrupt_at,
                                                               uninterrupted, released_to_ours):
    """Killed before step 23 (5 steps per epoch: resumed from the checkpoint written right after the
    evaluation at step 23, in the middle of an epoch whose order, drawn at step 20, must come back
    from last.pt with both generators), then before step 50 (the first step of an epoch: resumed
    from the checkpoint of step 46, steps 46-49 run again)."""
    watch, last = run(1, tmp_path / "run", monkeypatch, interrupt_at, interrupts=(23, 50))
    check_against_reference(1, watch, last, released_to_ours)
    ref_watch, ref_last = uninterrupted[1]
    assert watch.losses == ref_watch.losses          # bit for bit
    for name, value in ref_last["model"].items():
        assert torch.equal(last["model"][name], value), name
    assert torch.equal(last["q_c"], ref_last["q_c"])
    strip = lambda hist: [{k: v for k, v in h.items() if k != "eval_seconds"} for h in hist]  # noqa: E731
    assert strip(last["history"]) == strip(ref_last["history"])
    for key in ("loader", "order"):
        assert torch.equal(last["streams"][key], ref_last["streams"][key])
    assert torch.equal(last["streams"]["snippets"]["key"], ref_last["streams"]["snippets"]["key"])


def test_old_last_pt_is_refused(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    trainer_mod.train(config(1, "train.num_steps=3", "train.eval_every=3"), str(run_dir), log=lambda *_: None)
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    del ck["streams"]
    torch.save(ck, run_dir / "last.pt")
    with pytest.raises(RunError, match="--restart") as e:
        trainer_mod.train(config(1, "train.num_steps=6", "train.eval_every=3"), str(run_dir),
                          log=lambda *_: None)
    assert "\n" not in str(e.value)
    with pytest.raises(RunError, match="--restart"):
        read_last(str(run_dir / "last.pt"), "cpu")


@pytest.mark.parametrize("seed", SEEDS)
def test_initial_weights_are_drawn_in_the_released_order(seed, released_to_ours):
    from case_fast.method.model import CaseModel
    from case_fast.method.released_init import draw_initial_weights
    d = reference(seed)
    model = CaseModel(config(seed).model)
    draw_initial_weights(model, seed)
    state = model.state_dict()
    for k in d.files:
        if k.startswith("init/"):
            assert np.array_equal(state[released_to_ours(k[len("init/"):])].numpy(), d[k]), k


def test_initial_weights_order_must_cover_the_network():
    from case_fast.method.model import CaseModel
    from case_fast.method.released_init import CASE_ORDER, draw_initial_weights
    with pytest.raises(ValueError, match="rgb.prototypes"):
        draw_initial_weights(CaseModel(config(1).model), 1, CASE_ORDER[:-1])


def released_loader_batches(seed: int, n: int, batch: int, steps: int, eval_every: int):
    """The batches the released set-up would draw for ``n`` training videos, made by PyTorch's own
    DataLoader (shuffle on, last incomplete batch dropped) on torch's global generator seeded with
    ``seed``, each periodic evaluation creating a (test) loader iterator."""
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(list(range(n)), batch_size=batch, shuffle=True, drop_last=True)
        test_loader = torch.utils.data.DataLoader([0], batch_size=1)
        while len(out) < steps:
            for b in loader:
                out.append(b.numpy())
                if len(out) % eval_every == 0:
                    iter(test_loader)
                if len(out) == steps:
                    break
    return out


def test_val_fraction_orders_the_remaining_videos_as_released(tmp_path, monkeypatch):
    """With a validation hold-out, the remaining training videos (in file order) are shuffled by the
    same procedure: the batches are those of the released DataLoader over them."""
    watch = Watch(monkeypatch)
    cfg = config(1, "train.val_fraction=0.25", "train.num_steps=30", "train.eval_every=7")
    trainer_mod.train(cfg, str(tmp_path / "run"), log=lambda *_: None)
    from case_fast.training.batches import val_split
    from case_fast.data.load import load_datasets
    train_all, _ = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    keep, held = val_split(train_all.labels, 0.25)
    assert len(held) > 0 and np.all(np.diff(keep) > 0)
    want = released_loader_batches(1, len(keep), 8, 30, 7)
    for s in range(30):
        np.testing.assert_array_equal(watch.videos[s], want[s])
