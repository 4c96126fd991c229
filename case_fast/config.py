"""Configuration as plain dataclasses, loaded from YAML files with dotted command-line overrides.

A config file has four sections (``data``, ``model``, ``train``, ``infer``) whose keys are the
fields below; anything not given keeps its default. ``load_config("thumos14", ["train.seed=2"])``
resolves a bundled name (``case_fast/configs/<name>.yaml``) or a path.
"""
from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any, List, Optional

import yaml

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"
MODES = ("faithful", "paper")


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
        if self.train.mode not in MODES:
            raise ValueError(f"train.mode must be one of {MODES}, got {self.train.mode!r}")
        if self.data.feature_dim != 2 * self.model.stream_dim:
            raise ValueError(f"data.feature_dim ({self.data.feature_dim}) must be 2 x model.stream_dim "
                             f"({self.model.stream_dim}): RGB and flow halves")
        if self.infer.nms not in ("one_pass_decay", "hard", "soft_gaussian", "soft_linear"):
            raise ValueError(f"infer.nms: unknown method {self.infer.nms!r}")
        if self.infer.fg_score not in ("PM", "PA", "PT"):
            raise ValueError(f"infer.fg_score must be PM, PA or PT, got {self.infer.fg_score!r}")
        if self.train.scc_labels not in ("ot_soft", "ot_hard", "soft", "hard"):
            raise ValueError(f"train.scc_labels: unknown {self.train.scc_labels!r}")
        if self.train.ccc_marginal not in ("empirical", "uniform"):
            raise ValueError(f"train.ccc_marginal: unknown {self.train.ccc_marginal!r}")
        if self.data.num_segments < 1 or self.train.batch_size < 1:
            raise ValueError("data.num_segments and train.batch_size must be positive")
        return self


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "infer": InferConfig}


def _coerce(key: str, value: Any, current: Any) -> Any:
    """The override parsed as YAML and checked against the type of the field's current value."""
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if current is None or value is None:
        return value
    expect = type(current)
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, list):
        value = value if isinstance(value, list) else [value]
        ok = True
    else:
        ok = isinstance(value, expect)
    if not ok:
        raise ValueError(f"config key {key}: expected {expect.__name__}, got {value!r}")
    return value


def _apply(cfg: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) == 1 and parts[0] == "name":
        cfg.name = str(value)
        return
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise KeyError(f"unknown config key {key!r}: use section.field with section in {sorted(_SECTIONS)}")
    section = getattr(cfg, parts[0])
    names = {f.name for f in dataclasses.fields(section)}
    if parts[1] not in names:
        raise KeyError(f"unknown config key {key!r}; {parts[0]} has {sorted(names)}")
    setattr(section, parts[1], _coerce(key, value, getattr(section, parts[1])))


def available_configs() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: Optional[str] = None, overrides: Optional[List[str]] = None) -> Config:
    """Bundled config name or YAML path (default 'synthetic'), then 'section.key=value' overrides."""
    cfg = Config()
    name_or_path = name_or_path or "synthetic"
    path = pathlib.Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"no config file {name_or_path!r} and no bundled config of that name "
                                    f"(bundled: {', '.join(available_configs())})")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a mapping of sections")
    cfg.name = str(raw.pop("name", path.stem))
    for sec, values in raw.items():
        if sec not in _SECTIONS or not isinstance(values, dict):
            raise KeyError(f"{path}: unknown section {sec!r} (expected {sorted(_SECTIONS)})")
        for k, v in values.items():
            _apply(cfg, f"{sec}.{k}", v)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: Optional[List[str]]) -> Config:
    """Apply 'section.key=value' strings (values parsed as YAML) and re-validate."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like section.key=value")
        k, v = ov.split("=", 1)
        _apply(cfg, k.strip(), v)
    return cfg.validate()


def config_from_dict(d: dict) -> Config:
    cfg = Config(name=d.get("name", "custom"))
    for sec in _SECTIONS:
        for k, v in (d.get(sec) or {}).items():
            _apply(cfg, f"{sec}.{k}", v)
    return cfg.validate()
