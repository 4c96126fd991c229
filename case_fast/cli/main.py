"""The ``case-fast`` command line: train, detect, eval, info (and profile, ablate, plot).

Every subcommand that takes a configuration accepts ``--config NAME|PATH`` (bundled names:
``case-fast info --list``; default for every command: ``synthetic``, the embedded synthetic set)
followed by any number of ``section.key=value`` overrides (``case-fast info --fields`` lists every
key with its value and meaning).

Output: results and messages on stdout, warnings and errors on stderr, a progress bar on stderr
when it is a terminal; ``-q/--quiet`` keeps only warnings and errors; ``-`` as an output file is
stdout (the messages then go to stderr). Under torchrun only rank 0 prints.

Errors: a bad configuration, bad data, a bad or unreadable file, or an OS error on an input or
output (read-only or full disk, a folder where a file is expected) ends the command with one line
``case-fast <cmd>: error: <message naming the key, file or video>`` on stderr and exit status 2,
before anything is written where the problem can be known in advance. ``CASE_FAST_DEBUG=1`` shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import List, Optional

from .commands import cmd_detect, cmd_info, cmd_profile, cmd_train
from .common import add_config_args
from .evaluate import cmd_eval




class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless the text already says it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or "default" in text.lower()):
            return text
        d = action.default
        if isinstance(d, bool):
            shown = "on" if d else "off"
        elif d is None:
            shown = "none"
        elif isinstance(d, (list, tuple)):
            shown = " ".join(map(str, d)) or "none"
        else:
            shown = str(d).replace("%", "%%")
        return f"{text} (default: {shown})".strip()


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="case-fast", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"case-fast {__version__}")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only warnings and errors (files are written as usual)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train CASE (default: the embedded synthetic set) and print the mAP table")
    add_config_args(t)
    t.add_argument("--out", "-o", help="run directory (default runs/<config>-seed<seed>); an existing "
                                       "run there is resumed from its last checkpoint")
    t.add_argument("--restart", action="store_true",
                   help="start over even if --out holds a run (the old run is kept until the new one "
                        "has its first checkpoint)")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("detect", help="features -> ActivityNet-style detections JSON with a trained checkpoint")
    d.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    d.add_argument("--out", "-o", required=True, help="results JSON to write ('-': stdout)")
    d.add_argument("--split", choices=("test", "train"), default="test",
                   help="the split to detect on (only its files are read)")
    d.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    d.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override the checkpoint's config (e.g. data.root=..., infer.nms=hard); "
                        "model.* must agree with the checkpoint")
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("eval", help="score any method's results JSON against ground truth")
    e.add_argument("results", help="ActivityNet-style results JSON")
    e.add_argument("--gt", help="ground truth: BaS-Net gt.json or ActivityNet-style JSON (classlist.txt and "
                                "Ambiguous_test.txt beside it are used), or a W-TALC annotations folder "
                                "(default: the ground truth recorded in a case-fast results file, else the "
                                "embedded THUMOS14, 210 test videos)")
    e.add_argument("--split-file", help="one video per line (e.g. split_test.txt): evaluate exactly these "
                                        "videos, whatever subset the ground truth gives them (default: "
                                        "none, the --subset)")
    e.add_argument("--subset", help="subset name in the GT file (default: test, else validation)")
    e.add_argument("--ambiguous-file", help="ambiguous segments, lines 'video start end' (default: "
                                            "Ambiguous_test.txt beside the ground truth)")
    e.add_argument("--prefix", default="Thumos14reduced", help="W-TALC file prefix")
    e.add_argument("--protocol", choices=("basnet210", "co2net", "delu", "wtalc", "wtalc212", "all"),
                   default=None,
                   help="default: a case-fast run's own data.protocol, else basnet210. "
                        "basnet210: seconds, ActivityNet matching and AP; co2net / delu / wtalc: the "
                        "numbers of the CO2-Net, DELU and W-TALC evaluators on a W-TALC --gt folder "
                        "(snippet grid, their ambiguous filter, DELU's length drop, W-TALC's first-fit "
                        "matching and AP); wtalc212: another name for co2net; all: every protocol side "
                        "by side (README, 'Evaluation protocols')")
    e.add_argument("--ambiguous", action="store_true",
                   help="basnet210 only: also drop predictions overlapping ambiguous segments in seconds "
                        "(no released evaluator's rule: co2net / delu / wtalc filter as released)")
    e.add_argument("--tiou", default=None,
                   help="thumos (0.1:0.7), anet (0.5:0.05:0.95) or a comma list (default: the "
                        "protocol's, 0.1:0.7; wtalc 0.1:0.5)")
    e.add_argument("--allow-unknown", action="store_true",
                   help="drop (with a note) predictions on videos absent from the ground truth")
    e.add_argument("--json", help="also write the metrics here ('-': stdout, the table then goes to "
                                  "stderr; default: none)")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="parameters and MACs of the configured model")
    add_config_args(i)
    i.add_argument("--list", action="store_true", help="list the bundled configs")
    i.add_argument("--fields", action="store_true",
                   help="list every configuration field with its type, its value in --config and its meaning")
    i.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the information as JSON instead, to PATH or, without one, to stdout "
                        "(default: text on stdout)")
    i.set_defaults(func=cmd_info)
    pr = sub.add_parser("profile", help="parameters, MACs, steps/s, videos/s, peak memory and the "
                                         "time split of a training step and an evaluation pass")
    add_config_args(pr)
    pr.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    pr.add_argument("--videos", type=int, default=0, help="evaluate only the first n test videos (0: all 210)")
    pr.add_argument("--checkpoint", help="profile a trained model (its proposals are realistic; default: "
                                         "an untrained model)")
    pr.add_argument("--json", help="also write the report here ('-': stdout, the text then goes to stderr; "
                                   "default: none)")
    pr.set_defaults(func=cmd_profile)

    from ..experiments.ablate import add_ablate_parser
    from ..experiments.plot import add_plot_parser
    add_ablate_parser(sub)   # case-fast ablate (case_fast/experiments/ablate.py)
    add_plot_parser(sub)     # case-fast plot (case_fast/experiments/plot.py)
    for cmd in sub.choices.values():
        cmd.formatter_class = _HelpFormatter
        for action in cmd._actions:   # an option without help text still shows its default
            if action.option_strings and action.help is None and action.default is not None:
                action.help = "default: %(default)s"
        cmd.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                         help="print only warnings and errors (files are written as usual; default: off)")
    return p


def _message(e: BaseException) -> str:
    """One line naming the culprit: the exception's text (a KeyError's without quotes, an OSError's
    with its path)."""
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    elif isinstance(e, OSError) and not str(e).startswith("cannot") and (e.filename or e.strerror):
        where = e.filename if e.filename is not None else ""
        other = f" -> {e.filename2}" if getattr(e, "filename2", None) else ""
        text = f"{where}{other}: {e.strerror or e}" if where else str(e.strerror or e)
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command. User errors (configuration, data, files, options, OS errors on inputs and
    outputs) end with one line ``case-fast <cmd>: error: <message>`` on stderr and exit status 2;
    ``CASE_FAST_DEBUG=1`` shows the traceback instead. A torchrun worker does not return: it ends
    with the status through ``distributed.exit_worker``."""
    args = build_parser().parse_args(argv)
    from ..training import distributed
    try:
        code = _run(args)
    except SystemExit as e:
        if not distributed.joined():
            raise
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        if not distributed.joined():
            raise
        traceback.print_exc()
        code = 1
    if distributed.joined():   # a torchrun worker ends here, past the process group's teardown
        distributed.exit_worker(code)
    return code


def _run(args) -> int:
    import warnings

    import yaml

    from ..console import console

    console.quiet = bool(getattr(args, "quiet", False))
    shown = warnings.showwarning
    warnings.showwarning = console.showwarning   # one line on stderr, once, rank 0 only
    try:
        if getattr(args, "config", None) is not None:   # an unknown --config is refused by every command
            from ..config.loading import load_config
            load_config(args.config)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:   # the reader of stdout went away (`info --fields | head -1`): quietly, 0
        from ..console import silence
        silence(sys.stdout)
        return 0
    except KeyboardInterrupt:
        print("interrupted; `case-fast train` with the same --out resumes from the last checkpoint",
              file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError, yaml.YAMLError) as e:
        if os.environ.get("CASE_FAST_DEBUG"):
            raise
        from ..training.distributed import RankError
        if not isinstance(e, RankError):   # under torchrun the rank that failed says why, once
            print(f"case-fast {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
