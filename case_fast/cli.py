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


DEFAULT_CONFIG = "synthetic"   # every command's default configuration: the embedded synthetic set


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                   help="bundled config name (synthetic, synthetic_full, thumos14, thumos14_wtalc, "
                        "anet12, anet13) or a YAML path (default: %(default)s, the embedded synthetic set)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. train.seed=2 data.root=/data/THUMOS14")


def _load(args):
    from .config.loading import load_config
    return load_config(args.config, args.overrides)


class UsageError(ValueError):
    """A command-line option is wrong or options contradict each other."""


def _to_stdout(path: Optional[str]) -> bool:
    return path == "-"


def _say_for(data_path: Optional[str]):
    """The function printing a command's messages: stdout, or stderr when ``data_path`` is '-' (the
    data then has stdout to itself); nothing with --quiet."""
    from .console import console

    if not _to_stdout(data_path):
        return console.show

    def to_stderr(msg: str) -> None:
        if console.speaks and not console.quiet:
            print(msg, file=sys.stderr, flush=True)
    return to_stderr


def cmd_train(args) -> int:
    """Under torchrun (WORLD_SIZE > 1) every process joins the job's process group and trains its
    slice of the global batch; rank 0 writes the run directory and prints."""
    from .training import distributed
    from .training.trainer import train
    from .runtime import resolve_device

    cfg = _load(args)
    run_dir = args.out or os.path.join("runs", f"{cfg.name}-seed{cfg.train.seed}")
    with distributed.process_group(resolve_device(cfg.train.device).type) as pg:
        train(cfg, run_dir, restart=args.restart, pg=pg)   # prints the selected evaluation's table
    return 0


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_overwriting(out: str, what: str, inputs) -> None:
    """An output path that is one of the command's inputs would destroy it: refused up front."""
    for name, path in inputs:
        if path is not None and _same_file(out, path):
            raise UsageError(f"{what} {out} is the {name}: writing there would overwrite it; choose "
                             "another path")


def _split_overrides(overrides):
    """(model.* overrides, the others)."""
    model, rest = [], []
    for ov in overrides or []:
        key = ov.split("=", 1)[0].strip()
        (model if key.startswith("model.") else rest).append(ov)
    return model, rest


def _check_model_overrides(cfg, overrides, checkpoint: str) -> None:
    """model.* overrides must agree with the checkpoint (its weights fix the architecture)."""
    import copy

    from .config.loading import apply_overrides

    model_ovs, _ = _split_overrides(overrides)
    for ov in model_ovs:
        trial = copy.deepcopy(cfg)
        apply_overrides(trial, [ov])          # type and range errors first, naming the key
        key = ov.split("=", 1)[0].strip()
        field = key.split(".", 1)[1]
        old, new = getattr(cfg.model, field), getattr(trial.model, field)
        if old != new:
            raise UsageError(f"{key}={new} contradicts the checkpoint {checkpoint} ({key} = {old}): the "
                             "model comes from the checkpoint; drop the override (infer.* and data.* "
                             "overrides apply)")


def cmd_detect(args) -> int:
    from .config.loading import apply_overrides
    from .data.load import load_splits
    from .inference.detect import detect
    from .evaluation.results import results_dict
    from .training.checkpoint import load_checkpoint
    from .console import Progress
    from .files import check_writable_path, save_json
    from .runtime import resolve_device

    if not _to_stdout(args.out):
        check_writable_path(args.out, "--out")
        _refuse_overwriting(args.out, "--out", [("checkpoint", args.checkpoint)])
    device = resolve_device(args.device)
    model, q_c, cfg = load_checkpoint(args.checkpoint, device)
    _check_model_overrides(cfg, args.overrides, args.checkpoint)
    apply_overrides(cfg, args.overrides)
    (dataset,) = load_splits(cfg.data, cfg.model.num_classes, cfg.k, (args.split,))
    bar = Progress(len(dataset), "detect", True)
    props = detect(model, dataset, q_c, cfg, device, progress=bar.update)
    save_json(results_dict(props, dataset.class_names, cfg.to_dict(), args.split), args.out, None)
    n = sum(len(p) for p in props.values())
    _say_for(args.out)(f"wrote {n} detections for {len(props)} videos to "
                       + ("stdout" if _to_stdout(args.out) else args.out))
    return 0


def _beside(path: str, name: str):
    p = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return p if os.path.isfile(p) else None


def _ground_truth(args):
    """(the GroundTruth ``case-fast eval`` scores against (see the --gt help), the ambiguous-segment
    file used or None)."""
    from .evaluation import ground_truth as G
    from .data import annotations as A
    from .data.wtalc_annotations import find_wtalc_annotations
    from .data.synthetic import assets_dir

    if args.split_file is not None and args.subset is not None:
        raise UsageError("give --split-file or --subset, not both (the split file lists the videos)")
    ambiguous_file = args.ambiguous_file
    gt_path = args.gt
    if gt_path is None:  # the embedded THUMOS14 annotations
        a = assets_dir("thumos14")
        split = args.split_file
        if split is None and args.subset is None:
            split = os.path.join(a, "split_test.txt")
        amb = ambiguous_file or os.path.join(a, "Ambiguous_test.txt")
        return G.ground_truth_from_gt_json(os.path.join(a, "gt.json"), split, subset=args.subset,
                                            ambiguous_file=amb), amb
    if not os.path.exists(gt_path):
        raise A.DataError(f"--gt {gt_path} does not exist")
    if os.path.isdir(gt_path):
        gt = G.ground_truth_from_wtalc(gt_path, prefix=args.prefix, subset=args.subset or "test",
                                        split_file=args.split_file)
        if ambiguous_file is not None:
            amb = A.read_ambiguous(ambiguous_file)
            gt.ambiguous = {v: s for v, s in amb.items() if v in set(gt.videos)}
            return gt, ambiguous_file
        folder = find_wtalc_annotations(gt_path, args.prefix)
        return gt, next((str(p) for p in (folder / "Ambiguous_test.txt", folder.parent / "Ambiguous_test.txt")
                         if p.is_file()), None)
    db = A.read_database_json(gt_path, "ground-truth file")
    subset = args.subset
    if args.split_file is None and subset is None:   # the usual evaluation subset of the file
        present = A.subsets_of(db)
        subset = next((s for s in ("test", "validation", "testing") if s in present), None)
        if subset is None:
            raise A.DataError(f"{gt_path}: no 'test' or 'validation' subset (subsets present: {present}); "
                              "pass --subset or --split-file")
    amb = ambiguous_file or _beside(gt_path, "Ambiguous_test.txt")
    return G.ground_truth_from_gt_json(
        gt_path, args.split_file, subset=subset, class_list_file=_beside(gt_path, "classlist.txt"),
        ambiguous_file=amb), amb


def _parse_tiou(text: Optional[str]):
    """The thresholds of --tiou (None: each protocol's own)."""
    from .evaluation import metric as ev

    if text is None:
        return None
    if text == "thumos":
        return ev.THUMOS_TIOU
    if text == "anet":
        return ev.ANET_TIOU
    try:
        tiou = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--tiou {text!r}: expected thumos, anet or a comma list of numbers in (0, 1]") from None
    if not tiou or not all(0 < t <= 1 for t in tiou):   # also NaN
        raise UsageError(f"--tiou {text!r}: every threshold must be in (0, 1]")
    return tiou


def _coverage_note(det, gt) -> Optional[str]:
    """One line when ground-truth videos got no prediction at all."""
    import numpy as np

    have = {det.video_names[i] for i in np.unique(det.video_index)} if len(det) else set()
    missing = sum(1 for v in gt.videos if v not in have)
    if not missing:
        return None
    return f"case-fast eval: note: {missing} of {len(gt.videos)} ground-truth videos have no prediction"


def _metrics_json(metrics) -> dict:
    out = {"protocol": metrics["protocol"], "tiou": list(map(float, metrics["tiou"])),
           "map": list(map(float, metrics["map"])), "avg": float(metrics["avg"])}
    out.update({k: float(metrics[k]) for k in ("avg_0.1:0.5", "avg_0.3:0.7") if k in metrics})
    out["ap"] = [[float(x) for x in row] for row in metrics["ap"]]
    out["class_names"] = list(metrics["class_names"])
    out["n_detections"] = int(metrics["n_detections"])
    return out


def _known_only(det, gt, args, note):
    """basnet210 beside a grid protocol: the predictions on videos of the ground truth; others are
    refused unless --allow-unknown drops them with a note."""
    import numpy as np

    from .data.annotations import DataError
    from .evaluation.results import Detections

    known = set(gt.videos)
    inside = np.array([v in known for v in det.video_names], dtype=bool)
    if inside.all():
        return det
    bad = [v for v, k in zip(det.video_names, inside.tolist()) if not k]
    if not args.allow_unknown:
        raise DataError(f"{args.results}: video {bad[0]!r}: unknown video (not in the evaluated split; "
                        "--allow-unknown drops such videos for basnet210)")
    note({v: int(n) for v, n in zip(bad, np.bincount(det.video_index, minlength=len(inside))[~inside])})
    keep = inside[det.video_index]
    return Detections(det.video[keep], det.label[keep], det.score[keep], det.segment[keep])


def _ambiguous_rules(protos, args, gt, ambiguous_source) -> None:
    """--ambiguous is basnet210's; without an ambiguous file co2net / delu evaluate unfiltered (as
    released, with a warning) and wtalc is refused (the released code fails)."""
    if args.ambiguous and any(p.grid for p in protos):
        raise UsageError(f"--ambiguous is for --protocol basnet210; {args.protocol} filters the "
                         "ambiguous segments as its released code does")
    if args.ambiguous and ambiguous_source is None:
        raise UsageError("--ambiguous needs the ambiguous segments, and no Ambiguous_test.txt was "
                         "found beside the ground truth: pass --ambiguous-file (lines 'video start end')")
    if ambiguous_source is not None:
        return
    gt.ambiguous = {}
    for p in protos:
        if p.ambiguous == "required":
            raise UsageError(f"--protocol {p.name} needs Ambiguous_test.txt (the released W-TALC code "
                             "fails without it): pass --ambiguous-file or put it in the --gt folder")
        if p.ambiguous == "optional":
            print(f"case-fast eval: warning: no Ambiguous_test.txt beside the ground truth: {p.name} "
                  "evaluates unfiltered (as the released code does without the file)", file=sys.stderr)


def cmd_eval(args) -> int:
    from .evaluation import metric as ev
    from .evaluation import protocols as P
    from .data.annotations import DataError, load_json
    from .training.periodic_eval import evaluation_protocol
    from .evaluation.ground_truth import ground_truth_of_run
    from .evaluation.results import detections_from_results
    from .files import check_writable_path

    tiou = _parse_tiou(args.tiou)
    say = _say_for(args.json)
    if args.json and not _to_stdout(args.json):
        check_writable_path(args.json, "--json")
        _refuse_overwriting(args.json, "--json", [("results file", args.results), ("--gt", args.gt),
                                                  ("--split-file", args.split_file),
                                                  ("--ambiguous-file", args.ambiguous_file)])
    results = load_json(args.results, "results file")
    run = None   # a case-fast results file is scored on the ground truth of its own run
    if args.gt is None and args.split_file is None and args.subset is None:
        run = ground_truth_of_run(results, args.results)
    protocol = args.protocol or "basnet210"
    if run is not None:
        gt, run_cfg, split = run
        ambiguous_source = "the run's annotations" if gt.ambiguous else None
        protocol = args.protocol or evaluation_protocol(run_cfg)
        source = f"the run's ground truth ({run_cfg.name}, {split} split)"
    else:
        if args.gt is None and protocol != "basnet210":
            raise UsageError(f"--protocol {protocol} needs --gt pointing at the W-TALC annotations "
                             "folder (the embedded ground truth is BaS-Net's 210 videos)")
        gt, ambiguous_source = _ground_truth(args)
        source = args.gt or "embedded THUMOS14"
    protos = [P.get(n) for n in (list(P.PROTOCOLS) if protocol == "all" else [protocol])]
    _ambiguous_rules(protos, args, gt, ambiguous_source)

    def note(dropped):
        names = sorted(dropped)
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        print(f"case-fast eval: note: --allow-unknown dropped {sum(dropped.values())} prediction(s) on "
              f"{len(names)} video(s) not in the ground truth: {shown}", file=sys.stderr)

    # the grid protocols take predictions on any video (B4: false positives, D3: dropped)
    any_grid = any(p.grid for p in protos)
    if (not any_grid and not args.allow_unknown and isinstance(results, dict)
            and isinstance(results.get("results"), dict)):
        known = set(gt.videos)
        unknown = [v for v in results["results"] if v not in known]
        if unknown:
            raise DataError(f"{args.results}: {len(unknown)} video(s) with predictions are not in the "
                            f"ground truth ({source}), e.g. {unknown[0]!r}; --allow-unknown drops them")
    det = detections_from_results(results, gt.class_names, known_videos=None if any_grid else gt.videos,
                                  source=args.results,
                                  on_unknown=note if args.allow_unknown and not any_grid else None)
    missing = _coverage_note(det, gt)
    if missing:
        print(missing, file=sys.stderr)
    scored = {}
    for p in protos:
        d = det if p.grid or not any_grid else _known_only(det, gt, args, note)
        scored[p.name] = ev.evaluate(d, gt, tiou, protocol=p.name, ambiguous_filter=args.ambiguous)
    say(f"{args.results}: {len(det.score)} predictions, {len(gt.videos)} videos, "
        f"{len(gt.class_names)} classes; ground truth: {source}")
    for p in protos:
        unknown = scored[p.name]["unknown_videos"]
        if unknown and p.grid:
            what = "false positives" if p.unknown_videos == "false_positive" else "dropped"
            print(f"case-fast eval: note: {p.name}: {sum(unknown.values())} prediction(s) on "
                  f"{len(unknown)} video(s) outside the ground truth are {what} (as released)",
                  file=sys.stderr)
        zeroed = scored[p.name].get("zeroed_by")
        if zeroed:
            print(f"case-fast eval: note: {p.name}: no prediction of {', '.join(zeroed)}: the released "
                  "W-TALC code reports 0 at every threshold", file=sys.stderr)
    first = scored[protos[0].name]
    say(ev.format_table(first) if len(protos) == 1 else ev.format_protocols(scored))
    if args.json:
        from .files import save_json
        save_json(_metrics_json(first) if len(protos) == 1 else
                  {"protocols": {k: _metrics_json(m) for k, m in scored.items()}}, args.json)
    return 0


def cmd_info(args) -> int:
    from .config.loading import available_configs
    from .config.schema import field_table
    from .console import console

    if args.json and not _to_stdout(args.json):
        from .files import check_writable_path
        check_writable_path(args.json, "--json")

    def out(text: str, data) -> None:
        if args.json:
            from .files import save_json
            save_json(data, args.json)
            if _to_stdout(args.json):
                return
        console.show(text)

    if args.list:
        names = available_configs()
        out("bundled configs: " + ", ".join(names), {"configs": names})
        return 0
    cfg = _load(args)
    if args.fields:
        import json
        rows = field_table(cfg)
        out("\n".join([f"configuration fields of {cfg.name} (section.key=value on the command line; "
                       "value in this config; meaning):"]
                      + [f"  {key:<26} {tp:<20} {json.dumps(value):<14} {doc}" for key, tp, value, doc in rows]),
            {"config": cfg.name, "fields": [{"key": k, "type": tp, "value": v, "meaning": doc}
                                            for k, tp, v, doc in rows]})
        return 0
    from .baselines import build_model
    from .method.model import count_macs, count_parameters
    model = build_model(cfg)
    params = count_parameters(model)
    t = cfg.data.num_segments
    macs = count_macs(model, t)
    info = {"config": cfg.name, "mode": cfg.train.mode, "baseline": cfg.model.baseline,
            "stream_dim": cfg.model.stream_dim, "hidden_dim": cfg.model.hidden_dim,
            "num_classes": cfg.model.num_classes, "num_clusters": cfg.model.num_clusters,
            "parameters": params}
    if cfg.model.baseline == "aicl":
        head = (f", CASE head with K={cfg.model.num_clusters} clusters" if model.head is not None
                else ", no CASE head")
        lines = [f"model: AICL, 2 x {cfg.model.stream_dim} -> {cfg.model.hidden_dim} (k=3 convs), "
                 f"G={cfg.model.num_classes} classes{head}",
                 f"parameters: {params:,} = {params / 1e6:.3f} M"]
        info["case_head"] = model.head is not None
    else:
        per_stream = count_parameters(model.rgb)
        lines = [f"model: 2 streams x (D={cfg.model.stream_dim} -> {cfg.model.hidden_dim}), "
                 f"G={cfg.model.num_classes} classes, K={cfg.model.num_clusters} clusters",
                 f"parameters: {params:,} ({per_stream:,} per stream) = {params / 1e6:.3f} M"]
        info["parameters_per_stream"] = per_stream
    out("\n".join([
        f"config: {cfg.name} (mode {cfg.train.mode})", *lines,
        f"MACs per video (T={t}): {macs:,} = {macs / 1e9:.2f} G ({macs // t:,} per snippet)",
        f"training: batch {cfg.train.batch_size}, k = T // {cfg.train.k_divisor} = {cfg.k}, "
        f"{cfg.train.num_steps} steps, eval every {cfg.train.eval_every}"]),
        dict(info, num_segments=t, macs_per_video=macs, batch_size=cfg.train.batch_size, k=cfg.k,
             num_steps=cfg.train.num_steps, eval_every=cfg.train.eval_every))
    return 0


def cmd_profile(args) -> int:
    from .experiments.profiling import profile
    from .files import save_json

    cfg = _load(args)
    if args.json and not _to_stdout(args.json):
        from .files import check_writable_path
        check_writable_path(args.json, "--json")
    report = profile(cfg, steps=args.steps, checkpoint=args.checkpoint, eval_videos=args.videos,
                     print_fn=_say_for(args.json))
    if args.json:
        save_json(report, args.json)
    return 0


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
    from . import __version__

    p = argparse.ArgumentParser(prog="case-fast", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"case-fast {__version__}")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only warnings and errors (files are written as usual)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train CASE (default: the embedded synthetic set) and print the mAP table")
    _add_config_args(t)
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
                        "by side (README, docs/protocols.md)")
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
    _add_config_args(i)
    i.add_argument("--list", action="store_true", help="list the bundled configs")
    i.add_argument("--fields", action="store_true",
                   help="list every configuration field with its type, its value in --config and its meaning")
    i.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the information as JSON instead, to PATH or, without one, to stdout "
                        "(default: text on stdout)")
    i.set_defaults(func=cmd_info)
    pr = sub.add_parser("profile", help="parameters, MACs, steps/s, videos/s, peak memory and the "
                                         "time split of a training step and an evaluation pass")
    _add_config_args(pr)
    pr.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    pr.add_argument("--videos", type=int, default=0, help="evaluate only the first n test videos (0: all 210)")
    pr.add_argument("--checkpoint", help="profile a trained model (its proposals are realistic; default: "
                                         "an untrained model)")
    pr.add_argument("--json", help="also write the report here ('-': stdout, the text then goes to stderr; "
                                   "default: none)")
    pr.set_defaults(func=cmd_profile)

    from .experiments.ablate import add_ablate_parser
    from .experiments.plot import add_plot_parser
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
    from .training import distributed
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

    from .console import console

    console.quiet = bool(getattr(args, "quiet", False))
    shown = warnings.showwarning
    warnings.showwarning = console.showwarning   # one line on stderr, once, rank 0 only
    try:
        if getattr(args, "config", None) is not None:   # an unknown --config is refused by every command
            from .config.loading import load_config
            load_config(args.config)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:   # the reader of stdout went away (`info --fields | head -1`): quietly, 0
        from .console import silence
        silence(sys.stdout)
        return 0
    except KeyboardInterrupt:
        print("interrupted; `case-fast train` with the same --out resumes from the last checkpoint",
              file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError, yaml.YAMLError) as e:
        if os.environ.get("CASE_FAST_DEBUG"):
            raise
        from .training.distributed import RankError
        if not isinstance(e, RankError):   # under torchrun the rank that failed says why, once
            print(f"case-fast {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
