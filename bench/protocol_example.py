"""The README's example of one results file under every protocol: predictions made from the
THUMOS14 test ground truth (W-TALC layout, 212 videos), perturbed, written as a results JSON.

    python bench/protocol_example.py ANNOTATION_DIR OUT.json [--seed 0]
    case-fast eval OUT.json --gt ANNOTATION_DIR --protocol all

Per ground-truth segment (seeded): three predictions whose boundaries move by -3..+3 snippets
(written as snippets * 16 / 25 s, as the released pipelines' outputs convert), one in free
seconds (boundaries + N(0, 1.5) s), one of 1 snippet inside it; 15 % of all take another class;
scores uniform, rounded to 2 decimals (ties), lower for the free and the short ones.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def perturbed_predictions(gt, seed: int = 0) -> dict:
    r = np.random.default_rng(seed)
    snip = 16 / 25
    g = np.round(gt.segment / snip)
    rows = []  # (video, class, score, start, end)
    for i in range(len(gt.label)):
        v, c = gt.video[i], int(gt.label[i])
        for _ in range(3):
            a, b = np.sort(np.maximum(g[i] + r.integers(-3, 4, 2), 0))
            rows.append((v, c, r.random(), a * snip, max(b, a + 1) * snip))
        s, e = np.sort(np.maximum(gt.segment[i] + r.normal(0, 1.5, 2), 0))
        rows.append((v, c, 0.8 * r.random(), s, max(e, s + snip)))
        k = g[i, 0] + int(r.integers(0, max(1, g[i, 1] - g[i, 0])))
        rows.append((v, c, 0.5 * r.random(), k * snip, (k + 1) * snip))
    out = {}
    for v, c, sc, s, e in rows:
        if r.random() < 0.15:
            c = int(r.integers(0, gt.n_classes))
        out.setdefault(v, []).append({"label": gt.class_names[c], "score": round(float(sc), 2),
                                      "segment": [float(s), float(e)]})
    return {"version": "perturbed ground truth", "results": out, "external_data": {}}


def main() -> None:
    from case_fast.evaluation.ground_truth import ground_truth_from_wtalc

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("annotations")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    res = perturbed_predictions(ground_truth_from_wtalc(a.annotations), a.seed)
    with open(a.out, "w") as f:
        json.dump(res, f)
    print(f"{sum(len(x) for x in res['results'].values())} predictions on {len(res['results'])} videos -> {a.out}")


if __name__ == "__main__":
    main()
