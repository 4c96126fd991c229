"""The compiled extension ``case_fast._C``: its one loader, and the fake kernels of its ops.

``import case_fast._C`` registers ``torch.ops.case_fast.{temporal_nms, oic_proposals, ap_group,
ap_classes, ambiguous_keep}`` (schemas in csrc/register.cpp, CPU kernels in csrc/cpu/, the CUDA
kernel of temporal_nms in csrc/cuda/). Every caller (case_fast.ops.nms, case_fast.ops.proposals,
case_fast.evaluation.metric) asks :func:`available` before using them. The fake (meta) kernels below
give each op's output shapes without computing it (torch.compile, FakeTensor, opcheck); outputs
whose length depends on the data get a dynamic size.
"""
from __future__ import annotations

import warnings

import torch

OPS = ("temporal_nms", "oic_proposals", "ap_group", "ap_classes", "ambiguous_keep")
_state = {"loaded": None}


def available() -> bool:
    """True when ``case_fast._C`` is built and registers all of :data:`OPS` (loaded once; when it
    is not, a warning says so once and the callers' 'auto' backends run the references)."""
    if _state["loaded"] is None:
        try:
            import case_fast._C  # noqa: F401  (registers torch.ops.case_fast.*)
            for name in OPS:
                getattr(torch.ops.case_fast, name)
            _register_fakes()
            _state["loaded"] = True
        except (ImportError, AttributeError, RuntimeError) as exc:
            _state["loaded"] = False
            warnings.warn(f"case_fast._C is not usable ({exc}): the slow reference "
                          "implementations run instead; rebuild with `pip install "
                          "--no-build-isolation -e .`", RuntimeWarning, stacklevel=2)
    return _state["loaded"]


def cuda_available() -> bool:
    """True when the extension was built with its CUDA kernel (a CUDA torch and nvcc)."""
    return available() and bool(torch.ops.case_fast.has_cuda())


def unavailable_error(op: str) -> RuntimeError:
    """The error of backend='fast' without the extension."""
    return RuntimeError(f"{op}: backend='fast' needs the compiled extension case_fast._C; "
                        "reinstall with `pip install --no-build-isolation -e .` (a C++ compiler "
                        "and torch are needed at build time)")


def _dynamic_size() -> int:
    return torch.library.get_ctx().new_dynamic_size()


def _register_fakes() -> None:
    f64, i64 = torch.float64, torch.int64

    @torch.library.register_fake("case_fast::temporal_nms")
    def _nms(segments, scores, groups=None, method="one_pass_decay", iou_threshold=0.4,
             alpha=0.35, min_score=1e-3, plus_one=None, order=None):
        k = segments.shape[0] if method == "one_pass_decay" else _dynamic_size()
        return segments.new_empty(k, dtype=i64), segments.new_empty(k, dtype=f64)

    @torch.library.register_fake("case_fast::oic_proposals")
    def _oic(cas, class_ids, video_scores, thresholds, scale, t_factor, oic_lambda, oic_gamma,
             drop_zero_run):
        return (cas.new_empty((_dynamic_size(), 4), dtype=f64),
                cas.new_empty(thresholds.shape, dtype=i64))

    @torch.library.register_fake("case_fast::ap_group")
    def _group(label, score, seg, n_cls):
        n = label.shape[0]
        return (label.new_empty(()), label.new_empty(n_cls + 1), label.new_empty(n),
                score.new_empty(n))

    @torch.library.register_fake("case_fast::ap_classes")
    def _classes(seg, video, video_lut, class_order, class_offsets, classes, rank, gt_seg,
                 gt_offsets, thresholds, tie_pos=None, tie_offsets=None, tie_gt=None, variant=0):
        return (seg.new_empty((classes.shape[0], thresholds.shape[0])),
                classes.new_empty(_dynamic_size()))

    @torch.library.register_fake("case_fast::ambiguous_keep")
    def _ambiguous(seg, video, amb_seg, amb_offsets):
        return seg.new_empty(seg.shape[0], dtype=torch.bool)
