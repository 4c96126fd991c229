"""Configuration as plain dataclasses, loaded from YAML files with dotted command-line overrides.

A config file has four sections (``data``, ``model``, ``train``, ``infer``) whose keys are the
fields below; anything not given keeps its default. ``load_config("thumos14", ["train.seed=2"])``
resolves a bundled name (``case_fast/configs/<name>.yaml``) or a path.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

import yaml

from .config_fields import FIELD_DOCS, MODES, RULES
from .config_values import ConfigError, check_rule, coerce, describe_type, parse_value

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"
# the fields' rules and docs are in config_fields.py, value parsing and checks in config_values.py
__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "InferConfig", "ConfigError", "MODES",
           "FIELD_DOCS", "CONFIG_DIR", "load_config", "apply_overrides", "config_from_dict",
           "read_config_file", "field_table", "available_configs"]


@dataclass
class DataConfig:
    # 'synthetic' (embedded THUMOS14-shaped set), 'basnet' (THUMOS14 BaS-Net/ASL layout),
    # 'wtalc' (W-TALC/CO2-Net layout: THUMOS14reduced, ActivityNet1.2), 'anet_json'
    # (ActivityNet-style JSON + per-video .npy features: ActivityNet1.3, custom sets).
    layout: str = "synthetic"
    root: Optional[str] = None
    dataset_name: str = "Thumos14reduced"   # W-TALC file prefix
    feature_dir: Optional[str] = None       # anet_json: folder of <video>.npy (default root/features)
    annotation_file: Optional[str] = None   # anet_json: the JSON file (default root/annotations.json)
    train_subset: str = "train"             # subset names as they appear in the files
    test_subset: str = "test"
    num_segments: int = 750                 # T: snippets sampled per video
    feature_dim: int = 2048                 # RGB + flow channels (RGB first)
    fps: float = 25.0                       # frame rate the features were extracted at
    frames_per_snippet: int = 16
    protocol: str = "basnet210"             # evaluation ground truth: 'basnet210' | 'wtalc212' | 'all'
    # synthetic set only
    synthetic_size: str = "small"           # 'small' (documented reduced set) | 'full'
    synthetic_seed: int = 0
    synthetic_dim: int = 128                # per stream, small set (full set: 1024)
    synthetic_max_len: int = 0              # 0 = real lengths; >0 caps T_v (small set)
    synthetic_videos: int = 0               # 0 = all (200 train + 210 test); >0 = first n of each
    synthetic_version: int = 2              # generator version (1 or 2; see data/synthetic.py)


@dataclass
class ModelConfig:
    num_classes: int = 20
    stream_dim: int = 1024      # D per stream
    hidden_dim: int = 512
    num_clusters: int = 16      # K
    temperature: float = 10.0   # cosine classifier scale


@dataclass
class TrainConfig:
    mode: str = "faithful"      # 'faithful' (released code) | 'paper'
    seed: int = 1
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 5e-4
    num_steps: int = 3600
    eval_every: int = 50
    k_divisor: int = 8          # k = T // k_divisor (THUMOS14 8, ActivityNet 2)
    gce_q: float = 0.7
    prior_sigma: float = 10.0
    lambda_s: float = 1.0
    lambda_c: float = 0.3
    sinkhorn_iters: int = 3
    sinkhorn_epsilon: float = 0.05     # entropy on cosines: exp(L / temperature / epsilon)
    use_scc: bool = True
    use_ccc: bool = True
    # ablation switches (paper Tables 5-6)
    scc_labels: str = "ot_soft"        # 'ot_soft' | 'ot_hard' | 'soft' (no OT) | 'hard' (no OT)
    scc_prior: bool = True             # False: plain equipartition objective (Eq. 10)
    ccc_marginal: str = "empirical"    # 'empirical' (beta from Q^A) | 'uniform' (Eq. 9)
    device: str = "auto"               # 'auto' | 'cpu' | 'cuda'
    backend: str = "auto"              # ops backend: 'auto' | 'reference' | 'fast'
    num_threads: int = 0               # 0: torch default
    cuda_graph: bool = False           # CUDA only: after 3 eager warm-up steps, capture one step
                                       # (forward, losses, backward, Adam) in a CUDA graph and replay it
    progress: bool = True
    # model selection: which periodic evaluation's step best.pt / summary "best" is
    select: str = "test"               # 'test' (paper protocol: best test mAP) | 'val' | 'last'
    val_fraction: float = 0.0          # class-stratified hold-out of the training videos (0: none)
    tensorboard: bool = True           # TensorBoard event files in <run>/tensorboard (if installed)
    deterministic: bool = False        # torch.use_deterministic_algorithms(True) (+ cuBLAS config)
    world_size: int = 1                # recorded by the trainer: processes of a torchrun launch


@dataclass
class InferConfig:
    use_cat: bool = True               # clustering-assisted testing (P^T terms)
    fg_score: str = "PM"               # 'PM' (P^A and P^T) | 'PA' | 'PT' (Table 7)
    class_threshold: float = 0.25
    act_thresholds: List[float] = field(default_factory=lambda: [float(x) for x in
                                        __import__("numpy").arange(0.1, 1.0, 0.1)])
    scale: int = 24                    # T-CAS upsampling factor
    oic_lambda: Optional[float] = None  # None: 0.15 faithful / 0.25 paper
    oic_gamma: float = 0.2
    nms: str = "one_pass_decay"        # 'one_pass_decay' | 'hard' | 'soft_gaussian' | 'soft_linear'
    nms_threshold: float = 0.4
    nms_alpha: float = 0.35            # decay exp(-IoU^2 / alpha)
    soft_min_score: float = 1e-3
    max_per_video: int = 0             # 0: keep all
    tiou: List[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])


@dataclass
class Config:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def k(self) -> int:
        return max(1, self.data.num_segments // self.train.k_divisor)

    def oic_lambda(self) -> float:
        if self.infer.oic_lambda is not None:
            return float(self.infer.oic_lambda)
        return 0.15 if self.train.mode == "faithful" else 0.25

    def validate(self) -> "Config":
        """Every field's type and range (the key named in the message), then the cross-field rules;
        raises :class:`ConfigError`. Run by every loader before anything is written."""
        for sec in _SECTIONS:
            section = getattr(self, sec)
            for f in dataclasses.fields(section):
                key = f"{sec}.{f.name}"
                setattr(section, f.name, coerce(key, getattr(section, f.name), _field_type(sec, f.name)))
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name or "\0" in self.name:
            raise ConfigError(f"config key name: expected a non-empty name without '/', got {self.name!r}")
        for key, rule in RULES.items():
            sec, fld = key.split(".")
            if not hasattr(getattr(self, sec), fld):   # a rule for a field this version lacks
                continue
            check_rule(key, getattr(getattr(self, sec), fld), rule)
        if self.train.select == "val" and self.train.val_fraction <= 0:
            raise ConfigError("config key train.select: 'val' needs a validation hold-out "
                              "(set train.val_fraction > 0, e.g. 0.15)")
        if self.data.feature_dim != 2 * self.model.stream_dim:
            raise ConfigError(f"data.feature_dim ({self.data.feature_dim}) must be 2 x model.stream_dim "
                              f"({self.model.stream_dim}): RGB and flow halves")
        return self


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "infer": InferConfig}


def _field_type(section: str, name: str):
    return typing.get_type_hints(_SECTIONS[section])[name]


def field_table() -> List[tuple]:
    """(key, type, default, meaning) of every configuration field, for ``case-fast info --fields``."""
    rows = [("name", "str", Config().name, FIELD_DOCS["name"])]
    defaults = Config()
    for sec in _SECTIONS:
        for f in dataclasses.fields(_SECTIONS[sec]):
            key = f"{sec}.{f.name}"
            default = getattr(getattr(defaults, sec), f.name)
            if isinstance(default, list):
                default = [round(x, 6) if isinstance(x, float) else x for x in default]
            rows.append((key, describe_type(_field_type(sec, f.name)), default, FIELD_DOCS.get(key, "")))
    return rows


def _apply(cfg: Config, key: str, value: Any, source: str = "") -> None:
    parts = key.split(".")
    where = f"{source}: " if source else ""
    if len(parts) == 1 and parts[0] == "name":
        if isinstance(value, str) and source == "":
            value = parse_value(key, value)
        if value is None or isinstance(value, (bool, list, dict)):
            raise ConfigError(f"{where}config key name: expected a string, got {value!r}")
        cfg.name = str(value)
        return
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"{where}unknown config key {key!r}: use section.field with section in "
                          f"{', '.join(_SECTIONS)}")
    section = getattr(cfg, parts[0])
    names = [f.name for f in dataclasses.fields(section)]
    if parts[1] not in names:
        close = difflib.get_close_matches(parts[1], names, n=1)
        hint = f" (did you mean {parts[0]}.{close[0]}?)" if close else ""
        raise ConfigError(f"{where}unknown config key {key!r}{hint}; `case-fast info --fields` lists them all")
    if isinstance(value, str) and source == "":   # a command-line value: YAML text
        value = parse_value(key, value)
    try:
        setattr(section, parts[1], coerce(key, value, _field_type(parts[0], parts[1])))
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def available_configs() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _yaml_error(path, e: yaml.YAMLError) -> ConfigError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and ctx_mark is not None and ctx_mark is not mark:
        what += f" ({ctx} started on line {ctx_mark.line + 1})"
    return ConfigError(f"{where}: YAML syntax error: {what}")


def read_config_file(path) -> dict:
    """The mapping of a YAML config file; ConfigError naming the file (and line) otherwise."""
    from .data.annotations import DataError, read_text

    path = pathlib.Path(path)
    try:  # the checks every file the package reads gets (folder, unreadable, not UTF-8)
        text = read_text(path, "config", allow_empty=True)
    except DataError as e:
        raise ConfigError(str(e)) from e
    if not text.strip():
        raise ConfigError(f"config {path} is empty (a config is a mapping of sections data, model, "
                          "train, infer; use --config synthetic for the defaults)")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: a config must be a mapping of sections (data, model, train, "
                          f"infer), got {type(raw).__name__}")
    return raw


def load_config(name_or_path: Optional[str] = None, overrides: Optional[List[str]] = None) -> Config:
    """Bundled config name or YAML path (default 'synthetic'), then 'section.key=value' overrides;
    validated (:class:`ConfigError` naming the key or file)."""
    cfg = Config()
    name_or_path = name_or_path or "synthetic"
    path = pathlib.Path(os.path.expanduser(str(name_or_path)))
    if not path.exists():
        bundled = CONFIG_DIR / f"{name_or_path}.yaml"
        if "/" in str(name_or_path) or not bundled.is_file():
            raise ConfigError(f"no config file {str(name_or_path)!r} and no bundled config of that name "
                              f"(bundled: {', '.join(available_configs())})")
        path = bundled
    raw = read_config_file(path)
    name = raw.pop("name", path.stem)
    _apply(cfg, "name", name, str(path))
    for sec, values in raw.items():
        if sec not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section {sec!r} (expected name, {', '.join(_SECTIONS)})")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {sec!r} must be a mapping of keys, got {values!r}")
        for k, v in values.items():
            _apply(cfg, f"{sec}.{k}", v, str(path))
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as e:
        if overrides:
            raise
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(cfg: Config, overrides: Optional[List[str]]) -> Config:
    """Apply 'section.key=value' strings (values parsed as YAML) and re-validate."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        k, v = ov.split("=", 1)
        _apply(cfg, k.strip(), v)
    return cfg.validate()


def config_from_dict(d: dict) -> Config:
    if not isinstance(d, dict):
        raise ConfigError(f"a configuration must be a mapping, got {type(d).__name__}")
    cfg = Config()
    _apply(cfg, "name", d.get("name", "custom"), "config")
    for sec in _SECTIONS:
        values = d.get(sec) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {sec!r} must be a mapping, got {type(values).__name__}")
        for k, v in values.items():
            _apply(cfg, f"{sec}.{k}", v, "config")
    return cfg.validate()
