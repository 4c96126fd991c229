"""CASE as a head for any WTAL model (method.md §3.3-§3.5, §5; paper Table 2).

The head needs, per stream s (any names, any number of streams), the embedding E_s (B, T, H_s)
with its gradient and the attention P^A_s (B, T), plus the batch's foreground pseudo-labels Q^A
(B, T) from the host model. It owns K prototype rows per stream and gives:

* training: the snippet-clustering loss L_S (SCC), the cluster-classification loss L_C (CCC) and
  the new Q^C (K, 2), with the released code's details: the prototypes overwritten in place by
  their unit rows before the cluster logits are taken, the (faithful) rank prior, Sinkhorn with 3
  iterations and epsilon 0.05 on cosines x 10, lambda_S = 1 and lambda_C = 0.3;
* test: P^T_s = softmax(cluster logits of s) @ Q^C[:, foreground], shape (B, T), per stream.

Streams are fused as CASE fuses its two: the mean of the streams' cluster logits and attentions
builds Q^S (one Sinkhorn over all B·T snippets), the mean of the streams' CCC logits builds Q^C.

Two forms. :class:`CaseHead` is an ``nn.Module`` owning the prototypes (put it in your model, give
its parameters to your optimizer). The functions (:func:`cluster_logits`, :func:`head_losses`,
:func:`foreground_scores`, :func:`normalize_prototypes_`) take the prototypes and Q^C as arguments,
for code that keeps its own state (CASE's own network keeps its prototypes in its streams).

Data-parallel: pass ``pg`` (a ``distributed.ProcessGroup``) when the batch is one rank's slice of
a global batch; the rank prior, the Sinkhorn and the CCC prototypes are then global
(``distributed.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import soft_cross_entropy
from .pseudo_labels import (ccc_marginal, ccc_pseudo_labels, cluster_fb_logits,
                            initial_cluster_labels, scc_pseudo_labels)
from ..runtime import no_timer

Streams = Mapping[str, torch.Tensor]
StreamsIn = Union[Streams, Sequence[torch.Tensor], torch.Tensor]


@dataclass
class CaseSettings:
    """The head's hyperparameters (defaults: the released CASE on THUMOS14)."""
    num_clusters: int = 16           # K
    temperature: float = 10.0        # cosine scale of every logit
    lambda_s: float = 1.0            # weight of L_S
    lambda_c: float = 0.3            # weight of L_C
    sigma: float = 10.0              # rank prior sigma
    sinkhorn_iters: int = 3
    sinkhorn_epsilon: float = 0.05
    mode: str = "faithful"           # rank prior: 'faithful' (argsort as rank) | 'paper'
    use_ccc: bool = True             # False: L_S only, Q^C is kept
    scc_labels: str = "ot_soft"      # 'ot_soft' | 'ot_hard' | 'soft' | 'hard' (paper Table 5)
    scc_prior: bool = True           # False: plain equipartition (Eq. 10)
    ccc_marginal: str = "empirical"  # 'empirical' (mean Q^A) | 'uniform' (Eq. 9)
    backend: str = "auto"            # ops backend of the Sinkhorn

    @classmethod
    def from_config(cls, cfg) -> "CaseSettings":
        """The settings of a case-fast :class:`~case_fast.config.schema.Config`."""
        tc = cfg.train
        return cls(num_clusters=cfg.model.num_clusters, temperature=cfg.model.temperature,
                   lambda_s=tc.lambda_s, lambda_c=tc.lambda_c, sigma=tc.prior_sigma,
                   sinkhorn_iters=tc.sinkhorn_iters, sinkhorn_epsilon=tc.sinkhorn_epsilon,
                   mode=tc.mode, use_ccc=tc.use_ccc, scc_labels=tc.scc_labels,
                   scc_prior=tc.scc_prior, ccc_marginal=tc.ccc_marginal, backend=tc.backend)


@dataclass
class HeadLosses:
    scc: torch.Tensor                # L_S, summed over streams
    ccc: torch.Tensor                # L_C, summed over streams (0 when CCC is off)
    q_c: torch.Tensor                # the new Q^C (K, 2), float32, no gradient
    q_s: torch.Tensor                # Q^S (B·T, K), no gradient
    lambda_s: float
    lambda_c: float

    @property
    def loss(self) -> torch.Tensor:
        """lambda_S L_S + lambda_C L_C: add it to the host model's loss."""
        return self.lambda_s * self.scc + self.lambda_c * self.ccc


@torch.no_grad()
def normalize_prototypes_(prototypes: torch.Tensor) -> None:
    """As released (method.md §2): the prototype parameter itself is overwritten by its unit rows,
    outside the graph; the logits then use it as a plain linear layer, so its gradient is a
    linear layer's at unit rows and the optimizer steps from unit rows."""
    prototypes.copy_(F.normalize(prototypes, dim=1))


def cluster_logits(embedding: torch.Tensor, prototypes: torch.Tensor, temperature: float = 10.0,
                   training: bool = True) -> torch.Tensor:
    """temperature * cos(E, prototype rows): (..., H) x (K, H) -> (..., K). Training: the
    prototypes are first normalised in place (:func:`normalize_prototypes_`); evaluation: they are
    normalised without being written back, so evaluating never changes the weights."""
    if training:
        normalize_prototypes_(prototypes)
        protos = prototypes
    else:
        protos = F.normalize(prototypes, dim=1)
    return temperature * F.linear(F.normalize(embedding, dim=-1), protos)


def fuse_streams(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Equal-weight mean of the streams, summed in stream order (two streams: 0.5 a + 0.5 b): the one
    way CASE fuses its streams (selection scores, video loss and scores, SCC and CCC inputs, P^T)."""
    w = 1.0 / len(parts)
    total = w * parts[0]
    for p in parts[1:]:
        total = total + w * p
    return total


def head_losses(logits: Streams, embeddings: Streams, attentions: Streams, q_a: torch.Tensor,
                q_c: torch.Tensor, settings: Optional[CaseSettings] = None, *, timer=no_timer,
                pg=None) -> HeadLosses:
    """SCC and CCC of one training batch (method.md §3.3-§3.5).

    ``logits``: per stream the cluster logits (B, T, K) (:func:`cluster_logits`);
    ``embeddings``: per stream E_s (B, T, H_s) with gradient; ``attentions``: per stream P^A_s
    (B, T); ``q_a``: Q^A (B, T) in {0, 1}; ``q_c``: the previous Q^C (K, 2). The three mappings
    have the same streams, fused in the order of ``logits``. ``timer(name)`` wraps the phases
    ('sinkhorn', 'losses', 'pseudo_labels'; ``case-fast profile``)."""
    st = settings or CaseSettings()
    streams = list(logits)
    if set(embeddings) != set(streams) or set(attentions) != set(streams):
        raise ValueError(f"head_losses: the streams differ: logits {streams}, embeddings "
                         f"{list(embeddings)}, attentions {list(attentions)}")
    b, t, k = logits[streams[0]].shape
    fused = fuse_streams([logits[s] for s in streams])
    att = fuse_streams([attentions[s] for s in streams])
    with timer("sinkhorn"):
        q_s = scc_pseudo_labels(fused.reshape(-1, k), att.reshape(-1), q_c, mode=st.mode,
                                sigma=st.sigma, n_iters=st.sinkhorn_iters,
                                epsilon=st.sinkhorn_epsilon, temperature=st.temperature,
                                use_prior=st.scc_prior, labels=st.scc_labels, backend=st.backend,
                                pg=pg)
    with timer("losses"):
        l_scc = sum(soft_cross_entropy(logits[s].reshape(-1, k), q_s) for s in streams)
    l_ccc, new_qc = l_scc.new_zeros(()), q_c
    if st.use_ccc:
        qa_flat = q_a.reshape(-1)
        with timer("pseudo_labels"):
            fb = {s: cluster_fb_logits(embeddings[s].reshape(b * t, -1), q_s, qa_flat,
                                       st.temperature, pg=pg) for s in streams}
            beta = ccc_marginal(qa_flat, st.ccc_marginal, pg=pg)
        with timer("sinkhorn"):
            new_qc = ccc_pseudo_labels(fuse_streams([fb[s] for s in streams]), beta,
                                       n_iters=st.sinkhorn_iters, epsilon=st.sinkhorn_epsilon,
                                       temperature=st.temperature, backend=st.backend)
        with timer("losses"):
            l_ccc = sum(soft_cross_entropy(fb[s], new_qc) for s in streams)
    return HeadLosses(l_scc, l_ccc, new_qc.detach().float(), q_s, st.lambda_s, st.lambda_c)


def foreground_scores(logits: Streams, q_c: torch.Tensor) -> Dict[str, torch.Tensor]:
    """P^T_s = softmax(cluster logits of s) @ Q^C[:, 0], shape (B, T), per stream (method.md §5)."""
    out = {}
    for s, lg in logits.items():
        out[s] = torch.softmax(lg, dim=-1) @ q_c[:, 0].to(lg.dtype)
    return out


class CaseHead(nn.Module):
    """CASE as a module: ``CaseHead({'rgb': 512, 'flow': 512})`` owns K prototype rows per stream
    (``prototypes.<stream>``, PyTorch's default Linear initialisation).

    * ``head(embeddings, attentions, q_a, q_c)`` (training) -> :class:`HeadLosses`: add
      ``.loss`` to your loss, keep ``.q_c`` for the next step (``.scc``, ``.ccc``: the two
      losses; ``.q_s``: Q^S);
    * ``head.foreground(embeddings, q_c)`` -> {stream: P^T (B, T)} (test time);
    * ``head.initial_q_c()``: Q^C before the first step (every entry 1/K).
    """

    def __init__(self, dims: Union[Mapping[str, int], Sequence[str]], hidden: Optional[int] = None,
                 settings: Optional[CaseSettings] = None, **kw):
        super().__init__()
        if not isinstance(dims, Mapping):
            if hidden is None:
                raise ValueError("CaseHead: give {stream: embedding width} or streams and hidden=")
            dims = {s: hidden for s in dims}
        if not dims:
            raise ValueError("CaseHead: at least one stream")
        self.settings = settings or CaseSettings(**kw)
        k = self.settings.num_clusters
        self.streams = tuple(dims)
        self.prototypes = nn.ParameterDict()
        for s, h in dims.items():
            w = nn.Parameter(torch.empty(k, int(h)))
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))   # nn.Linear's default
            self.prototypes[s] = w

    def initial_q_c(self, device=None) -> torch.Tensor:
        return initial_cluster_labels(self.settings.num_clusters, device)

    def cluster_logits(self, embeddings: StreamsIn) -> Dict[str, torch.Tensor]:
        """Per stream temperature * cosine logits (B, T, K) (training: prototypes renormalised in
        place first)."""
        emb = self._streams(embeddings, "embeddings")
        return {s: cluster_logits(emb[s], self.prototypes[s], self.settings.temperature,
                                  self.training) for s in self.streams}

    def forward(self, embeddings: StreamsIn, attentions: StreamsIn, q_a: torch.Tensor,
                q_c: Optional[torch.Tensor] = None, *, pg=None) -> HeadLosses:
        """``embeddings`` and ``attentions``: {stream: tensor}, or the tensors in the head's stream
        order (a bare tensor for a one-stream head); attentions (B, T) or (B, T, 1). ``q_c``: the
        previous step's Q^C (None: the initial one)."""
        emb = self._streams(embeddings, "embeddings")
        att = self._streams(attentions, "attentions")
        att = {s: a.squeeze(-1) if a.dim() == 3 and a.shape[-1] == 1 else a for s, a in att.items()}
        if q_c is None:
            q_c = self.initial_q_c(q_a.device)
        logits = self.cluster_logits(emb)
        return head_losses(logits, emb, att, q_a, q_c, self.settings, pg=pg)

    def foreground(self, embeddings: StreamsIn, q_c: torch.Tensor) -> Dict[str, torch.Tensor]:
        """P^T per stream, (B, T) each; no in-place change of the prototypes."""
        emb = self._streams(embeddings, "embeddings")
        logits = {s: cluster_logits(emb[s], self.prototypes[s], self.settings.temperature,
                                    training=False) for s in self.streams}
        return foreground_scores(logits, q_c)

    def _streams(self, given: StreamsIn, what: str) -> Dict[str, torch.Tensor]:
        """{stream: tensor} in the head's stream order, from a mapping, a sequence in that order or
        (one-stream head) a tensor."""
        if isinstance(given, torch.Tensor):
            given = (given,)
        if not isinstance(given, Mapping):
            given = list(given)
            if len(given) != len(self.streams):
                raise ValueError(f"CaseHead: {len(given)} {what} for the {len(self.streams)} streams "
                                 f"{list(self.streams)}")
            given = dict(zip(self.streams, given))
        missing = [s for s in self.streams if s not in given]
        if missing:
            raise ValueError(f"CaseHead: {what} lack the streams {missing} (head streams "
                             f"{list(self.streams)})")
        return {s: given[s] for s in self.streams}
