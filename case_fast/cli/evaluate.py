"""``case-fast eval``: any method's results file scored against ground truth under one or more
protocols (the embedded THUMOS14 annotations, a gt.json / ActivityNet JSON, or a W-TALC folder; a
case-fast results file on its own run's ground truth)."""
from __future__ import annotations

import os
import sys
from typing import Optional

from .common import UsageError, refuse_overwriting, say_for, to_stdout




def _beside(path: str, name: str):
    p = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return p if os.path.isfile(p) else None


def _ground_truth(args):
    """(the GroundTruth ``case-fast eval`` scores against (see the --gt help), the ambiguous-segment
    file used or None)."""
    from ..evaluation import ground_truth as G
    from ..data import annotations as A
    from ..data.wtalc_annotations import find_wtalc_annotations
    from ..data.synthetic import assets_dir

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
    from ..evaluation import metric as ev

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

    from ..data.annotations import DataError
    from ..evaluation.results import Detections

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
    from ..evaluation import metric as ev
    from ..evaluation import protocols as P
    from ..data.annotations import DataError, load_json
    from ..training.periodic_eval import evaluation_protocol
    from ..evaluation.ground_truth import ground_truth_of_run
    from ..evaluation.results import detections_from_results
    from ..files import check_writable_path

    tiou = _parse_tiou(args.tiou)
    say = say_for(args.json)
    if args.json and not to_stdout(args.json):
        check_writable_path(args.json, "--json")
        refuse_overwriting(args.json, "--json", [("results file", args.results), ("--gt", args.gt),
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
        from ..files import save_json
        save_json(_metrics_json(first) if len(protos) == 1 else
                  {"protocols": {k: _metrics_json(m) for k, m in scored.items()}}, args.json)
    return 0
