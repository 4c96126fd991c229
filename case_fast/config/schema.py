"""The configuration as plain dataclasses: four sections (``data``, ``model``, ``train``, ``infer``)
whose keys are the fields below, and :meth:`Config.validate` (every field's type and range, then the
cross-field rules). Loading from YAML and overrides is in ``loading.py``.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import List, Optional

from .fields import RULES
from .values import ConfigError, check_rule, coerce


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
    protocol: str = "basnet210"             # 'basnet210' | 'co2net' | 'delu' | 'wtalc' | 'wtalc212' (= co2net) | 'all'
    # synthetic set only
    synthetic_size: str = "small"           # 'small' (documented reduced set) | 'full'
    synthetic_seed: int = 0
    synthetic_dim: int = 128                # per stream, small set (full set: 1024)
    synthetic_max_len: int = 0              # 0 = real lengths; >0 caps T_v (small set)
    synthetic_videos: int = 0               # 0 = all (200 train + 210 test); >0 = first n of each
    synthetic_version: int = 2              # generator version (1 or 2; see data/synthetic.py)


@dataclass
class ModelConfig:
    baseline: str = "case"      # 'case' (CASE's two-stream network) | 'aicl' (baselines/aicl.py)
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
    drop_last: bool = True      # drop each epoch's last incomplete batch (CASE); AICL keeps it
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
        for sec in SECTIONS:
            section = getattr(self, sec)
            for f in dataclasses.fields(section):
                key = f"{sec}.{f.name}"
                setattr(section, f.name, coerce(key, getattr(section, f.name), field_type(sec, f.name)))
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


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "infer": InferConfig}


def field_type(section: str, name: str):
    """The declared type of field ``section.name``."""
    return typing.get_type_hints(SECTIONS[section])[name]


# The keys that do not change what a run computes, only how, where and how loudly it runs: two
# configurations that differ in nothing else describe the same run (a resumed run's last.pt, an
# ablation's run folder).
RUN_INVARIANT_KEYS = ("name", "train.progress", "train.num_threads", "train.device", "train.backend",
                      "train.cuda_graph", "train.world_size", "train.tensorboard")


def run_defining(d: dict) -> dict:
    """A copy of the configuration dict ``d`` without :data:`RUN_INVARIANT_KEYS`."""
    d = json.loads(json.dumps(d)) if isinstance(d, dict) else {}
    for key in RUN_INVARIANT_KEYS:
        section, _, name = key.rpartition(".")
        holder = d.get(section) if section else d
        if isinstance(holder, dict):
            holder.pop(name, None)
    return d
