"""Evaluation during training: the test-set evaluator, the logged summary of one evaluation and the
three test numbers of a finished run (train.select)."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..config.schema import Config
from ..data.sampling import sample_test_features
from ..evaluation.metric import evaluate
from ..evaluation.ground_truth import GroundTruth
from ..evaluation.protocols import get as get_protocol
from ..inference.detect import forward_videos, localize_video
from ..evaluation.results import Detections


def ground_truth_of(dataset) -> GroundTruth:
    gt = dataset.ground_truth()
    return GroundTruth(**gt)


class Evaluator:
    """Evaluates a model on the test split; keeps the sampled test features on the device."""

    def __init__(self, dataset, cfg: Config, device, test: bool = True):
        """``test``: the test split (False: a validation hold-out of training videos, which has no
        ambiguous segments and is scored by the same protocol's rules)."""
        self.dataset, self.cfg, self.device = dataset, cfg, device
        t = cfg.data.num_segments
        feats = sample_test_features(dataset, range(len(dataset)), t) if len(dataset) else None
        self.feats = None if feats is None else torch.from_numpy(feats).to(device)
        self.gt = ground_truth_of(dataset)
        self.protocol = evaluation_protocol(cfg)
        if test and get_protocol(self.protocol).ambiguous == "required" and not self.gt.ambiguous:
            raise ValueError(f"data.protocol={cfg.data.protocol} needs Ambiguous_test.txt in the W-TALC "
                             "annotation folder (the released W-TALC code fails without it)")

    def __call__(self, model, q_c, pg=None):
        """``pg``: a data-parallel job's process group: each rank runs the forward and localisation
        of a contiguous share of the videos, the proposals are gathered, and every rank scores them
        (the same numbers everywhere)."""
        n = len(self.dataset)
        lo, hi = (0, n) if pg is None else (n * pg.rank // pg.world, n * (pg.rank + 1) // pg.world)
        was = model.training
        model.eval()
        try:
            feats = self.feats[lo:hi] if self.feats is not None else None
            if feats is None or feats.shape[0] == 0:
                cas, scores = np.zeros((0,)), np.zeros((0,))
            else:
                cas, scores = forward_videos(model, feats, q_c, self.cfg)
        finally:
            model.train(was)
        props = {self.dataset.videos[i]: localize_video(cas[i - lo], scores[i - lo],
                                                        self.dataset.num_snippets[i], self.cfg)
                 for i in range(lo, hi)}
        if pg is not None:
            merged = {}
            for part in pg.gather_objects(props):
                merged.update(part)
            props = {v: merged[v] for v in self.dataset.videos}
        det = proposals_to_detections(props)
        metrics = evaluate(det, self.gt, tuple(self.cfg.infer.tiou), protocol=self.protocol)
        metrics["n_pred"] = np.bincount(det.label, minlength=len(self.gt.class_names))
        metrics["n_gt"] = np.bincount(self.gt.label, minlength=len(self.gt.class_names))
        return metrics, props


def evaluation_protocol(cfg: Config) -> str:
    """The protocol of ``evaluate`` for data.protocol ('all', every video of the annotation file,
    is scored by basnet210's rules)."""
    return "basnet210" if cfg.data.protocol == "all" else cfg.data.protocol


def proposals_to_detections(props: Dict[str, np.ndarray]) -> Detections:
    return Detections.from_proposals(props)


def summarize(metrics: dict) -> dict:
    """The logged evaluation: mAP per tIoU and averages; with the trainer's Evaluator also the
    AP of each class (mean over tIoU) and the classes with ground truth never predicted."""
    out = {"avg": float(metrics["avg"]), "map": [float(x) for x in metrics["map"]],
           "tiou": [float(x) for x in metrics["tiou"]]}
    for key in ("avg_0.1:0.5", "avg_0.3:0.7"):
        if key in metrics:
            out[key] = float(metrics[key])
    if "n_pred" in metrics:
        names = metrics["class_names"]
        out["class_ap"] = {c: round(float(a), 6) for c, a in zip(names, metrics["ap"].mean(axis=0))}
        out["never_predicted"] = [c for c, p, g in zip(names, metrics["n_pred"], metrics["n_gt"])
                                  if p == 0 and g > 0]
    return out


def never_predicted_warning(summ: dict, step: int) -> Optional[str]:
    """One line when classes with ground truth got no detection at all (a collapsed class)."""
    lost = summ.get("never_predicted") or []
    if not lost:
        return None
    return (f"warning: step {step}: {len(lost)} class(es) with ground truth never predicted "
            f"(AP 0): {', '.join(lost)}")


def _first_max(evals: List[dict], key: Callable[[dict], float]) -> dict:
    best = None
    for h in evals:
        if best is None or key(h) > key(best):
            best = h
    return best


def selection_summary(history: List[dict]) -> dict:
    """The three test numbers of a run from its evaluations: the best test mAP of the periodic
    evaluations with its step (the paper's protocol; optimistic, it selects on the test set), the
    test mAP at the step with the best val mAP (None without a val hold-out) and at the last
    evaluation. First step wins ties."""
    evals = [h for h in history if "eval" in h]
    if not evals:
        return {"test_best": None, "test_at_val": None, "test_at_last": None}

    def pick(h, **extra):
        e = h["eval"]
        out = {"step": h["step"], "avg": e["avg"], "map": e["map"], "tiou": e["tiou"]}
        out.update({k: e[k] for k in ("avg_0.1:0.5", "avg_0.3:0.7") if k in e})
        out.update(extra)
        return out

    # a non-periodic evaluation at the last step is a candidate only when there is no periodic one
    tb = _first_max([h for h in evals if h.get("periodic", True)] or evals, lambda h: h["eval"]["avg"])
    with_val = [h for h in evals if h.get("val") is not None]
    tv = _first_max(with_val, lambda h: h["val"]["avg"]) if with_val else None
    return {"test_best": pick(tb),
            "test_at_val": pick(tv, val_avg=tv["val"]["avg"]) if tv is not None else None,
            "test_at_last": pick(evals[-1])}
