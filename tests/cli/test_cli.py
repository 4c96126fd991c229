"""The command line behaves like the tools people know: --version, -q, defaults in --help, a
closed pipe, '-' for stdout, --config checked by every command, info --fields / --json."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from case_fast.cli.common import DEFAULT_CONFIG
from case_fast.cli.main import _HelpFormatter, build_parser, main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "case_fast", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def test_version():
    from case_fast import __version__
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"case-fast {__version__}" and r.stderr == ""


def test_a_closed_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "case_fast", "info", "--fields"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.close()   # the reader is gone before the first line (like `| head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and err == ""


def test_a_run_goes_on_when_its_reader_goes_away(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "case_fast", "train", "--out", str(tmp_path / "run")] + TINY,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    p.stdout.close()
    assert p.wait(timeout=300) == 0
    assert (tmp_path / "run" / "summary.json").is_file()   # finished, and its train.log has it all
    assert "selected evaluation" in (tmp_path / "run" / "train.log").read_text()


def test_json_dash_is_stdout(tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"results": {"video_test_0000004": [
        {"label": "CricketBowling", "score": 0.5, "segment": [1.0, 3.0]}]}}))
    r = _cli("eval", str(res), "--json", "-")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)                  # stdout holds the JSON alone
    assert len(metrics["map"]) == 7 and "mAP(%)" in r.stderr
    assert not (tmp_path / "-").exists() and not os.path.exists(os.path.join(REPO, "-"))
    r = _cli("info", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["config"] == DEFAULT_CONFIG


def test_info_fields_shows_the_config_values(capsys):
    def value(config, key):
        assert main(["info", "--fields", "--json", "-", "--config", config]) == 0
        rows = json.loads(capsys.readouterr().out)["fields"]
        return next(r["value"] for r in rows if r["key"] == key)
    assert value("synthetic", "train.num_steps") == 1200
    assert value("thumos14", "train.num_steps") == 3600
    assert main(["info", "--fields", "--config", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "of synthetic" in out and any(" 1200 " in x for x in out.splitlines() if "train.num_steps" in x)


@pytest.mark.parametrize("argv", [["train"], ["ablate", "--quick"], ["info"], ["info", "--list"],
                                  ["info", "--fields"], ["profile", "--steps", "1"]])
def test_an_unknown_config_is_refused_by_every_command(argv, capsys):
    assert main(argv + ["--config", "nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nonexistent" in err


def test_one_default_config_said_in_help():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "ablate", "info", "profile"):
        cmd = sub.choices[name]
        assert cmd.get_default("config") == DEFAULT_CONFIG, name
        assert f"default: {DEFAULT_CONFIG}" in " ".join(cmd.format_help().split()), name


def test_every_option_shows_its_default_and_takes_quiet():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, cmd in sub.choices.items():
        fmt = _HelpFormatter(name)
        for action in cmd._actions:
            if not action.option_strings or action.required or isinstance(
                    action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            assert "default" in fmt._expand_help(action), (name, action.option_strings)
        assert "--quiet" in cmd.format_help() and "-q" in cmd._option_string_actions, name


def test_quiet_on_every_command(tmp_path):
    r = _cli("info", "-q")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    r = _cli("-q", "info", "--list")
    assert r.returncode == 0 and r.stdout == ""


# ---------------------------------------------------------------------------------------------
# `case-fast eval RUN/best_results.json`: the run's own ground truth

TINY = ["data.synthetic_videos=12", "data.synthetic_dim=16", "data.feature_dim=32", "model.stream_dim=16",
        "model.hidden_dim=32", "data.num_segments=64", "train.batch_size=4", "train.num_steps=6",
        "train.eval_every=3", "train.progress=false", "train.tensorboard=false"]
REAL = os.path.join(REPO, "tests", "reference", "released_run", "data")
REAL_ARGS = ["--config", "thumos14", f"data.root={REAL}", "data.num_segments=32", "data.feature_dim=32",
             "model.stream_dim=16", "train.batch_size=8", "train.num_steps=4", "train.eval_every=2",
             "train.device=cpu", "train.progress=false", "train.tensorboard=false"]


def _own_table(run, capsys, *extra):
    capsys.readouterr()
    assert main(["eval", os.path.join(run, "best_results.json"), "--json", "-"] + list(extra)) == 0
    out, err = capsys.readouterr()
    best = json.loads(open(os.path.join(run, "summary.json")).read())["best"]
    return json.loads(out), best, err


@pytest.mark.parametrize("args", [TINY, TINY + ["data.synthetic_max_len=300"], REAL_ARGS],
                         ids=["synthetic-12-videos", "synthetic-max-len", "basnet-layout"])
def test_eval_of_a_run_scores_its_own_ground_truth(tmp_path, capsys, args):
    run = str(tmp_path / "run")
    assert main(["train", "-q", "--out", run] + args) == 0
    metrics, best, err = _own_table(run, capsys)
    assert metrics["avg"] == pytest.approx(best["avg"], abs=1e-9)
    assert metrics["map"] == pytest.approx(best["map"], abs=1e-9)
    # a best_results.json without the record (an older run): the config.yaml beside it tells
    path = os.path.join(run, "best_results.json")
    data = json.loads(open(path).read())
    del data["case_fast"]
    with open(path, "w") as f:
        json.dump(data, f)
    assert _own_table(run, capsys)[0]["avg"] == pytest.approx(best["avg"], abs=1e-9)


def test_eval_says_how_many_videos_have_no_prediction(tmp_path, capsys):
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"results": {"video_test_0000004": [
        {"label": "CricketBowling", "score": 0.5, "segment": [1.0, 3.0]}], "video_test_9999999": []}}))
    assert main(["eval", str(res)]) == 2
    assert "1 video(s) with predictions are not in the ground truth" in capsys.readouterr().err
    assert main(["eval", str(res), "--allow-unknown"]) == 0
    err = capsys.readouterr().err
    assert "209 of 210 ground-truth videos have no prediction" in err and "dropped 0 prediction(s) on 1" in err
