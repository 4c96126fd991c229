"""Pseudo-labels (method.md §3): attention labels Q^A, snippet clustering Q^S (SCC) and cluster
classification Q^C (CCC). Everything here is free of host synchronisation (no nonzero/.item())."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops


def attention_pseudo_labels(topk_idx: torch.Tensor, labels: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Q^A (B, T): 1 at every time index in the top-k of any ground-truth class of the video."""
    b, _, g = topk_idx.shape
    hit = torch.zeros(b, num_segments, g, dtype=labels.dtype, device=labels.device)
    hit.scatter_(1, topk_idx, 1.0)
    return (hit * (labels[:, None, :] > 0).to(labels.dtype)).amax(dim=2)


def initial_cluster_labels(num_clusters: int, device=None) -> torch.Tensor:
    """Q^C before the first step: every entry 1/K (method.md §3.4)."""
    return torch.full((num_clusters, 2), 1.0 / num_clusters, device=device)


def scc_pseudo_labels(cluster_logits: torch.Tensor, attention: torch.Tensor, q_c: torch.Tensor, *,
                      mode: str = "faithful", sigma: float = 10.0, n_iters: int = 3,
                      epsilon: float = 0.05, temperature: float = 10.0, use_prior: bool = True,
                      labels: str = "ot_soft", backend: str = "auto", pg=None) -> torch.Tensor:
    """Q^S (N, K) from the fused cluster logits (N, K) and fused attention (N,).

    labels: 'ot_soft' (the method), 'ot_hard' (one-hot of the OT solution), 'soft' / 'hard'
    (no OT: row-normalised Gibbs kernel / its arg-max; paper Table 5).
    use_prior=False drops the rank prior (plain equipartition, Eq. 10; Table 6).
    pg: a ``distributed.ProcessGroup`` when the rows are this rank's slice of a batch spread over
    ranks (the prior's ordering and normalisation and the Sinkhorn's column sums are then global;
    the reference Sinkhorn sequence is used); None: one process, the code path below.
    """
    logits = cluster_logits.detach()
    if labels in ("soft", "hard"):
        q = torch.softmax(logits.float() / (temperature * epsilon), dim=1)
    elif pg is not None:   # the reference sequence, every batch-wide quantity reduced over ranks
        prior = None
        if use_prior:
            rank = ops.prior_rank(attention, mode, coll=pg)
            prior = ops.rank_prior(rank, q_c[:, 0].detach(), sigma, coll=pg)
        q = ops.sinkhorn_reference(logits, prior, None, n_iters, epsilon, temperature, coll=pg)
    elif use_prior:
        rank = ops.prior_rank(attention.detach().reshape(-1), mode)
        q = ops.sinkhorn_rank_prior(logits, rank, q_c[:, 0].detach(), sigma, None, n_iters, epsilon,
                                    temperature, backend=backend)
    else:
        q = ops.sinkhorn(logits, None, None, n_iters, epsilon, temperature, backend=backend)
    if labels in ("ot_hard", "hard"):
        q = F.one_hot(q.argmax(dim=1), q.shape[1]).to(q.dtype)
    return q


def cluster_fb_logits(embedding: torch.Tensor, q_s: torch.Tensor, q_a: torch.Tensor,
                      temperature: float = 10.0, pg=None) -> torch.Tensor:
    """CCC logits (K, 2) of one stream: temperature * cosine between the Q^S-weighted cluster
    prototypes and the [Q^A, 1 - Q^A]-weighted foreground/background prototypes of the
    unnormalised embeddings E (N, H). Gradients flow into E. With ``pg`` (rows spread over ranks)
    the weighted sums are all-reduced with autograd before the normalisation."""
    qs = q_s.to(embedding.dtype)
    fb = torch.stack([q_a, 1.0 - q_a], dim=1).to(embedding.dtype)   # (N, 2)
    if pg is not None:
        cluster_protos = F.normalize(pg.sum_grad(qs.t() @ embedding), dim=1)
        fb_protos = F.normalize(pg.sum_grad(fb.t() @ embedding), dim=1)
        return temperature * cluster_protos @ fb_protos.t()
    cluster_protos = F.normalize(qs.t() @ embedding, dim=1)          # (K, H)
    fb_protos = F.normalize(fb.t() @ embedding, dim=1)               # (2, H)
    return temperature * cluster_protos @ fb_protos.t()


def ccc_marginal(q_a: torch.Tensor, kind: str = "empirical", pg=None) -> torch.Tensor:
    """beta^C: [mean Q^A, 1 - mean Q^A] over the batch (Eq. 13), or uniform (Eq. 9); with ``pg``
    the mean is over the global batch."""
    if kind == "uniform":
        return torch.full((2,), 0.5, dtype=torch.float32, device=q_a.device)
    if pg is None:
        m = q_a.float().mean()
    else:   # the global sum and count through the collectives hook
        tot = pg.sum(torch.stack([q_a.float().sum(), q_a.new_tensor(float(q_a.numel()), dtype=torch.float32)]))
        m = tot[0] / tot[1]
    return torch.stack([m, 1.0 - m])


def ccc_pseudo_labels(fused_logits: torch.Tensor, beta: torch.Tensor, *, n_iters: int = 3,
                      epsilon: float = 0.05, temperature: float = 10.0,
                      backend: str = "auto") -> torch.Tensor:
    """Q^C (K, 2) = Sinkhorn(fused CCC logits, column marginal beta)."""
    return ops.sinkhorn(fused_logits.detach(), None, beta, n_iters, epsilon, temperature, backend=backend)
