"""End-to-end: training on a tiny synthetic set, exact resume, checkpoints, CLI commands."""
import json
import os

import numpy as np
import pytest
import torch

from case_fast.cli.main import main
from case_fast.config.loading import load_config
from case_fast.training.checkpoint import load_checkpoint
from case_fast.training.trainer import train

TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "train.batch_size=4", "train.num_steps=6",
        "train.eval_every=3", "train.progress=false"]


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _cfg(*extra):
    return load_config("synthetic", TINY + list(extra))


def _state(run):
    ck = torch.load(os.path.join(run, "last.pt"), weights_only=False)
    return ck


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, interrupt_at):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    best_a = train(_cfg(), a, log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt), interrupt_at(4):
        train(_cfg(), b, log=lambda *_: None)   # killed after the step-3 checkpoint
    assert _state(b)["step"] == 3
    best_b = train(_cfg(), b, log=lambda *_: None)
    sa, sb = _state(a), _state(b)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert torch.equal(sa["q_c"], sb["q_c"])
    assert best_a == best_b
    strip = lambda hist: [{k: v for k, v in h.items() if k != "eval_seconds"} for h in hist]
    assert strip(sa["history"]) == strip(sb["history"])
    lines = [json.loads(x) for x in open(os.path.join(b, "metrics.jsonl")).read().splitlines()]
    assert strip(lines) == strip(sa["history"])
    for name in ("best.pt", "best_results.json", "config.yaml", "summary.json", "best_table.txt"):
        assert os.path.exists(os.path.join(b, name)), name
    # nothing temporary left behind
    assert not [f for f in os.listdir(b) if f.endswith(".tmp")]


def test_resume_refuses_other_config(tmp_path):
    run = str(tmp_path / "r")
    train(_cfg("train.num_steps=3"), run, log=lambda *_: None)
    with pytest.raises(RuntimeError, match="different configuration"):
        train(_cfg("train.seed=5"), run, log=lambda *_: None)
    # more steps on the same config continue the run
    train(_cfg("train.num_steps=6"), run, log=lambda *_: None)
    assert _state(run)["step"] == 6
    # --restart replaces the old run entirely (no stale checkpoint or metrics survive)
    train(_cfg("train.seed=5", "train.num_steps=3"), run, restart=True, log=lambda *_: None)
    assert _state(run)["step"] == 3
    steps = [json.loads(x)["step"] for x in open(os.path.join(run, "metrics.jsonl"))]
    assert max(steps) == 3
    summary = _read_json(os.path.join(run, "summary.json"))
    assert summary["best"]["step"] <= 3
    assert summary["synthetic_version"] == 2   # the generator version is recorded with the numbers
    # a synthetic run written before data.synthetic_version existed was made on version 1: it
    # continues only as version 1, never on today's default
    from case_fast.training.checkpoint import config_for_compare
    old = _cfg().to_dict()
    del old["data"]["synthetic_version"]
    assert config_for_compare(old) == config_for_compare(_cfg("data.synthetic_version=1").to_dict())
    assert config_for_compare(old) != config_for_compare(_cfg().to_dict())


def test_run_invariant_keys_are_one_list(tmp_path):
    """The keys that do not change a run are listed once (config.schema.RUN_INVARIANT_KEYS) and
    both checks honour exactly them: resuming a last.pt and reusing an ablation run folder. Any
    other key makes a different run; train.num_steps only for the ablation (a run is continued)."""
    from case_fast.config.schema import RUN_INVARIANT_KEYS
    from case_fast.experiments.ablate import _check_same_config
    from case_fast.training.checkpoint import config_for_compare

    changed = {"name": "other", "train.progress": True, "train.num_threads": 3, "train.device": "cuda",
               "train.backend": "reference", "train.cuda_graph": True, "train.world_size": 2,
               "train.tensorboard": False}
    assert sorted(changed) == sorted(RUN_INVARIANT_KEYS)
    base = _cfg().to_dict()
    for key, value in list(changed.items()) + [("train.seed", 7), ("train.num_steps", 9),
                                               ("model.hidden_dim", 64)]:
        other = json.loads(json.dumps(base))
        section, _, name = key.rpartition(".")
        (other[section] if section else other)[name] = value
        assert other != base
        invariant = key in RUN_INVARIANT_KEYS
        assert (config_for_compare(other) == config_for_compare(base)) == (invariant or key == "train.num_steps")
        if invariant:
            _check_same_config(other, base, str(tmp_path))
        else:
            with pytest.raises(RuntimeError, match="different configuration"):
                _check_same_config(other, base, str(tmp_path))


def test_checkpoint_roundtrip_and_cli(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--out", run] + TINY) == 0
    out = capsys.readouterr().out
    assert "mAP@0.1" in out or "0.1" in out
    model, q_c, cfg = load_checkpoint(os.path.join(run, "best.pt"))
    assert q_c.shape == (16, 2) and cfg.model.stream_dim == 16
    res = str(tmp_path / "det.json")
    assert main(["detect", "--checkpoint", os.path.join(run, "best.pt"), "--out", res]) == 0
    data = _read_json(res)
    assert set(data) == {"version", "results", "external_data", "case_fast"}   # + the run's config
    # detections written by detect score the same as the trainer's own evaluation of best.pt
    best = _read_json(os.path.join(run, "summary.json"))["best"]
    gt_args = []
    assert main(["eval", res, "--allow-unknown", "--json", str(tmp_path / "m.json")] + gt_args) == 0
    capsys.readouterr()
    assert _read_json(os.path.join(run, "best_results.json"))["results"] == data["results"]
    assert main(["info", "--config", "thumos14"]) == 0
    info = capsys.readouterr().out
    assert "2,137,130" in info and "1.60 G" in info


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"video_test_9999999": [{"label": "HighJump", "score": 0.5,
                                                                       "segment": [1, 2]}]}}))
    assert main(["eval", str(bad)]) == 2
    assert "video_test_9999999" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "model.bogus=1"]) == 2
    assert "model.bogus" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "train.batch_size=abc"]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
    assert main(["detect", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o.json")]) == 2
    assert not os.path.exists(tmp_path / "o.json")


# ---------------------------------------------------------------------------------------------
# train.cuda_graph
# ---------------------------------------------------------------------------------------------
def test_cuda_graph_config_roundtrip():
    from case_fast.config.loading import config_from_dict
    assert load_config("synthetic").train.cuda_graph is False
    cfg = _cfg("train.cuda_graph=true")
    assert cfg.train.cuda_graph is True
    assert config_from_dict(cfg.to_dict()).train.cuda_graph is True
    assert config_from_dict(yaml_roundtrip(cfg.to_dict())) == cfg
    with pytest.raises(ValueError, match="train.cuda_graph"):
        _cfg("train.cuda_graph=sometimes")


def yaml_roundtrip(d):
    import yaml
    return yaml.safe_load(yaml.safe_dump(d, sort_keys=False))


def test_cuda_graph_on_cpu_is_refused_before_anything_is_written(tmp_path, capsys):
    run = str(tmp_path / "g")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(_cfg("train.cuda_graph=true", "train.device=cpu"), run, log=lambda *_: None)
    assert not os.path.exists(run)
    assert main(["train", "--out", run, "train.cuda_graph=true", "train.device=cpu"] + TINY) == 2
    assert "train.cuda_graph=true needs a CUDA device" in capsys.readouterr().err
    assert not os.path.exists(run)


def test_resume_of_a_checkpoint_without_the_cuda_graph_field(tmp_path):
    """last.pt files written before train.cuda_graph existed still resume (it is an execution
    option, like train.device, not part of the run's identity)."""
    run = str(tmp_path / "old")
    train(_cfg("train.num_steps=3"), run, log=lambda *_: None)
    path = os.path.join(run, "last.pt")
    ck = torch.load(path, weights_only=False)
    del ck["config"]["train"]["cuda_graph"]
    torch.save(ck, path)
    logs = []
    train(_cfg("train.num_steps=6"), run, log=logs.append)
    assert any("resuming" in m for m in logs) and _state(run)["step"] == 6


def test_set_capturable_after_load_state_dict():
    """Optimizer.load_state_dict restores the saved groups' `capturable`: the trainer puts back
    its own and moves each `step` counter where that flag wants it."""
    from case_fast.training.graph_step import set_capturable
    p = torch.nn.Parameter(torch.randn(3))
    eager = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.ones(3)
    eager.step()
    graphed = torch.optim.Adam([p], lr=1e-3, capturable=True)
    graphed.load_state_dict(eager.state_dict())
    assert graphed.param_groups[0]["capturable"] is False   # what torch does by itself
    set_capturable(graphed, True)
    assert graphed.param_groups[0]["capturable"] is True
    step = graphed.state[p]["step"]
    assert step.device == p.device and step.dtype == torch.float32 and float(step) == 1.0
    set_capturable(graphed, False)
    assert graphed.param_groups[0]["capturable"] is False
    assert graphed.state[p]["step"].device.type == "cpu"


def test_feature_bank_gather_into_a_static_buffer():
    from case_fast.training.batches import FeatureBank

    class _DS:
        feats = [np.arange(i * 40, i * 40 + 5 * 8, dtype=np.float32).reshape(5, 8) for i in range(3)]

        def __len__(self):
            return 3

        def features(self, i):
            return self.feats[i]

    bank = FeatureBank(_DS(), torch.device("cpu"))
    ids, idx = np.array([2, 0]), [np.array([0, 1, 4]), np.array([3, 3, 2])]
    buf = torch.full((2, 3, 8), -1.0)
    ptr = buf.data_ptr()
    assert bank.gather(ids, idx, out=buf) is buf and buf.data_ptr() == ptr
    assert torch.equal(buf, bank.gather(ids, idx))
    assert torch.equal(buf[0, 2], torch.from_numpy(_DS.feats[2][4]))


class _CpuCapturableAdam(torch.optim.Adam):
    """Adam whose groups say capturable=True (as GraphedStep requires) but which steps with the
    ordinary CPU arithmetic (torch refuses capturable on CPU tensors)."""

    def __init__(self, params, **kw):
        kw.pop("capturable", None)
        super().__init__(params, **kw)
        for g in self.param_groups:
            g["capturable"] = True

    def step(self, closure=None):
        for g in self.param_groups:
            g["capturable"] = False
        try:
            return super().step(closure)
        finally:
            for g in self.param_groups:
                g["capturable"] = True


def _simulated_capture(self):
    """Stands in for GraphedStep._capture on the CPU with a CUDA graph's semantics: capturing runs
    nothing (the step is run once for its output tensors, then every mutation is undone and the
    outputs are poisoned), and each replay recomputes the step and writes its outputs into those
    same tensors, as a real replay overwrites the graph's static outputs."""
    import copy
    params = [p.detach().clone() for p in self.model.parameters()]
    opt_state = copy.deepcopy(self.optim.state_dict())
    q_c = self.q_c.clone()
    self.optim.zero_grad(set_to_none=True)
    static = self._run()
    with torch.no_grad():
        for p, v in zip(self.model.parameters(), params):
            p.copy_(v)
    self.optim.load_state_dict(opt_state)
    self.q_c.copy_(q_c)
    outs = [static.loss, *static.parts.values()] + ([static.q_s] if static.q_s is not None else [])
    for x in outs:
        x.fill_(float("nan"))

    def replay():
        self.optim.zero_grad(set_to_none=True)
        new = self._run()
        news = [new.loss, *new.parts.values()] + ([new.q_s] if new.q_s is not None else [])
        for x, y in zip(outs, news):
            x.copy_(y)

    class _Graph:
        pass

    self.graph = _Graph()
    self.graph.replay = replay
    self._static, self.captured_at = static, self.calls


@pytest.fixture
def simulated_cuda_graph(monkeypatch):
    """train.cuda_graph=true on the CPU with the stream/graph API faked: checks the trainer's and
    GraphedStep's data flow (static inputs, Q^C written back, warm-up count, outputs overwritten by
    each replay, resume), not CUDA itself."""
    import contextlib
    import case_fast.training.graph_step as gs
    import case_fast.training.trainer as tr

    class _Stream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(tr, "require_cuda", lambda device: None)
    monkeypatch.setattr(gs, "require_cuda", lambda device: None)
    monkeypatch.setattr(torch.optim, "Adam", _CpuCapturableAdam)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: _Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: _Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(gs.GraphedStep, "_capture", _simulated_capture)


def test_simulated_cuda_graph_training_matches_eager_and_resumes(tmp_path, simulated_cuda_graph, interrupt_at):
    steps = ["train.num_steps=12", "train.eval_every=3"]
    strip = lambda hist: [{k: v for k, v in h.items() if k != "eval_seconds"} for h in hist]  # noqa: E731
    a, b, c = str(tmp_path / "eager"), str(tmp_path / "graph"), str(tmp_path / "resumed")
    train(_cfg(*steps), a, log=lambda *_: None)
    logs = []
    train(_cfg(*steps, "train.cuda_graph=true"), b, log=logs.append)
    assert any(m.startswith("step 4: CUDA graph captured") for m in logs), logs
    with pytest.raises(KeyboardInterrupt), interrupt_at(8):
        train(_cfg(*steps, "train.cuda_graph=true"), c, log=lambda *_: None)
    logs = []
    train(_cfg(*steps, "train.cuda_graph=true"), c, log=logs.append)
    assert any(m.startswith("step 10: CUDA graph captured") for m in logs), logs
    sa, sb, sc = _state(a), _state(b), _state(c)
    for s in (sb, sc):   # same arithmetic as eager here, so bit for bit
        assert strip(s["history"]) == strip(sa["history"])
        assert torch.equal(s["q_c"], sa["q_c"])
        for k in sa["model"]:
            assert torch.equal(s["model"][k], sa["model"][k]), k


# GPU only (bench/gpu_check.sh runs `pytest -m cuda tests/`)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# tests/conftest.py defaults TRITON_INTERPRET to 1; the interpreter runs kernels through host copies,
# which a CUDA graph cannot capture (bench/gpu_check.sh exports TRITON_INTERPRET=0)
compiled_triton = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") == "1",
                                     reason="TRITON_INTERPRET=1: the interpreter is not capturable")
_LOSS_KEYS = ("loss", "video", "att_rgb", "att_flow", "scc", "ccc", "H_QS", "H_mean_QS", "H_QC")


def _loss_entries(hist):
    return [h for h in hist if "loss" in h]


@pytest.mark.cuda
@needs_cuda
@compiled_triton
def test_cuda_graph_training_matches_eager(tmp_path):
    """Same seed, same batches: eager vs captured training. eval_every=1 makes every history window
    one step (per-step losses) and puts an eager evaluation between every two replays.

    Tolerance: the graph differs from eager only in Adam's arithmetic (capturable=True computes the
    bias corrections and step size as float32 device tensors instead of Python floats, ~1e-7
    relative per update); rtol 1e-4 / atol 1e-5 leaves 1000x headroom for that, while one lost,
    doubled or stale step moves every weight by ~lr = 5e-4 (Adam) and fails it."""
    steps = ["train.device=cuda", "train.num_steps=12", "train.eval_every=1"]
    a, b = str(tmp_path / "eager"), str(tmp_path / "graph")
    train(_cfg(*steps), a, log=lambda *_: None)
    logs = []
    train(_cfg(*steps, "train.cuda_graph=true"), b, log=logs.append)
    assert any("step 4: CUDA graph captured" in m for m in logs), logs
    sa, sb = _state(a), _state(b)
    ea, eb = _loss_entries(sa["history"]), _loss_entries(sb["history"])
    assert [e["step"] for e in ea] == [e["step"] for e in eb] == list(range(1, 13))
    for x, y in zip(ea, eb):
        for k in _LOSS_KEYS:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), (x["step"], k)
    for k in sa["model"]:
        torch.testing.assert_close(sb["model"][k], sa["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(sb["q_c"], sa["q_c"], rtol=1e-4, atol=1e-5)
    assert [h["step"] for h in sb["history"] if "eval" in h] == list(range(1, 13))
    # the saved optimizer state of a graph run is capturable, its step counter on the device
    assert sb["optimizer"]["param_groups"][0]["capturable"] is True
    assert all(s["step"].is_cuda and float(s["step"]) == 12 for s in sb["optimizer"]["state"].values())


@pytest.mark.cuda
@needs_cuda
@compiled_triton
def test_cuda_graph_resume_after_interrupt_matches_uninterrupted(tmp_path, interrupt_at):
    """Interrupted after the step-6 checkpoint and resumed: the resumed run warms up again (steps
    7-9 eager, capture at step 10). The same kernels run in both, so the result is expected to be
    bit-identical unless a kernel is non-deterministic; the check allows float32 rounding noise
    (a lost, doubled or stale step, or a wrong Q^C, moves weights by ~lr = 5e-4)."""
    cfg = lambda: _cfg("train.device=cuda", "train.cuda_graph=true", "train.num_steps=12",  # noqa: E731
                       "train.eval_every=3")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(cfg(), a, log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt), interrupt_at(8):
        train(cfg(), b, log=lambda *_: None)
    assert _state(b)["step"] == 6
    logs = []
    train(cfg(), b, log=logs.append)
    assert any("step 10: CUDA graph captured" in m for m in logs), logs
    sa, sb = _state(a), _state(b)
    if not all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"]):
        import warnings   # worth knowing (shown in pytest's summary), not a failure by itself
        warnings.warn("graph run resumed after an interrupt is close to, not bit-identical with, "
                      "the uninterrupted graph run")
    for k in sa["model"]:
        torch.testing.assert_close(sb["model"][k], sa["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    torch.testing.assert_close(sb["q_c"], sa["q_c"], rtol=1e-5, atol=1e-6)
    ea, eb = _loss_entries(sa["history"]), _loss_entries(sb["history"])
    assert [e["step"] for e in ea] == [e["step"] for e in eb]
    for x, y in zip(ea, eb):
        for k in _LOSS_KEYS:
            assert y[k] == pytest.approx(x[k], rel=1e-5, abs=2e-6), (x["step"], k)


@pytest.mark.cuda
@needs_cuda
def test_cuda_graph_captures_with_the_reference_ops(tmp_path):
    """backend=reference (torch.topk/argsort/gather instead of the Triton kernels) makes no host
    sync either: capture succeeds (a sync during capture raises) and training matches eager."""
    steps = ["train.device=cuda", "train.num_steps=6", "train.eval_every=6",
             "train.backend=reference"]
    a, b = str(tmp_path / "eager"), str(tmp_path / "graph")
    train(_cfg(*steps), a, log=lambda *_: None)
    logs = []
    train(_cfg(*steps, "train.cuda_graph=true"), b, log=logs.append)
    assert any("CUDA graph captured" in m for m in logs), logs
    sa, sb = _state(a), _state(b)
    for k in sa["model"]:
        torch.testing.assert_close(sb["model"][k], sa["model"][k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.cuda
@needs_cuda
@compiled_triton
def test_eager_checkpoint_resumes_with_the_graph(tmp_path):
    """An eager run's last.pt (Adam saved with capturable=False, step on the CPU) resumes with
    train.cuda_graph=true: the trainer makes the loaded optimizer capturable before capture."""
    run = str(tmp_path / "r")
    base = ["train.device=cuda", "train.eval_every=3"]
    train(_cfg(*base, "train.num_steps=3"), run, log=lambda *_: None)
    assert _state(run)["optimizer"]["param_groups"][0]["capturable"] is False
    logs = []
    train(_cfg(*base, "train.num_steps=8", "train.cuda_graph=true"), run, log=logs.append)
    assert any("resuming" in m for m in logs) and any("step 7: CUDA graph captured" in m for m in logs)
    st = _state(run)
    assert st["step"] == 8 and st["optimizer"]["param_groups"][0]["capturable"] is True
    assert all(float(s["step"]) == 8 for s in st["optimizer"]["state"].values())
    assert all(torch.isfinite(v).all() for v in st["model"].values())
