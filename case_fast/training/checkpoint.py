"""Checkpoints: reading a run's last.pt (checked against the configuration it resumes), loading a
best.pt / last.pt for detection and evaluation, and which configuration keys make a run different."""
from __future__ import annotations

import os

import torch

from ..config.loading import config_from_dict
from ..baselines import build_model
from ..config.schema import Config, run_defining
from .run_files import RunError

LAST_KEYS = ("model", "optimizer", "q_c", "step", "best", "history", "config")


def first_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + ("..." if len(text) > 200 else "")


def config_for_compare(d: dict) -> dict:
    """What must match for a last.pt to be resumed under configuration ``d``: the run-defining keys
    (:func:`case_fast.config.schema.run_defining`) except ``train.num_steps`` (a run may be
    continued to more steps)."""
    d = run_defining(d)
    if isinstance(d.get("train"), dict):
        d["train"].pop("num_steps", None)
    return d


def _flat(d, prefix=""):
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else ()):
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_difference(old: dict, new: dict, n: int = 3) -> str:
    a, b = _flat(config_for_compare(old)), _flat(config_for_compare(new))
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    shown = ", ".join(f"{k}: {a.get(k, '<unset>')!r} there, {b.get(k, '<unset>')!r} now" for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _torch_load(path: str, device):
    """The one ``torch.load`` of the package: tensors and plain containers only
    (``weights_only=True``), so a checkpoint carrying a pickled object is refused, never run."""
    return torch.load(path, map_location=device, weights_only=True)


def read_last(path: str, device) -> dict:
    """last.pt, checked; RunError naming the file and the way out otherwise."""
    way_out = ("pass --restart to start this run over (the old files are kept until the new run's "
               "first checkpoint) or choose another --out")
    if os.path.isdir(path):
        raise RunError(f"{path} is a directory, not a checkpoint; {way_out}")
    try:
        ck = _torch_load(path, device)
    except Exception as e:
        raise RunError(f"{path} cannot be read, it is truncated or not a case-fast checkpoint "
                       f"({first_line(e)}); {way_out}") from e
    if not isinstance(ck, dict) or any(k not in ck for k in LAST_KEYS) or not isinstance(ck["config"], dict):
        raise RunError(f"{path} is not a case-fast training checkpoint (expected the keys "
                       f"{', '.join(LAST_KEYS)}); {way_out}")
    if "streams" not in ck:
        raise RunError(f"{path} was written before case-fast drew the released run's random streams "
                       "and cannot resume under them: pass --restart to start this run over")
    return ck


def check_same_run(ck: dict, cfg: Config, run_dir: str) -> None:
    if config_for_compare(ck["config"]) != config_for_compare(cfg.to_dict()):
        raise RunError(f"{run_dir} holds a run with a different configuration "
                       f"({config_difference(ck['config'], cfg.to_dict())}); pass --restart to "
                       "overwrite it or choose another --out")
    step = ck["step"]
    if not isinstance(step, int) or step < 0:
        raise RunError(f"{os.path.join(run_dir, 'last.pt')}: step {step!r} is not a step count; "
                       "pass --restart to start this run over")
    if step > cfg.train.num_steps:
        raise RunError(f"{run_dir} holds a run already at step {step}, beyond train.num_steps = "
                       f"{cfg.train.num_steps}; pass a train.num_steps >= {step} to continue it, or "
                       "--restart to start over")


def load_checkpoint(path: str, device="cpu", with_step: bool = False):
    """(model, q_c, cfg) from a best.pt / last.pt checkpoint, read once and without unpickling
    objects (a file carrying a pickled object is refused); ``with_step``: (model, q_c, cfg, step),
    step None if the file has none. ValueError naming ``path`` for a folder, a truncated or foreign
    file, an invalid configuration or weights that do not fit it."""
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a directory, expected a run's best.pt or last.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ck = _torch_load(path, device)
    except Exception as e:  # corrupt, truncated or not a checkpoint
        raise ValueError(f"{path}: not a readable case-fast checkpoint, truncated or of another kind "
                         f"({first_line(e)})") from e
    if not isinstance(ck, dict) or "model" not in ck or not isinstance(ck.get("config"), dict):
        raise ValueError(f"{path}: not a case-fast checkpoint (missing model/config)")
    try:
        cfg = config_from_dict(ck["config"])
    except ValueError as e:
        raise ValueError(f"{path}: the checkpoint's configuration is invalid: {e}") from e
    model = build_model(cfg).to(device)
    try:
        model.load_state_dict(ck["model"])
    except Exception as e:
        raise ValueError(f"{path}: the weights do not fit the checkpoint's configuration "
                         f"({first_line(e)})") from e
    q_c = ck.get("q_c")
    if q_c is not None and (not isinstance(q_c, torch.Tensor)
                            or tuple(q_c.shape) != (cfg.model.num_clusters, 2)):
        raise ValueError(f"{path}: Q^C does not fit model.num_clusters = {cfg.model.num_clusters}")
    model.eval()
    if with_step:
        step = ck.get("step")
        return model, q_c, cfg, step if isinstance(step, int) else None
    return model, q_c, cfg
