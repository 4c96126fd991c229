"""``case-fast train``, ``detect``, ``info`` and ``profile``: each command's checks, then the call
into its layer (training, inference, the model, experiments.profiling)."""
from __future__ import annotations

import os

from .common import UsageError, load_config_of, refuse_overwriting, say_for, to_stdout




def cmd_train(args) -> int:
    """Under torchrun (WORLD_SIZE > 1) every process joins the job's process group and trains its
    slice of the global batch; rank 0 writes the run directory and prints."""
    from ..training import distributed
    from ..training.trainer import train
    from ..runtime import resolve_device

    cfg = load_config_of(args)
    run_dir = args.out or os.path.join("runs", f"{cfg.name}-seed{cfg.train.seed}")
    with distributed.process_group(resolve_device(cfg.train.device).type) as pg:
        train(cfg, run_dir, restart=args.restart, pg=pg)   # prints the selected evaluation's table
    return 0


def _split_overrides(overrides):
    """(model.* overrides, the others)."""
    model, rest = [], []
    for ov in overrides or []:
        key = ov.split("=", 1)[0].strip()
        (model if key.startswith("model.") else rest).append(ov)
    return model, rest


def _check_model_overrides(cfg, overrides, checkpoint: str) -> None:
    """model.* overrides must agree with the checkpoint (its weights fix the architecture)."""
    import copy

    from ..config.loading import apply_overrides

    model_ovs, _ = _split_overrides(overrides)
    for ov in model_ovs:
        trial = copy.deepcopy(cfg)
        apply_overrides(trial, [ov])          # type and range errors first, naming the key
        key = ov.split("=", 1)[0].strip()
        field = key.split(".", 1)[1]
        old, new = getattr(cfg.model, field), getattr(trial.model, field)
        if old != new:
            raise UsageError(f"{key}={new} contradicts the checkpoint {checkpoint} ({key} = {old}): the "
                             "model comes from the checkpoint; drop the override (infer.* and data.* "
                             "overrides apply)")


def cmd_detect(args) -> int:
    from ..config.loading import apply_overrides
    from ..data.load import load_splits
    from ..inference.detect import detect
    from ..evaluation.results import results_dict
    from ..training.checkpoint import load_checkpoint
    from ..console import Progress
    from ..files import check_writable_path, save_json
    from ..runtime import resolve_device

    if not to_stdout(args.out):
        check_writable_path(args.out, "--out")
        refuse_overwriting(args.out, "--out", [("checkpoint", args.checkpoint)])
    device = resolve_device(args.device)
    model, q_c, cfg = load_checkpoint(args.checkpoint, device)
    _check_model_overrides(cfg, args.overrides, args.checkpoint)
    apply_overrides(cfg, args.overrides)
    (dataset,) = load_splits(cfg.data, cfg.model.num_classes, cfg.k, (args.split,))
    bar = Progress(len(dataset), "detect", True)
    props = detect(model, dataset, q_c, cfg, device, progress=bar.update)
    save_json(results_dict(props, dataset.class_names, cfg.to_dict(), args.split), args.out, None)
    n = sum(len(p) for p in props.values())
    say_for(args.out)(f"wrote {n} detections for {len(props)} videos to "
                       + ("stdout" if to_stdout(args.out) else args.out))
    return 0


def cmd_info(args) -> int:
    from ..config.loading import available_configs
    from ..config.schema import field_table
    from ..console import console

    if args.json and not to_stdout(args.json):
        from ..files import check_writable_path
        check_writable_path(args.json, "--json")

    def out(text: str, data) -> None:
        if args.json:
            from ..files import save_json
            save_json(data, args.json)
            if to_stdout(args.json):
                return
        console.show(text)

    if args.list:
        names = available_configs()
        out("bundled configs: " + ", ".join(names), {"configs": names})
        return 0
    cfg = load_config_of(args)
    if args.fields:
        import json
        rows = field_table(cfg)
        out("\n".join([f"configuration fields of {cfg.name} (section.key=value on the command line; "
                       "value in this config; meaning):"]
                      + [f"  {key:<26} {tp:<20} {json.dumps(value):<14} {doc}" for key, tp, value, doc in rows]),
            {"config": cfg.name, "fields": [{"key": k, "type": tp, "value": v, "meaning": doc}
                                            for k, tp, v, doc in rows]})
        return 0
    from ..baselines import build_model
    from ..method.model import count_macs, count_parameters
    model = build_model(cfg)
    params = count_parameters(model)
    t = cfg.data.num_segments
    macs = count_macs(model, t)
    info = {"config": cfg.name, "mode": cfg.train.mode, "baseline": cfg.model.baseline,
            "stream_dim": cfg.model.stream_dim, "hidden_dim": cfg.model.hidden_dim,
            "num_classes": cfg.model.num_classes, "num_clusters": cfg.model.num_clusters,
            "parameters": params}
    if cfg.model.baseline == "aicl":
        head = (f", CASE head with K={cfg.model.num_clusters} clusters" if model.head is not None
                else ", no CASE head")
        lines = [f"model: AICL, 2 x {cfg.model.stream_dim} -> {cfg.model.hidden_dim} (k=3 convs), "
                 f"G={cfg.model.num_classes} classes{head}",
                 f"parameters: {params:,} = {params / 1e6:.3f} M"]
        info["case_head"] = model.head is not None
    else:
        per_stream = count_parameters(model.rgb)
        lines = [f"model: 2 streams x (D={cfg.model.stream_dim} -> {cfg.model.hidden_dim}), "
                 f"G={cfg.model.num_classes} classes, K={cfg.model.num_clusters} clusters",
                 f"parameters: {params:,} ({per_stream:,} per stream) = {params / 1e6:.3f} M"]
        info["parameters_per_stream"] = per_stream
    out("\n".join([
        f"config: {cfg.name} (mode {cfg.train.mode})", *lines,
        f"MACs per video (T={t}): {macs:,} = {macs / 1e9:.2f} G ({macs // t:,} per snippet)",
        f"training: batch {cfg.train.batch_size}, k = T // {cfg.train.k_divisor} = {cfg.k}, "
        f"{cfg.train.num_steps} steps, eval every {cfg.train.eval_every}"]),
        dict(info, num_segments=t, macs_per_video=macs, batch_size=cfg.train.batch_size, k=cfg.k,
             num_steps=cfg.train.num_steps, eval_every=cfg.train.eval_every))
    return 0


def cmd_profile(args) -> int:
    from ..experiments.profiling import profile
    from ..files import save_json

    cfg = load_config_of(args)
    if args.json and not to_stdout(args.json):
        from ..files import check_writable_path
        check_writable_path(args.json, "--json")
    report = profile(cfg, steps=args.steps, checkpoint=args.checkpoint, eval_videos=args.videos,
                     print_fn=say_for(args.json))
    if args.json:
        save_json(report, args.json)
    return 0
