"""The baselines the CASE head (``case_head``) attaches to, chosen by ``model.baseline``:

* ``case``: CASE's own two-stream network (``two_stream``; network ``model.CaseModel``);
* ``aicl``: AICL as released in OpenWTAL (``aicl``).

Each baseline module gives the same functions, which the one training step (``step``) and the one
inference path (``inference``) call: ``losses`` (its loss, terms and Q^A), ``localization_sum``,
``video_scores`` and ``head_inputs`` (per stream cluster logits, embeddings, attentions)."""
from __future__ import annotations

from . import aicl, two_stream

BASELINES = {"case": two_stream, "aicl": aicl}


def baseline_of(cfg):
    """The module of ``cfg.model.baseline``."""
    return BASELINES[cfg.model.baseline]


def build_model(cfg):
    """The network of ``cfg`` (PyTorch's default initialisation; ``init_order`` gives the released
    draw order for ``released_init.draw_initial_weights``). AICL carries the CASE head when
    ``train.use_scc`` is on; CASE's network always has its prototypes."""
    if cfg.model.baseline == "aicl":
        return aicl.AiclModel(cfg, case_head=cfg.train.use_scc)
    from ..method.model import CaseModel
    return CaseModel(cfg.model)


def init_order(model):
    """(weight, bias) names of ``model``'s parameters in the released draw order."""
    from ..method.released_init import CASE_ORDER
    return getattr(model, "init_order", CASE_ORDER)
