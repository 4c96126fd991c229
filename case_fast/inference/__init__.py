"""Inference (method.md §5): from a trained model to detections.

    detect.py  T-CAS and video-level scores, per-video localisation (proposals, NMS), results JSON

Proposals and NMS are ops (:mod:`case_fast.ops`); scoring detections is :mod:`case_fast.evaluation`.
"""
