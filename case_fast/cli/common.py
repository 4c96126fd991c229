"""What every ``case-fast`` command shares: the ``--config`` / overrides arguments and their
loading, :class:`UsageError`, ``-`` as stdout, where messages go, never overwriting an input."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


DEFAULT_CONFIG = "synthetic"   # every command's default configuration: the embedded synthetic set


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                   help="bundled config name (synthetic, synthetic_full, thumos14, thumos14_wtalc, "
                        "anet12, anet13) or a YAML path (default: %(default)s, the embedded synthetic set)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. train.seed=2 data.root=/data/THUMOS14")


def load_config_of(args):
    from ..config.loading import load_config
    return load_config(args.config, args.overrides)


class UsageError(ValueError):
    """A command-line option is wrong or options contradict each other."""


def to_stdout(path: Optional[str]) -> bool:
    return path == "-"


def say_for(data_path: Optional[str]):
    """The function printing a command's messages: stdout, or stderr when ``data_path`` is '-' (the
    data then has stdout to itself); nothing with --quiet."""
    from ..console import console

    if not to_stdout(data_path):
        return console.show

    def to_stderr(msg: str) -> None:
        if console.speaks and not console.quiet:
            print(msg, file=sys.stderr, flush=True)
    return to_stderr


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(out: str, what: str, inputs) -> None:
    """An output path that is one of the command's inputs would destroy it: refused up front."""
    for name, path in inputs:
        if path is not None and _same_file(out, path):
            raise UsageError(f"{what} {out} is the {name}: writing there would overwrite it; choose "
                             "another path")
