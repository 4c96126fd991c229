"""The ``case-fast`` command line: train, detect, eval, info (and profile, ablate, plot).

Every subcommand that takes a configuration accepts ``--config NAME|PATH`` (bundled names:
``case-fast info --list``) followed by any number of ``section.key=value`` overrides
(``case-fast info --fields`` lists every key with its default and meaning).

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
import time
from typing import List, Optional


def _add_config_args(p: argparse.ArgumentParser, default: Optional[str] = "synthetic") -> None:
    p.add_argument("--config", "-c", default=default,
                   help="bundled config name (synthetic, synthetic_full, thumos14, thumos14_wtalc, "
                        "anet12, anet13) or a YAML path (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. train.seed=2 data.root=/data/THUMOS14")


def _load(args):
    from .config.loading import load_config
    return load_config(args.config, args.overrides)


class UsageError(ValueError):
    """A command-line option is wrong or options contradict each other."""


def cmd_train(args) -> int:
    """Under torchrun (WORLD_SIZE > 1) every process joins the job's process group and trains its
    slice of the global batch; rank 0 writes the run directory and prints."""
    from .training import distributed
    from .training.trainer import train
    from .runtime import resolve_device

    cfg = _load(args)
    run_dir = args.out or os.path.join("runs", f"{cfg.name}-seed{cfg.train.seed}")
    pg = None
    if distributed.launched():
        pg = distributed.init(resolve_device(cfg.train.device).type)
    try:
        t0 = time.time()
        best = train(cfg, run_dir, restart=args.restart, pg=pg)
        if pg is None or pg.is_main:
            print(f"\nselected evaluation (train.select={cfg.train.select}) at step {best['step']} "
                  f"({time.time() - t0:.0f}s) - {run_dir}")
            table_path = os.path.join(run_dir, "best_table.txt")
            with open(table_path) as f:
                print(f.read().rstrip())
    finally:
        if pg is not None:
            distributed.shutdown()
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
    from .inference.detect import detect, to_results_dict
    from .training.checkpoint import load_checkpoint
    from .runtime import Progress, resolve_device
    from .files import check_writable_path, save_json

    check_writable_path(args.out, "--out")
    _refuse_overwriting(args.out, "--out", [("checkpoint", args.checkpoint)])
    device = resolve_device(args.device)
    model, q_c, cfg = load_checkpoint(args.checkpoint, device)
    _check_model_overrides(cfg, args.overrides, args.checkpoint)
    apply_overrides(cfg, args.overrides)
    (dataset,) = load_splits(cfg.data, cfg.model.num_classes, cfg.k, (args.split,))
    bar = Progress(len(dataset), "detect", True)
    props = detect(model, dataset, q_c, cfg, device, progress=bar.update)
    save_json(to_results_dict(props, dataset.class_names), args.out, None)
    n = sum(len(p) for p in props.values())
    print(f"wrote {n} detections for {len(props)} videos to {args.out}")
    return 0


def _beside(path: str, name: str):
    p = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return p if os.path.isfile(p) else None


def _ground_truth(args):
    """(the GroundTruth ``case-fast eval`` scores against (see the --gt help), the ambiguous-segment
    file used or None)."""
    from .evaluation import ground_truth as G
    from .data import annotations as A
    from .data.synthetic import assets_dir
    from .data.wtalc_annotations import find_wtalc_annotations

    if args.split_file is not None and args.subset is not None:
        raise UsageError("give --split-file or --subset, not both (the split file lists the videos)")
    ambiguous_file = args.ambiguous_file
    gt_path = args.gt
    if gt_path is None:  # the embedded THUMOS14 annotations
        a = assets_dir("thumos14")
        if args.protocol == "wtalc212":
            raise UsageError("--protocol wtalc212 needs --gt pointing at the W-TALC annotations folder")
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


def _parse_tiou(text: str):
    from .evaluation import metric as ev

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


def cmd_eval(args) -> int:
    from .evaluation import metric as ev
    from .evaluation.results import read_results
    from .files import check_writable_path

    tiou = _parse_tiou(args.tiou)
    if args.json:
        check_writable_path(args.json, "--json")
        _refuse_overwriting(args.json, "--json", [("results file", args.results), ("--gt", args.gt),
                                                  ("--split-file", args.split_file),
                                                  ("--ambiguous-file", args.ambiguous_file)])
    gt, ambiguous_source = _ground_truth(args)
    use_ambiguous = args.protocol == "wtalc212" or args.ambiguous
    if use_ambiguous and ambiguous_source is None:
        raise UsageError("--ambiguous / --protocol wtalc212 need the ambiguous segments, and no "
                         "Ambiguous_test.txt was found beside the ground truth: pass --ambiguous-file "
                         "(lines 'video start end')")

    def note(dropped):
        names = sorted(dropped)
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        print(f"case-fast eval: note: --allow-unknown dropped {sum(dropped.values())} prediction(s) on "
              f"{len(names)} video(s) not in the ground truth: {shown}", file=sys.stderr)

    det = read_results(args.results, gt.class_names, known_videos=gt.videos,
                          on_unknown=note if args.allow_unknown else None)
    metrics = ev.evaluate(det, gt, tiou, ambiguous_filter=use_ambiguous)
    print(f"{args.results}: {len(det.score)} predictions, {len(gt.videos)} videos, "
          f"{len(gt.class_names)} classes")
    print(ev.format_table(metrics))
    if args.json:
        from .files import save_json
        save_json({"tiou": list(map(float, metrics["tiou"])), "map": list(map(float, metrics["map"])),
                   "avg": float(metrics["avg"]),
                   "ap": [[float(x) for x in row] for row in metrics["ap"]],
                   "class_names": list(gt.class_names)}, args.json)
    return 0


def cmd_info(args) -> int:
    from .config.loading import available_configs, field_table

    if args.list:
        print("bundled configs: " + ", ".join(available_configs()))
        return 0
    if args.fields:
        import json
        print("configuration fields (section.key=value on the command line; default; meaning):")
        for key, tp, default, doc in field_table():
            print(f"  {key:<26} {tp:<20} {json.dumps(default):<14} {doc}")
        return 0
    from .method.model import CaseModel, count_macs, count_parameters
    cfg = _load(args)
    model = CaseModel(cfg.model)
    params = count_parameters(model)
    per_stream = count_parameters(model.rgb)
    t = cfg.data.num_segments
    macs = count_macs(model, t)
    print(f"config: {cfg.name} (mode {cfg.train.mode})")
    print(f"model: 2 streams x (D={cfg.model.stream_dim} -> {cfg.model.hidden_dim}), "
          f"G={cfg.model.num_classes} classes, K={cfg.model.num_clusters} clusters")
    print(f"parameters: {params:,} ({per_stream:,} per stream) = {params / 1e6:.3f} M")
    print(f"MACs per video (T={t}): {macs:,} = {macs / 1e9:.2f} G ({macs // t:,} per snippet)")
    print(f"training: batch {cfg.train.batch_size}, k = T // {cfg.train.k_divisor} = {cfg.k}, "
          f"{cfg.train.num_steps} steps, eval every {cfg.train.eval_every}")
    return 0


def cmd_profile(args) -> int:
    from .experiments.profiling import profile
    from .files import save_json

    cfg = _load(args)
    report = profile(cfg, steps=args.steps, checkpoint=args.checkpoint, eval_videos=args.videos)
    if args.json:
        save_json(report, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="case-fast", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    d.add_argument("--out", "-o", required=True, help="results JSON to write")
    d.add_argument("--split", choices=("test", "train"), default="test",
                   help="the split to detect on (only its files are read)")
    d.add_argument("--device", default="auto")
    d.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override the checkpoint's config (e.g. data.root=..., infer.nms=hard); "
                        "model.* must agree with the checkpoint")
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("eval", help="score any method's results JSON against ground truth")
    e.add_argument("results", help="ActivityNet-style results JSON")
    e.add_argument("--gt", help="ground truth: BaS-Net gt.json or ActivityNet-style JSON (classlist.txt and "
                                "Ambiguous_test.txt beside it are used), or a W-TALC annotations folder "
                                "(default: embedded THUMOS14, 210 test videos)")
    e.add_argument("--split-file", help="one video per line (e.g. split_test.txt): evaluate exactly these "
                                        "videos, whatever subset the ground truth gives them")
    e.add_argument("--subset", help="subset name in the GT file (default: test, else validation)")
    e.add_argument("--ambiguous-file", help="ambiguous segments, lines 'video start end' (default: "
                                            "Ambiguous_test.txt beside the ground truth)")
    e.add_argument("--prefix", default="Thumos14reduced", help="W-TALC file prefix")
    e.add_argument("--protocol", choices=("basnet210", "wtalc212", "all"), default="basnet210")
    e.add_argument("--ambiguous", action="store_true", help="drop predictions overlapping ambiguous segments")
    e.add_argument("--tiou", default="thumos", help="thumos (0.1:0.7), anet (0.5:0.05:0.95) or a comma list")
    e.add_argument("--allow-unknown", action="store_true",
                   help="drop (with a note) predictions on videos absent from the ground truth")
    e.add_argument("--json", help="also write the metrics here")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="parameters and MACs of the configured model")
    _add_config_args(i, default="thumos14")
    i.add_argument("--list", action="store_true", help="list the bundled configs")
    i.add_argument("--fields", action="store_true",
                   help="list every configuration field with its type, default and meaning")
    i.set_defaults(func=cmd_info)
    pr = sub.add_parser("profile", help="parameters, MACs, steps/s, videos/s, peak memory and the "
                                         "time split of a training step and an evaluation pass")
    _add_config_args(pr, default="thumos14")
    pr.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    pr.add_argument("--videos", type=int, default=0, help="evaluate only the first n test videos (0: all 210)")
    pr.add_argument("--checkpoint", help="profile a trained model (its proposals are realistic)")
    pr.add_argument("--json", help="also write the report here")
    pr.set_defaults(func=cmd_profile)

    from .experiments.ablate import add_ablate_parser
    from .experiments.plot import add_plot_parser
    add_ablate_parser(sub)   # case-fast ablate (case_fast/experiments/ablate.py)
    add_plot_parser(sub)     # case-fast plot (case_fast/experiments/plot.py)
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
    ``CASE_FAST_DEBUG=1`` shows the traceback instead."""
    import yaml

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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


if __name__ == "__main__":
    sys.exit(main())
