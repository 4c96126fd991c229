"""Benchmark: detection mAP on a THUMOS14-sized synthetic results set: the reference backend vs
the compiled ops (backend='fast', torch.ops.case_fast.ap_group / ap_classes), side by side.

Run:  pytest bench/bench_eval.py --benchmark-only --benchmark-group-by=group
      python bench/bench_eval.py     # quick: medians (CPU time) and ratios without pytest-benchmark
      python bench/bench_eval.py --paired [N]   # N full-size reference/C++ pairs, interleaved
      python bench/bench_eval.py --write DIR    # DIR/results.json and DIR/gt.json, for
          case-fast eval DIR/results.json --gt DIR/gt.json   (the whole command on this file)

Synthetic data (deterministic, seed 0): 210 videos of 60-600 s; each video has 1 action class
(25 %: 2), 1-60 ground-truth segments per class (~16 per video, ~3.4k in all, like THUMOS14
test's 3311); ~2000 predictions per video (~420k in all): CASE-like nested proposals around each
ground-truth segment (jittered start/end at several "thresholds") on the video's classes, random
segments on its classes and on 0-2 other classes; scores rounded to 3 decimals (many ties).

The reference backend is a per-prediction Python loop; it is benchmarked once (rounds=1) at full
size (group eval-thumos-full, the direct ratio) and once on a documented fraction: the predictions of the first
``REF_VIDEOS`` = 21 videos (1/10 of the videos, so ~1/10 of the predictions), evaluated against
the full ground truth; the C++ path is timed on that same subset as well (same
group) and on the full set. The full-set detections carry ``video_index``/``video_names`` (as
``Detections.from_proposals`` and ``read_results`` fill them); "C++ plain" is the same set
without them (video names compared neighbour by neighbour). The reference's cost is linear in the number of predictions (per prediction: a
tIoU against its video's few GT of its class and a short loop per threshold), so
reference_full ~= reference_subset * n_full / n_subset; the test prints that estimate and the
extrapolated ratio, and asserts fast == reference APs bit for bit on the subset.
"""

from __future__ import annotations

import numpy as np
import pytest

import time

from case_fast.evaluation.metric import THUMOS_TIOU, evaluate
from case_fast.evaluation.results import Detections
from case_fast.evaluation.ground_truth import GroundTruth
from case_fast.ops import extension_available

N_VIDEOS = 210
N_CLASSES = 20
PRED_PER_VIDEO = 2000
REF_VIDEOS = 21  # reference subset: predictions of the first 21 of 210 videos


def make_thumos_like(seed: int = 0):
    rng = np.random.default_rng(seed)
    videos = [f"video_test_{i:07d}" for i in range(N_VIDEOS)]
    names = [f"class{i:02d}" for i in range(N_CLASSES)]
    g_v, g_l, g_s = [], [], []
    d_v, d_l, d_sc, d_s = [], [], [], []
    for vi in range(N_VIDEOS):
        dur = rng.uniform(60, 600)
        classes = rng.choice(N_CLASSES, size=1 + (rng.random() < 0.25), replace=False)
        gts = []
        for c in classes:
            k = int(np.clip(rng.geometric(1 / 12), 1, 60))
            ln = rng.uniform(1, 12, k)
            st = np.sort(rng.uniform(0, dur - 12, k))
            for s, l in zip(st, ln):
                gts.append((c, s, s + l))
        for c, s, e in gts:
            g_v.append(vi), g_l.append(c), g_s.append((round(s, 1), round(e, 1)))
        # predictions: ~70% around GT, rest random on the video's classes and a few others
        n_near = int(PRED_PER_VIDEO * 0.7)
        pick = rng.integers(0, len(gts), n_near)
        gc = np.array([g[0] for g in gts])[pick]
        gs = np.array([g[1] for g in gts])[pick]
        ge = np.array([g[2] for g in gts])[pick]
        L = ge - gs
        ps = gs + rng.normal(0, 0.3, n_near) * L
        pe = ge + rng.normal(0, 0.3, n_near) * L
        n_rand = PRED_PER_VIDEO - n_near
        others = rng.choice(N_CLASSES, size=int(rng.integers(0, 3)), replace=False)
        rc = rng.choice(np.concatenate([classes, others]), n_rand)
        rs = rng.uniform(0, dur, n_rand)
        re_ = rs + rng.exponential(6, n_rand)
        s = np.concatenate([ps, rs])
        e = np.concatenate([pe, re_])
        s, e = np.minimum(s, e), np.maximum(s, e)
        d_v.append(np.full(PRED_PER_VIDEO, vi))
        d_l.append(np.concatenate([gc, rc]))
        d_sc.append(np.round(rng.beta(2, 5, PRED_PER_VIDEO), 3))
        d_s.append(np.round(np.stack([s, e], 1), 2))
    vid_arr = np.array(videos, dtype=object)
    gt = GroundTruth(vid_arr[np.array(g_v)], np.array(g_l), np.array(g_s), videos, names)
    codes = np.concatenate(d_v)
    det = Detections(vid_arr[codes], np.concatenate(d_l), np.concatenate(d_sc), np.concatenate(d_s),
                     video_index=codes, video_names=videos)
    return det, gt


def plain(det: Detections) -> Detections:
    """The same detections without video_index / video_names."""
    return Detections(det.video, det.label, det.score, det.segment)


def subset(det: Detections, n_videos: int) -> Detections:
    keep = np.isin(det.video, np.array(sorted(set(det.video.tolist()))[:n_videos], dtype=object))
    return Detections(det.video[keep], det.label[keep], det.score[keep], det.segment[keep])


@pytest.fixture(scope="module")
def data():
    det, gt = make_thumos_like(0)
    return det, gt, subset(det, REF_VIDEOS)


_REF = {}


@pytest.mark.benchmark(group="eval-thumos-subset-1/10")
def test_reference_subset(benchmark, data):
    det, gt, sub = data
    out = benchmark.pedantic(
        lambda: evaluate(sub, gt, THUMOS_TIOU, backend="reference"), rounds=1, iterations=1
    )
    _REF["ap"] = out["ap"]
    _REF["seconds"] = benchmark.stats.stats.median
    print(f"\nsubset: {len(sub)} of {len(det)} predictions; reference {_REF['seconds']:.2f} s; "
          f"extrapolated full-size reference {_REF['seconds'] * len(det) / len(sub):.1f} s")


needs_cpp = pytest.mark.skipif(not extension_available(), reason="case_fast._C without the AP ops")


def _ratio_msg(name, med):
    if "seconds" not in _REF:
        return ""
    return f"\nsubset ratio reference/{name}: {_REF['seconds'] / med:.0f}x"


@pytest.mark.benchmark(group="eval-thumos-subset-1/10")
@needs_cpp
def test_subset(benchmark, data):
    det, gt, sub = data
    out = benchmark(lambda: evaluate(sub, gt, THUMOS_TIOU, backend="fast"))
    if "ap" in _REF:
        assert np.array_equal(out["ap"], _REF["ap"])
    print(_ratio_msg("C++", benchmark.stats.stats.median))


def _full(benchmark, data, backend, codes=True):
    det, gt, sub = data
    d = det if codes else plain(det)
    out = benchmark(lambda: evaluate(d, gt, THUMOS_TIOU, backend=backend))
    med = benchmark.stats.stats.median
    msg = f"\nfull: {len(det)} predictions, {len(gt.label)} GT; {backend} median {med * 1e3:.1f} ms"
    if "seconds" in _REF:
        est = _REF["seconds"] * len(det) / len(sub)
        msg += f"; extrapolated reference {est:.1f} s -> ratio {est / med:.0f}x"
    print(msg)
    return out


@pytest.mark.benchmark(group="eval-thumos-full")
def test_reference_full(benchmark, data):
    """The reference on the whole file, once (7-12 s here): the direct side-by-side ratio."""
    det, gt, sub = data
    out = benchmark.pedantic(lambda: evaluate(det, gt, THUMOS_TIOU, backend="reference"),
                             rounds=1, iterations=1)
    _REF["ap_full"] = out["ap"]


@needs_cpp
@pytest.mark.benchmark(group="eval-thumos-full")
def test_cpp_full(benchmark, data):
    out = _full(benchmark, data, "fast")
    ref = _REF.get("ap_full")
    if ref is None:
        ref = evaluate(data[0], data[1], THUMOS_TIOU, backend="reference")["ap"]
    assert np.array_equal(out["ap"], ref)


@needs_cpp
@pytest.mark.benchmark(group="eval-thumos-full")
def test_cpp_full_plain(benchmark, data):
    _full(benchmark, data, "fast", codes=False)


def _paired_main(pairs: int) -> None:
    """Full-size reference and C++ evaluation interleaved (wall time): each reference run is
    followed by 5 C++ runs; prints the medians and the median of the per-pair ratios."""
    from _paired import paired_ratio

    det, gt = make_thumos_like(0)
    ref_ap = evaluate(det, gt, THUMOS_TIOU, backend="reference")["ap"]
    assert np.array_equal(evaluate(det, gt, THUMOS_TIOU, backend="fast")["ap"], ref_ap)
    r, f, ratio = paired_ratio(lambda: evaluate(det, gt, THUMOS_TIOU, backend="reference"),
                               lambda: evaluate(det, gt, THUMOS_TIOU, backend="fast"),
                               pairs=pairs, fast_reps=5, warmup=0)
    print(f"{len(det)} predictions, {pairs} interleaved pairs (wall): reference {r:.2f} s, "
          f"C++ {f * 1e3:.1f} ms, paired ratio {ratio:.0f}x (identical APs)")


def _quick_main() -> None:
    """CPU-time medians: the reference on the 1/10 subset (extrapolated), C++ in full."""
    def med(fn, rounds):
        ts = []
        for _ in range(rounds):
            t0 = time.process_time()
            fn()
            ts.append(time.process_time() - t0)
        return float(np.median(ts))

    det, gt = make_thumos_like(0)
    sub = subset(det, REF_VIDEOS)
    ref_ap = evaluate(sub, gt, THUMOS_TIOU, backend="reference")["ap"]
    assert np.array_equal(evaluate(sub, gt, THUMOS_TIOU, backend="fast")["ap"], ref_ap)
    r_sub = med(lambda: evaluate(sub, gt, THUMOS_TIOU, backend="reference"), 3)
    r_full = r_sub * len(det) / len(sub)
    c_full = med(lambda: evaluate(det, gt, THUMOS_TIOU, backend="fast"), 15)
    pl = plain(det)
    c_plain = med(lambda: evaluate(pl, gt, THUMOS_TIOU, backend="fast"), 15)
    print(f"{len(det)} predictions; CPU-time medians: reference {r_sub:.2f} s on {len(sub)} "
          f"-> {r_full:.1f} s extrapolated; "
          f"C++ {c_full * 1e3:.1f} ms ({r_full / c_full:.0f}x); C++ without video_index "
          f"{c_plain * 1e3:.1f} ms ({r_full / c_plain:.0f}x)")


def _write_files(folder: str) -> None:
    """The synthetic set as an ActivityNet-style results file and ground-truth database
    (predicted starts before 0 s clipped to 0, as a results file must not hold them)."""
    import json
    import os

    det, gt = make_thumos_like(0)
    os.makedirs(folder, exist_ok=True)
    db = {v: {"subset": "test", "annotations": []} for v in gt.videos}
    for v, c, (s, e) in zip(gt.video, gt.label, gt.segment):
        db[v]["annotations"].append({"label": gt.class_names[c], "segment": [float(s), float(e)]})
    res = {v: [] for v in gt.videos}
    for v, c, sc, (s, e) in zip(det.video, det.label, det.score, det.segment):
        res[v].append({"label": gt.class_names[c], "score": float(sc),
                       "segment": [max(0.0, float(s)), max(0.0, float(e))]})
    with open(os.path.join(folder, "gt.json"), "w") as f:
        json.dump({"database": db}, f)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"version": "bench_eval", "results": res, "external_data": {}}, f)
    print(f"{len(det.score)} predictions -> {folder}/results.json, ground truth {folder}/gt.json")


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        _write_files(sys.argv[sys.argv.index("--write") + 1])
    elif "--paired" in sys.argv:  # --paired [N]: N interleaved full-size pairs (default 3, ~10 s each)
        _args = sys.argv[sys.argv.index("--paired") + 1:]
        _paired_main(int(_args[0]) if _args else 3)
    else:
        _quick_main()
