"""AICL (AAAI 2023) as released in the CASE authors' OpenWTAL (``shared/AICL.md``, cited as AICL §N):
the network, its snippet mining and contrastive loss, its losses, its localisation score and video
scores. Selected by ``model.baseline=aicl`` (bundled config ``aicl``); the step
(``step.case_losses``) and the inference (``inference.forward_videos``) are the package's one path.

With ``train.use_scc`` the CASE head (``case_head.CaseHead``, module ``head``) attaches to AICL's
per-stream attention embeddings E_r, E_f and attentions P_r, P_f and to its Q^A; its P^T terms join
the localisation score as in CASE (docs/method.md, "AICL + CASE").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from ..method.case_head import CaseHead, CaseSettings
from ..method.losses import gce_loss
from ..method.pseudo_labels import attention_pseudo_labels
from ..runtime import no_timer
from .result import BaselineLosses

# the released loss weights (AICL §6) and contrast temperature (AICL §4)
W_MODALITY, W_CONTRAST, W_ACTION = 5.0, 0.01, 0.1
NCE_TEMPERATURE = 0.1
MINING_DIVISOR = 20          # k_C = k_I = T // 20 (AICL §3)

# (weight, bias) state-dict names in the released creation order (AICL §2)
INIT_ORDER: Tuple[Tuple[str, Optional[str]], ...] = (
    ("base_module.0.weight", "base_module.0.bias"), ("cls.0.weight", "cls.0.bias"),
    ("action_module_rgb.0.weight", "action_module_rgb.0.bias"), ("cls_rgb.weight", "cls_rgb.bias"),
    ("action_module_flow.0.weight", "action_module_flow.0.bias"),
    ("cls_flow.weight", "cls_flow.bias"))


@dataclass
class AiclOutput:
    cas: torch.Tensor            # (B, T, G) CAS logits
    att_flow: torch.Tensor       # (B, T) P_f
    att_rgb: torch.Tensor        # (B, T) P_r
    embedding: torch.Tensor      # (B, T, H) E of the class branch (all channels)
    emb_rgb: torch.Tensor        # (B, T, H) E_r
    emb_flow: torch.Tensor       # (B, T, H) E_f
    cluster_logits: Optional[Dict[str, torch.Tensor]] = None   # CASE head: (B, T, K) per stream


class AiclModel(nn.Module):
    """AICL's network (AICL §2), modules named and created as released (state-dict names without
    the released ``actionness_module.`` prefix). The RGB/flow split is at ``stream_dim`` (1024 as
    released). ``case_head``: the CASE head on (E_r, P_r) and (E_f, P_f)."""

    def __init__(self, cfg, case_head: bool = False):
        super().__init__()
        m = cfg.model
        d, h, g = m.stream_dim, m.hidden_dim, m.num_classes
        self.cfg = m
        self.base_module = nn.Sequential(nn.Conv1d(2 * d, h, 3, padding=1), nn.ReLU())
        self.cls = nn.Sequential(nn.Conv1d(h, g, 1))
        self.action_module_rgb = nn.Sequential(nn.Conv1d(d, h, 3, padding=1), nn.ReLU())
        self.cls_rgb = nn.Conv1d(h, 1, 1)
        self.action_module_flow = nn.Sequential(nn.Conv1d(d, h, 3, padding=1), nn.ReLU())
        self.cls_flow = nn.Conv1d(h, 1, 1)
        self.head = (CaseHead({"rgb": h, "flow": h}, settings=CaseSettings.from_config(cfg))
                     if case_head else None)

    @property
    def init_order(self):
        extra = () if self.head is None else (("head.prototypes.rgb", None),
                                              ("head.prototypes.flow", None))
        return INIT_ORDER + extra

    def forward(self, x: torch.Tensor) -> AiclOutput:
        d = self.cfg.stream_dim
        if x.shape[-1] != 2 * d:
            raise ValueError(f"AiclModel expects features of width {2 * d} (RGB|flow), got {x.shape[-1]}")
        xt = x.permute(0, 2, 1)                                    # (B, 2D, T)
        emb = self.base_module(xt)                                 # (B, H, T)
        cas = self.cls(emb).permute(0, 2, 1)                       # (B, T, G)
        emb_r = self.action_module_rgb(xt[:, :d])
        emb_f = self.action_module_flow(xt[:, d:])
        att_r = torch.sigmoid(self.cls_rgb(emb_r)).squeeze(1)     # (B, T)
        att_f = torch.sigmoid(self.cls_flow(emb_f)).squeeze(1)
        out = AiclOutput(cas, att_f, att_r, emb.permute(0, 2, 1), emb_r.permute(0, 2, 1),
                         emb_f.permute(0, 2, 1))
        if self.head is not None:
            out.cluster_logits = self.head.cluster_logits({"rgb": out.emb_rgb, "flow": out.emb_flow})
        return out


def actionness(out: AiclOutput) -> Tuple[torch.Tensor, torch.Tensor]:
    """a1 = sigmoid(sum over classes of the CAS), a2 = (P_f + P_r) / 2, each (B, T) (AICL §2)."""
    a1 = torch.sigmoid(out.cas.sum(dim=-1))
    a2 = (out.att_flow + out.att_rgb) / 2
    return a1, a2


def above_median(a: torch.Tensor) -> torch.Tensor:
    """1 where a > NumPy's median of the video (strictly), float (B, T) (AICL §3): for even T the
    median is the float32 sum of the two middle values, halved."""
    v = a.detach().sort(dim=1).values
    t = v.shape[1]
    med = v[:, t // 2] if t % 2 else (v[:, t // 2 - 1] + v[:, t // 2]) / 2
    return (a.detach() > med[:, None]).to(a.dtype)


def mining_scores(a1: torch.Tensor, a2: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The masked selection scores of the four sets CA, CB, IA, IB (AICL §3), all from a1."""
    a1 = a1.detach()
    s = above_median(a1) + above_median(a2)
    top = a1.max(dim=1, keepdim=True).values - a1
    cons_a, cons_b, incons = (s == 2).to(a1.dtype), (s == 0).to(a1.dtype), (s == 1).to(a1.dtype)
    return {"CA": a1 * cons_a, "CB": top * cons_b, "IA": a1 * incons, "IB": top * incons}


def pick(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The first k indices of a descending sort per video, (B, k)."""
    return scores.sort(dim=1, descending=True).indices[:, :k]


def gather(emb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, T, H) at (B, k) -> (B, k, H)."""
    return torch.gather(emb, 1, idx[..., None].expand(-1, -1, emb.shape[-1]))


def nce(q: torch.Tensor, k: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """InfoNCE of queries q (B, H) with keys k (B, H) against negatives (B, n, H), temperature 0.1,
    target 0, mean over B (AICL §4)."""
    q, k, neg = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(neg, dim=2)
    pos = torch.einsum("nc,nc->n", q, k)[:, None]
    negs = torch.einsum("nc,nkc->nk", q, neg)
    logits = torch.cat([pos, negs], dim=1) / NCE_TEMPERATURE
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def contrast_terms(emb: torch.Tensor, picks: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The four NCE terms of one embedding space, in the released call order IA, IB, CA, CB (4,)."""
    g = {n: gather(emb, i) for n, i in picks.items()}
    m = {n: v.mean(dim=1) for n, v in g.items()}
    return torch.stack([nce(m["IA"], m["CA"], g["CB"]), nce(m["IB"], m["CB"], g["CA"]),
                        nce(m["CA"], m["IA"], g["CB"]), nce(m["CB"], m["IB"], g["CA"])])


def video_loss(video_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AICL's L_V: the label divided by its sum, then 1e-10 added to every entry (AICL §6)."""
    target = labels / labels.sum(dim=1, keepdim=True) + 1e-10
    return -(target * F.log_softmax(video_logits, dim=1)).sum(dim=1).mean()


def mil_scores(out: AiclOutput) -> torch.Tensor:
    """S = (softmax(CAS) + (P_f + P_r)) / 3, (B, T, G): the top-k selector in training and the
    localisation score at test (AICL §5, §8)."""
    total, n = localization_sum(out, True)
    return total / n


def two_way_mse(a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return F.mse_loss(a, b), F.mse_loss(b, a)


def losses(out: AiclOutput, labels: torch.Tensor, cfg, backend: str, timer=no_timer) -> BaselineLosses:
    """AICL's total loss L_V + L_A + 5 L_M + 0.01 L_con + 0.1 L_AC, its terms and Q^A (AICL §3-§6)."""
    b, t, _ = out.cas.shape
    k = max(1, t // cfg.train.k_divisor)
    with timer("pooling"):
        # only S's top-k indices are used: no gradient flows through it
        video_logits, idx = ops.topk_mil_pool(mil_scores(out), out.cas, k, backend=backend)
    with timer("pseudo_labels"):
        q_a = attention_pseudo_labels(idx, labels, t)
        a1, a2 = actionness(out)
        k_sel = max(1, t // MINING_DIVISOR)
        picks = {n: pick(s, k_sel) for n, s in mining_scores(a1, a2).items()}
    with timer("losses"):
        l_video = video_loss(video_logits, labels)
        l_flow = gce_loss(out.att_flow, q_a, cfg.train.gce_q)
        l_rgb = gce_loss(out.att_rgb, q_a, cfg.train.gce_q)
        mse_m, mse_m2 = two_way_mse(out.att_flow, out.att_rgb)
        mse_a, mse_a2 = two_way_mse(a1, a2)
        l_modality = 0.5 * mse_m + 0.5 * mse_m2
        l_action = 0.5 * mse_a + 0.5 * mse_a2
        l_con = sum(contrast_terms(e, picks).sum() for e in (out.embedding, out.emb_rgb, out.emb_flow))
        loss = (l_video + (l_flow + l_rgb) + W_MODALITY * l_modality + W_CONTRAST * l_con
                + W_ACTION * l_action)
    parts = {"video": l_video, "att_flow": l_flow, "att_rgb": l_rgb, "contrast": l_con,
             "modality": l_modality, "action": l_action}
    return BaselineLosses(loss, parts, q_a, idx)


def localization_sum(out: AiclOutput, with_attention: bool) -> Tuple[torch.Tensor, int]:
    """(softmax(CAS) + (P_f + P_r), 3), or (softmax(CAS), 1) without the attention terms."""
    soft = torch.softmax(out.cas, dim=-1)
    if not with_attention:
        return soft, 1
    return soft + (out.att_flow + out.att_rgb)[..., None], 3


def video_scores(out: AiclOutput, cas: torch.Tensor, k: int) -> torch.Tensor:
    """softmax over classes of the mean raw CAS at the top-k of the localisation score (AICL §8)."""
    pooled, _ = ops.topk_mil_pool(cas, out.cas, k)
    return torch.softmax(pooled, dim=-1)


def head_inputs(out: AiclOutput):
    """(cluster logits, embeddings, attentions) per stream, RGB first (the fusion order)."""
    if out.cluster_logits is None:
        raise ValueError("AICL was built without the CASE head (train.use_scc=false): no cluster "
                         "logits for SCC or for P^T at test (use infer.use_cat=false)")
    return (out.cluster_logits, {"rgb": out.emb_rgb, "flow": out.emb_flow},
            {"rgb": out.att_rgb, "flow": out.att_flow})
