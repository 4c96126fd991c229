"""The ``case-fast`` command line: train, detect, eval, info (and profile, ablate, plot).

Every subcommand that takes a configuration accepts ``--config NAME|PATH`` (bundled names:
``case-fast info --list``) followed by any number of ``section.key=value`` overrides.
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
    from .config import load_config
    return load_config(args.config, args.overrides)


def cmd_train(args) -> int:
    from .evaluation import format_table
    from .trainer import train

    cfg = _load(args)
    run_dir = args.out or os.path.join("runs", f"{cfg.name}-seed{cfg.train.seed}")
    t0 = time.time()
    best = train(cfg, run_dir, restart=args.restart)
    print(f"\nbest evaluation at step {best['step']} ({time.time() - t0:.0f}s) - {run_dir}")
    table_path = os.path.join(run_dir, "best_table.txt")
    with open(table_path) as f:
        print(f.read().rstrip())
    return 0


def cmd_detect(args) -> int:
    from .config import apply_overrides
    from .data import load_datasets
    from .inference import detect, to_results_dict
    from .trainer import load_checkpoint
    from .utils import Progress, resolve_device, save_json

    device = resolve_device(args.device)
    model, q_c, cfg = load_checkpoint(args.checkpoint, device)
    apply_overrides(cfg, args.overrides)
    train_set, test_set = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    dataset = test_set if args.split == "test" else train_set
    bar = Progress(len(dataset), "detect", True)
    props = detect(model, dataset, q_c, cfg, device, progress=bar.update)
    save_json(to_results_dict(props, dataset.class_names), args.out, None)
    n = sum(len(p) for p in props.values())
    print(f"wrote {n} detections for {len(props)} videos to {args.out}")
    return 0


def _ground_truth(args, class_names=None):
    from . import evaluation as ev
    from .data import assets_dir

    gt_path = args.gt
    if gt_path is None:  # the embedded THUMOS14 annotations
        a = assets_dir("thumos14")
        if args.protocol == "wtalc212":
            raise SystemExit("--protocol wtalc212 needs --gt pointing at the W-TALC annotations folder")
        return ev.ground_truth_from_gt_json(os.path.join(a, "gt.json"), os.path.join(a, "split_test.txt"))
    if os.path.isdir(gt_path):
        return ev.ground_truth_from_wtalc(gt_path, prefix=args.prefix)
    import json
    with open(gt_path) as f:
        head = json.load(f)
    first = next(iter(head.get("database", {}).values()), {})
    if "duration" in first or args.subset in ("validation", "training"):
        return ev.ground_truth_from_anet_json(gt_path, subset=args.subset or "validation")
    return ev.ground_truth_from_gt_json(gt_path, args.split_file, subset=args.subset or "test")


def cmd_eval(args) -> int:
    from . import evaluation as ev

    gt = _ground_truth(args)
    det = ev.read_results(args.results, gt.class_names, known_videos=None if args.allow_unknown else gt.videos)
    if args.tiou == "thumos":
        tiou = ev.THUMOS_TIOU
    elif args.tiou == "anet":
        tiou = ev.ANET_TIOU
    else:
        tiou = tuple(float(x) for x in args.tiou.split(","))
    metrics = ev.evaluate(det, gt, tiou, ambiguous_filter=args.protocol == "wtalc212" or args.ambiguous)
    print(f"{args.results}: {len(det.score)} predictions, {len(gt.videos)} videos, "
          f"{len(gt.class_names)} classes")
    print(ev.format_table(metrics))
    if args.json:
        from .utils import save_json
        save_json({"tiou": list(map(float, metrics["tiou"])), "map": list(map(float, metrics["map"])),
                   "avg": float(metrics["avg"]),
                   "ap": [[float(x) for x in row] for row in metrics["ap"]],
                   "class_names": list(gt.class_names)}, args.json)
    return 0


def cmd_info(args) -> int:
    from .config import available_configs
    from .model import CaseModel, count_macs, count_parameters

    if args.list:
        print("bundled configs: " + ", ".join(available_configs()))
        return 0
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
    from .profile import profile
    from .utils import save_json

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
    t.add_argument("--restart", action="store_true", help="start over even if --out holds a run")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("detect", help="features -> ActivityNet-style detections JSON with a trained checkpoint")
    d.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    d.add_argument("--out", "-o", required=True, help="results JSON to write")
    d.add_argument("--split", choices=("test", "train"), default="test")
    d.add_argument("--device", default="auto")
    d.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override the checkpoint's config (e.g. data.root=..., infer.nms=hard)")
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("eval", help="score any method's results JSON against ground truth")
    e.add_argument("results", help="ActivityNet-style results JSON")
    e.add_argument("--gt", help="ground truth: BaS-Net gt.json (with --split-file), an ActivityNet JSON, "
                                "or a W-TALC annotations folder (default: embedded THUMOS14, 210 test videos)")
    e.add_argument("--split-file", help="split_test.txt restricting gt.json to its videos")
    e.add_argument("--subset", help="subset name in the GT file (default test / validation)")
    e.add_argument("--prefix", default="Thumos14reduced", help="W-TALC file prefix")
    e.add_argument("--protocol", choices=("basnet210", "wtalc212", "all"), default="basnet210")
    e.add_argument("--ambiguous", action="store_true", help="drop predictions overlapping ambiguous segments")
    e.add_argument("--tiou", default="thumos", help="thumos (0.1:0.7), anet (0.5:0.05:0.95) or a comma list")
    e.add_argument("--allow-unknown", action="store_true", help="ignore videos absent from the ground truth")
    e.add_argument("--json", help="also write the metrics here")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="parameters and MACs of the configured model")
    _add_config_args(i, default="thumos14")
    i.add_argument("--list", action="store_true", help="list the bundled configs")
    i.set_defaults(func=cmd_info)
    pr = sub.add_parser("profile", help="parameters, MACs, steps/s, videos/s, peak memory and the "
                                         "time split of a training step and an evaluation pass")
    _add_config_args(pr, default="thumos14")
    pr.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    pr.add_argument("--videos", type=int, default=0, help="evaluate only the first n test videos (0: all 210)")
    pr.add_argument("--checkpoint", help="profile a trained model (its proposals are realistic)")
    pr.add_argument("--json", help="also write the report here")
    pr.set_defaults(func=cmd_profile)

    from .ablate import add_ablate_parser
    from .plot import add_plot_parser
    add_ablate_parser(sub)   # case-fast ablate (case_fast/ablate.py)
    add_plot_parser(sub)     # case-fast plot (case_fast/plot.py)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; `case-fast train` with the same --out resumes from the last checkpoint",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        if os.environ.get("CASE_FAST_DEBUG"):
            raise
        print(f"case-fast {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
