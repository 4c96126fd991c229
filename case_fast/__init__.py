"""case-fast: fast, faithful CASE (ICCV 2023) for weakly-supervised temporal action localization.

The public API (each name is loaded on first use, so ``import case_fast`` stays cheap)::

    from case_fast import load_config, load_datasets, train, load_checkpoint, detect, evaluate
    from case_fast import CaseHead          # CASE as a head for any WTAL model (method/case_head.py)
    from case_fast.ops import sinkhorn, sinkhorn_rank_prior, topk_mil_pool, temporal_nms, ...

The package by layer: ``method/`` (network, losses, pseudo-labels, the step's objective),
``training/`` (the loop and a run's files), ``inference/``, ``evaluation/`` (the metric),
``data/``, ``ops/`` (the numerical building blocks, reference and fast), ``config/``,
``experiments/`` (ablate, profile, plot), ``cli/``; ``console.py`` (what is printed),
``files.py`` (safe writes), ``strict_json.py``, ``environment.py`` and ``runtime.py`` (device,
seeding) serve them all.
"""
import importlib

__version__ = "0.1.0"

_API = {
    "Config": "case_fast.config.schema", "ConfigError": "case_fast.config.values",
    "load_config": "case_fast.config.loading",
    "load_datasets": "case_fast.data.load", "DataError": "case_fast.data.annotations",
    "CaseModel": "case_fast.method.model",
    "CaseHead": "case_fast.method.case_head", "CaseSettings": "case_fast.method.case_head",
    "train": "case_fast.training.trainer", "load_checkpoint": "case_fast.training.checkpoint",
    "detect": "case_fast.inference.detect",
    "evaluate": "case_fast.evaluation.metric", "GroundTruth": "case_fast.evaluation.ground_truth",
    "Detections": "case_fast.evaluation.results",
}
__all__ = sorted(_API) + ["ops"]


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name == "ops":
        return importlib.import_module("case_fast.ops")
    raise AttributeError(f"module 'case_fast' has no attribute {name!r}")
