"""Files the package writes: one atomic writer (fsync, the umask's mode), strict JSON that the
package's own readers read back, one checkpoint loader that never unpickles objects."""
import math
import os
import stat
import subprocess
import sys

import pytest
import torch

from case_fast.training.checkpoint import load_checkpoint
from case_fast.cli.main import main
from case_fast.data.annotations import load_json
from case_fast.strict_json import NonFiniteError, dumps, find_non_finite
from case_fast.files import save_json, save_text, save_torch

TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "train.batch_size=4", "train.num_steps=6",
        "train.eval_every=3", "train.progress=false"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_writers_give_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    save_json({"a": 1}, str(tmp_path / "a.json"))
    save_text("x\n", str(tmp_path / "a.txt"))
    save_torch({"w": torch.zeros(2)}, str(tmp_path / "a.pt"))
    for name in ("a.json", "a.txt", "a.pt"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.pt", "a.txt"]   # no temporary file left


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_a_run_and_its_outputs_are_readable_by_the_lab(tmp_path, umask, capsys, mask, expected):
    umask(mask)
    run = tmp_path / "run"
    assert main(["train", "-q", "--out", str(run)] + TINY) == 0
    det, metrics = tmp_path / "det.json", tmp_path / "m.json"
    assert main(["detect", "-q", "--checkpoint", str(run / "best.pt"), "--out", str(det)]) == 0
    assert main(["eval", "-q", str(det), "--json", str(metrics)]) == 0
    files = [run / n for n in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl", "summary.json",
                               "best_results.json", "best_table.txt", "train.log")] + [det, metrics]
    for f in files:
        assert _mode(f) == expected, f


def test_strict_json_names_the_key():
    assert find_non_finite({"a": [1.0, {"b": math.inf}]}) == ("a[1].b", math.inf)
    assert find_non_finite({"a": [1.0, 2]}) is None
    with pytest.raises(NonFiniteError, match=r"out.json: key best\.map\[1\] is nan"):
        dumps({"best": {"map": [0.5, math.nan]}}, where="out.json")
    with pytest.raises(NonFiniteError, match="key x is -inf"):
        dumps({"x": -math.inf})


def test_what_is_written_is_read_back(tmp_path):
    obj = {"best": {"avg": 0.25, "map": [0.5, 1e-300, 1.7976931348623157e308]}, "n": [1, 2], "s": "é"}
    save_json(obj, str(tmp_path / "r.json"))
    assert load_json(str(tmp_path / "r.json"), "test") == obj
    with pytest.raises(ValueError, match="key best.avg is nan"):
        save_json({"best": {"avg": math.nan}}, str(tmp_path / "r.json"))
    assert load_json(str(tmp_path / "r.json"), "test") == obj   # the old file is untouched


class _Payload:
    """Unpickling this creates a file: proof that the pickle ran."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (open, (self.flag, "w"))


@pytest.fixture
def evil_checkpoint(tmp_path):
    flag = tmp_path / "payload_ran"
    run = tmp_path / "run"
    assert main(["train", "-q", "--out", str(run)] + TINY) == 0
    ck = torch.load(run / "best.pt", weights_only=True)
    ck["extra"] = _Payload(str(flag))
    torch.save(ck, run / "best.pt")
    return run, flag


def test_a_checkpoint_carrying_a_pickle_is_refused_everywhere(evil_checkpoint, tmp_path, capsys):
    run, flag = evil_checkpoint
    with pytest.raises(ValueError, match="best.pt"):
        load_checkpoint(str(run / "best.pt"))
    assert main(["detect", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt" in err[0]
    pytest.importorskip("matplotlib")
    assert main(["plot", str(run), "--only", "videos"]) == 2
    assert "best.pt" in capsys.readouterr().err
    assert not flag.exists()


def test_plot_without_matplotlib_names_the_install(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from case_fast.cli.main import main; "
            f"sys.exit(main(['plot', {str(tmp_path)!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "pip install" in p.stderr and "matplotlib" in p.stderr
    assert "Traceback" not in p.stderr
