"""Helper of tests/training/test_distributed.py (not a test module): a few CASE training steps on the tiny
synthetic config, one process or one rank of a torchrun job, through the trainer's own pieces
(the initial weights, RunStreams' batches and snippets, train_step with the process group, DDP). Rank 0 saves
every step's loss parts, the full Q^S (gathered over ranks), Q^C and the final parameters.

    python tests/training/ddp_steps.py OUT.pt [overrides...]
    torchrun --nproc_per_node 2 tests/training/ddp_steps.py OUT.pt [overrides...]
"""
import sys

import torch

from case_fast.training import distributed as D
from case_fast.config.loading import load_config
from case_fast.data.load import load_datasets
from case_fast.method.model import CaseModel
from case_fast.method.pseudo_labels import initial_cluster_labels
from case_fast.training.step import train_step
from case_fast.method.released_init import draw_initial_weights
from case_fast.training.batches import FeatureBank, RunStreams

TINY = ["data.synthetic_videos=20", "data.synthetic_max_len=200", "data.num_segments=64",
        "train.batch_size=4", "train.progress=false", "train.backend=reference"]


def main(out, overrides, steps=4):
    torch.set_num_threads(1)
    with D.process_group("cpu") as pg:
        record(pg, out, overrides, steps)
    if D.joined():   # the job's end, as `case-fast` ends a torchrun worker
        D.exit_worker(0)


def record(pg, out, overrides, steps):
    world = 1 if pg is None else pg.world
    rank = 0 if pg is None else pg.rank
    cfg = load_config("synthetic", TINY + list(overrides))
    tc = cfg.train
    train_set, _ = load_datasets(cfg.data, cfg.model.num_classes, cfg.k)
    bank = FeatureBank(train_set, "cpu")
    labels_all = torch.from_numpy(train_set.labels)
    model = CaseModel(cfg.model)
    draw_initial_weights(model, tc.seed)
    streams = RunStreams(tc.seed, len(train_set), tc.batch_size)
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    step_model = model
    if pg is not None:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=not tc.use_scc)
    q_c = initial_cluster_labels(cfg.model.num_clusters)
    local_b = tc.batch_size // world
    rec = {"parts": [], "q_s": [], "q_c": []}
    for step in range(steps):
        ids = streams.batch_videos(step)
        idx = streams.sample(ids, train_set.num_snippets, cfg.data.num_segments)
        lo = rank * local_b
        ids, idx = ids[lo:lo + local_b], idx[lo:lo + local_b]
        optim.zero_grad(set_to_none=True)
        res = train_step(step_model, optim, bank.gather(ids, idx), labels_all[torch.from_numpy(ids)],
                         q_c, cfg, pg=pg)
        q_c = res.q_c
        parts = torch.stack([res.loss.detach()] + [res.parts[k] for k in sorted(res.parts)])
        q_s = res.q_s if res.q_s is not None else torch.zeros(0)
        if pg is not None:
            # the per-video losses are this rank's means: the global batch's is the mean of the ranks'
            names = ["loss", "video", "att_rgb", "att_flow"]
            keys = ["loss"] + sorted(res.parts)
            local = torch.stack([parts[keys.index(n)] for n in names])
            glob = pg.sum(local) / world
            # scc is a per-snippet mean (also averaged); ccc is computed from global prototypes
            scc = pg.sum(res.parts["scc"][None]) / world
            full = dict(zip(names, glob))
            full["scc"] = scc[0]
            full["ccc"] = res.parts["ccc"]
            full["loss"] = full["video"] + full["att_rgb"] + full["att_flow"] \
                + tc.lambda_s * full["scc"] + tc.lambda_c * full["ccc"]
            parts = torch.stack([full[k] for k in keys])
            if res.q_s is not None:
                q_s = pg.cat(res.q_s)
            # Q^C must be identical on every rank
            qcs = pg.cat(q_c[None])
            assert all(torch.equal(qcs[0], qcs[r]) for r in range(world)), "Q^C differs between ranks"
        rec["parts"].append(parts.double())
        rec["q_s"].append(q_s.double())
        rec["q_c"].append(q_c.double().clone())
    rec["params"] = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    rec["part_names"] = ["loss"] + sorted(res.parts)
    if pg is not None:   # parameters identical on every rank
        for k, v in model.state_dict().items():
            allv = pg.cat(v[None])
            assert all(torch.equal(allv[0], allv[r]) for r in range(world)), f"{k} differs between ranks"
    if rank == 0:
        torch.save(rec, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
