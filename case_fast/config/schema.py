"""The configuration as plain dataclasses: four sections (``data``, ``model``, ``train``, ``infer``)
whose fields each carry, in one place, their type, default, meaning (``case-fast info --fields``),
range rules and whether they change what a run computes; :meth:`Config.validate` checks them all,
then the cross-field rules. Loading from YAML and overrides is in ``loading.py``.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .values import ConfigError, check_rule, coerce, describe_type

LAYOUTS = ("synthetic", "basnet", "wtalc", "anet_json")
MODES = ("faithful", "paper")


def setting(default, doc: str, *rules, invariant: bool = False):
    """A configuration field: its ``default``, its one-line meaning ``doc``, its range ``rules``
    (checked by :meth:`Config.validate`; the rule words are those of ``values.check_rule``; every
    float must also be finite) and ``invariant``: the field does not change what a run computes,
    only how, where or how loudly it runs (:data:`RUN_INVARIANT_KEYS`)."""
    meta = {"doc": doc, "rules": rules, "invariant": invariant}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    layout: str = setting("synthetic",
                          "synthetic (the embedded THUMOS14-shaped set) | basnet (THUMOS14 BaS-Net"
                          " layout) | wtalc (W-TALC .npy: THUMOS14reduced, ActivityNet1.2) | "
                          "anet_json (ActivityNet-style JSON + per-video .npy)",
                          ("choice", LAYOUTS))
    root: Optional[str] = setting(None, "dataset folder (required unless layout=synthetic)")
    dataset_name: str = setting("Thumos14reduced",
                                "W-TALC file prefix (<prefix>-Annotations/, "
                                "<prefix>-I3D-JOINTFeatures.npy)",
                                ("nonempty",))
    feature_dir: Optional[str] = setting(None,
                                         "anet_json: folder of <video>.npy features (default "
                                         "root/features)")
    annotation_file: Optional[str] = setting(None,
                                             "anet_json: the annotation JSON (default "
                                             "root/annotations.json)")
    train_subset: str = setting("train",
                                "training subset name as in the files (basnet: split_<name>.txt)",
                                ("nonempty",))
    test_subset: str = setting("test",
                               "test subset name as in the files (basnet: split_<name>.txt)",
                               ("nonempty",))
    num_segments: int = setting(750, "T, snippets sampled per video (> 0)", (">=", 1))
    feature_dim: int = setting(2048,
                               "feature width, RGB + flow (= 2 x model.stream_dim)",
                               (">=", 2))
    fps: float = setting(25.0, "frame rate the features were extracted at (> 0)", (">", 0))
    frames_per_snippet: int = setting(16, "frames per feature snippet (> 0)", (">=", 1))
    protocol: str = setting("basnet210",
                            "evaluation protocol: basnet210 | co2net | delu | wtalc (the released "
                            "evaluators' numbers on the W-TALC layout; wtalc212 = co2net) | all (every "
                            "video, basnet210's rules)",
                            ("choice", ("basnet210", "co2net", "delu", "wtalc", "wtalc212", "all")))
    # the synthetic set only
    synthetic_size: str = setting("small",
                                  "synthetic set: small (synthetic_dim channels) | full (1024 "
                                  "channels)",
                                  ("choice", ("small", "full")))
    synthetic_seed: int = setting(0,
                                  "synthetic set: seed of the rendered features (>= 0)",
                                  (">=", 0))
    synthetic_dim: int = setting(128, "synthetic set, small: channels per stream", (">=", 1))
    synthetic_max_len: int = setting(0,
                                     "synthetic set: cap on T_v, longer videos are time-compressed"
                                     " (0: none)",
                                     (">=", 0))
    synthetic_videos: int = setting(0,
                                    "synthetic set: first n videos of each split (0: all)",
                                    (">=", 0))
    synthetic_version: int = setting(2,
                                     "synthetic set: generator version (2, the default, calibrated"
                                     " to THUMOS14; 1, the first set; see data/synthetic.py)",
                                     (">=", 1), ("<=", 2))


@dataclass
class ModelConfig:
    baseline: str = setting("case",
                            "case (CASE's two-stream network) | aicl (AICL as released; the CASE head "
                            "with train.use_scc)",
                            ("choice", ("case", "aicl")))
    num_classes: int = setting(20, "G, action classes (must match the data)", (">=", 1))
    stream_dim: int = setting(1024, "D, feature width per stream", (">=", 1))
    hidden_dim: int = setting(512, "H, embedding width", (">=", 1))
    num_clusters: int = setting(16, "K, snippet clusters (>= 1)", (">=", 1))
    temperature: float = setting(10.0, "cosine classifier scale (> 0)", (">", 0))


@dataclass
class TrainConfig:
    mode: str = setting("faithful", "faithful (released code) | paper", ("choice", MODES))
    seed: int = setting(1, "seed of initialisation, batches and sampling (>= 0)", (">=", 0))
    batch_size: int = setting(16, "videos per step (>= 1, at most the training videos)", (">=", 1))
    drop_last: bool = setting(True,
                              "drop each epoch's last incomplete batch (true: CASE as released; AICL "
                              "keeps it)")
    lr: float = setting(1e-4, "Adam learning rate (> 0; 1e-4 and 0.0001 both accepted)", (">", 0))
    weight_decay: float = setting(5e-4, "Adam weight decay (>= 0)", (">=", 0))
    num_steps: int = setting(3600, "training steps (>= 1)", (">=", 1))
    eval_every: int = setting(50, "evaluate and checkpoint every n steps (>= 1)", (">=", 1))
    k_divisor: int = setting(8,
                             "top-k size k = T // k_divisor (>= 1; THUMOS14 8, ActivityNet 2)",
                             (">=", 1))
    gce_q: float = setting(0.7, "generalised cross-entropy q, in (0, 1]", (">", 0), ("<=", 1))
    prior_sigma: float = setting(10.0, "rank prior sigma of the snippet clustering (> 0)", (">", 0))
    lambda_s: float = setting(1.0, "weight of the snippet clustering loss (>= 0)", (">=", 0))
    lambda_c: float = setting(0.3, "weight of the cluster classification loss (>= 0)", (">=", 0))
    sinkhorn_iters: int = setting(3, "Sinkhorn iterations (>= 1)", (">=", 1))
    sinkhorn_epsilon: float = setting(0.05,
                                      "Sinkhorn entropy epsilon on the cosine logits, exp(L / "
                                      "temperature / epsilon) (> 0)",
                                      (">", 0))
    use_scc: bool = setting(True, "snippet clustering component on/off")
    use_ccc: bool = setting(True, "cluster classification component on/off")
    # ablation switches (paper Tables 5-7)
    scc_labels: str = setting("ot_soft",
                              "ot_soft | ot_hard | soft | hard (paper Table 5)",
                              ("choice", ("ot_soft", "ot_hard", "soft", "hard")))
    scc_prior: bool = setting(True,
                              "rank prior in the clustering objective (false: plain equipartition)")
    ccc_marginal: str = setting("empirical",
                                "empirical | uniform cluster marginal (Eq. 9)",
                                ("choice", ("empirical", "uniform")))
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", ("device",), invariant=True)
    backend: str = setting("auto",
                           "ops backend: auto | reference | fast",
                           ("choice", ("auto", "reference", "fast")), invariant=True)
    num_threads: int = setting(0, "torch CPU threads (0: torch default)", (">=", 0), invariant=True)
    cuda_graph: bool = setting(False,
                               "CUDA only: after 3 eager warm-up steps, capture the training step "
                               "(forward, losses, backward, Adam) as a CUDA graph and replay it",
                               invariant=True)
    progress: bool = setting(True, "progress bar on stderr", invariant=True)
    # model selection: which periodic evaluation best.pt and the summary's "best" are
    select: str = setting("test",
                          "model selection for best.pt: test (best periodic test mAP, the paper's "
                          "protocol) | val (best on the val hold-out) | last",
                          ("choice", ("test", "val", "last")))
    val_fraction: float = setting(0.0,
                                  "held-out share of the training videos, class-stratified, same "
                                  "for every seed (0: none, no val number; > 0 needed by "
                                  "select=val), in [0, 1)",
                                  (">=", 0), ("<", 1))
    tensorboard: bool = setting(True,
                                "write TensorBoard event files to <run>/tensorboard (needs "
                                "tensorboard)",
                                invariant=True)
    deterministic: bool = setting(False,
                                  "torch.use_deterministic_algorithms(True), cuDNN deterministic, "
                                  "CUBLAS_WORKSPACE_CONFIG on CUDA")
    world_size: int = setting(1,
                              "processes of the data-parallel job (set by the trainer under "
                              "torchrun)",
                              (">=", 1), invariant=True)


@dataclass
class InferConfig:
    use_cat: bool = setting(True, "clustering-assisted testing (P^T terms)")
    fg_score: str = setting("PM",
                            "PM (P^A and P^T) | PA | PT (paper Table 7)",
                            ("choice", ("PM", "PA", "PT")))
    video_topk_on: str = setting("test_score",
                                 "the score whose top-k snippets give the video scores: test_score "
                                 "(the localisation score of fg_score, P^T terms included, as "
                                 "released) | baseline (the baseline's own score; P^T then serves "
                                 "localisation only)",
                                 ("choice", ("test_score", "baseline")))
    class_threshold: float = setting(0.25,
                                     "video-level class score threshold, in [0, 1]",
                                     (">=", 0), ("<=", 1))
    act_thresholds: List[float] = setting(np.arange(0.1, 1.0, 0.1).tolist(),
                                          "T-CAS thresholds of the proposals (non-empty list, each"
                                          " in [0, 1])",
                                          ("nonempty",), ("each", ((">=", 0), ("<=", 1))))
    scale: int = setting(24, "T-CAS upsampling factor (>= 1)", (">=", 1))
    oic_lambda: Optional[float] = setting(None,
                                          "outer-inner-contrast weight (null: 0.15 faithful / 0.25"
                                          " paper)",
                                          (">=", 0))
    oic_gamma: float = setting(0.2,
                               "weight of the video score in the proposal score (>= 0)",
                               (">=", 0))
    nms: str = setting("one_pass_decay",
                       "one_pass_decay | hard | soft_gaussian | soft_linear",
                       ("choice", ("one_pass_decay", "hard", "soft_gaussian", "soft_linear")))
    nms_threshold: float = setting(0.4, "NMS IoU threshold, in [0, 1]", (">=", 0), ("<=", 1))
    nms_alpha: float = setting(0.35, "one-pass decay exp(-IoU^2 / alpha) (> 0)", (">", 0))
    soft_min_score: float = setting(1e-3, "Soft-NMS score floor, in [0, 1)", (">=", 0), ("<", 1))
    max_per_video: int = setting(0, "keep the n best proposals per video (0: all)", (">=", 0))
    tiou: List[float] = setting([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
                                "tIoU thresholds of the mAP table (non-empty list, each in (0, 1])",
                                ("nonempty",), ("each", ((">", 0), ("<=", 1))))


@dataclass
class Config:
    name: str = setting("custom", "run name (default run directory runs/<name>-seed<seed>)",
                        invariant=True)
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
        for key, f, section in fields_of(self):
            check_rule(key, getattr(section, f.name), f.metadata["rules"])
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


def fields_of(cfg: Optional[Config] = None) -> Iterator[Tuple[str, dataclasses.Field, object]]:
    """(key, field, the object holding it) of every configuration field in order: ``name``, then
    each section's; the holders are those of ``cfg`` (default: a default Config)."""
    cfg = Config() if cfg is None else cfg
    yield "name", next(f for f in dataclasses.fields(Config) if f.name == "name"), cfg
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield f"{sec}.{f.name}", f, getattr(cfg, sec)


def field_table(cfg: Optional[Config] = None) -> List[tuple]:
    """(key, type, value, meaning) of every configuration field, for ``case-fast info --fields``:
    the values of ``cfg`` (default: the field defaults)."""
    rows = []
    for key, f, holder in fields_of(cfg):
        default = getattr(holder, f.name)
        if isinstance(default, list):
            default = [round(x, 6) if isinstance(x, float) else x for x in default]
        tp = typing.get_type_hints(type(holder))[f.name]
        rows.append((key, describe_type(tp), default, f.metadata["doc"]))
    return rows


# The keys that do not change what a run computes: two configurations that differ in nothing else
# describe the same run (a resumed run's last.pt, an ablation's run folder).
RUN_INVARIANT_KEYS = tuple(key for key, f, _ in fields_of() if f.metadata["invariant"])


# Fields added after run folders were first written, with the value such a folder's run used.
_ADDED_LATER = (("train.select", "test"), ("train.val_fraction", 0.0), ("train.deterministic", False),
                ("train.drop_last", True), ("model.baseline", "case"),
                ("infer.video_topk_on", "test_score"))


def run_defining(d: dict) -> dict:
    """A copy of the configuration dict ``d`` without :data:`RUN_INVARIANT_KEYS`, with the fields
    that an older run folder's configuration lacks filled in with the values it ran with."""
    d = json.loads(json.dumps(d)) if isinstance(d, dict) else {}
    for key in RUN_INVARIANT_KEYS:
        section, _, name = key.rpartition(".")
        holder = d.get(section) if section else d
        if isinstance(holder, dict):
            holder.pop(name, None)
    for key, value in _ADDED_LATER:
        section, _, name = key.partition(".")
        if isinstance(d.get(section), dict):
            d[section].setdefault(name, value)
    data = d.get("data")
    if isinstance(data, dict):   # a synthetic run's configuration without synthetic_version is version 1
        if data.get("layout", "synthetic") == "synthetic":
            data.setdefault("synthetic_version", 1)
        else:                    # and it means nothing for real features
            data.pop("synthetic_version", None)
    return d
