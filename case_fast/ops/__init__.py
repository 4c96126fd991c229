"""case_fast.ops: the method's numerical building blocks, usable from any WTAL codebase.

    from case_fast.ops import sinkhorn, sinkhorn_rank_prior, topk_mil_pool, temporal_nms, generate_proposals

One file per op, the op and its reference side by side: ``sinkhorn_knopp.py`` (Sinkhorn and the
SCC rank prior), ``topk_pool.py``, ``nms.py``, ``proposals.py`` (OIC proposals). ``_backend.py``
holds the backend words, ``_extension.py`` the loader of the compiled extension (whose AP ops
serve :mod:`case_fast.evaluation.compiled_ap`).

Each op has two implementations: the plain PyTorch/NumPy reference in this package (its
executable definition) and a fast one (a Triton kernel in case_fast.kernels for CUDA tensors; the
compiled extension case_fast._C for NMS and proposals). ``backend=`` picks, with the same words for every op:
'auto' (default: fast when available for these inputs, else the reference), 'reference', 'fast'
(an error when it is not available). Nothing global is kept.
"""
from __future__ import annotations

from ._backend import BACKENDS
from ._extension import available as extension_available
from .nms import NMS_METHODS, nms_reference, temporal_nms
from .proposals import generate_proposals, generate_proposals_reference
from .sinkhorn_knopp import (prior_rank, rank_prior, sinkhorn, sinkhorn_rank_prior,
                             sinkhorn_rank_prior_reference, sinkhorn_reference)
from .topk_pool import topk_indices_reference, topk_mil_pool, topk_mil_pool_reference

__all__ = ["sinkhorn", "sinkhorn_rank_prior", "topk_mil_pool", "prior_rank", "rank_prior",
           "sinkhorn_reference", "sinkhorn_rank_prior_reference", "topk_mil_pool_reference",
           "topk_indices_reference", "temporal_nms", "nms_reference", "NMS_METHODS",
           "generate_proposals", "generate_proposals_reference", "extension_available", "BACKENDS"]
