"""Version 2 of the synthetic features (``data.synthetic_version = 2``, the default): a THUMOS14
broadcast rendered snippet by snippet, calibrated on the baseline row to THUMOS14's range.

Frozen: any change to what this module generates is a new version (a new module). The structure
is written out in the README ("The synthetic benchmark"); in short, per snippet and per stream (RGB =
appearance, flow = motion), in a ``LATENT``-d space:

* **Shots** (``BACKGROUND_TYPES``): a video is a sequence of shots of geometric length (mean
  ``_SHOT_MEAN`` snippets) drawn from a per-video Dirichlet mix of wide shot, crowd, interview,
  replay and camera pan. Each video has its own look for each shot type (no look is shared between
  videos), each type its own gain per stream and its own share of the venue (``_BG_SCENE``: full in
  wide shots and pans, almost none in interviews).
* **Venue** (per class, shared in part by related classes, ``_GROUPS``; a multi-label video averages
  its classes'): the class evidence of the background. Weak (``_G['scene']``), strong in RGB, faint
  in flow, plus a per-video offset (broadcaster, lighting).
* **Actions**: every annotated instance, 3 phases (start / middle / end, soft memberships along it)
  whose looks share a class part (``_PHASE_OWN``); ``_ACT_ID`` of every action look is its class's
  venue direction - the action is where the class shows most (as Kinetics-trained I3D features
  respond most to the action itself). Instance strengths from ``_AMP``; the shot fades to
  ``_BG_DURING_ACT`` during an action and the venue is fully in view.
* **Context**: 1 to ``_PRE_MAX`` snippets before every instance (run-up or preparation: class look in
  RGB, for the preparation classes partly the action's own look, ``_CTX_ACT``) and 1 to ``_POST_MAX``
  after it (aftermath, weaker); isolated preparation episodes away from the actions.
* **Background that looks like action**: unlabelled slow-motion replays of the video's class (the
  action's look in RGB at reduced strength, little flow), as in THUMOS14.
* **Rendering**: each snippet's signal is scaled to the same energy (``_SIGNAL_NORM``: what a snippet
  shows is a direction, not a louder vector), then white and slowly varying latent noise; smoothed in
  time with [0.25, 0.5, 0.25]; a fixed random projection to D channels, a bias, white channel noise
  and a softplus give non-negative, post-ReLU-like features.

Why these choices (the calibration, baseline row only): the released top-k selection is driven at
the start by the randomly initialised attention, which is then trained on its own selection
(docs/ablation.md, "Seed collapse"). Anything that every action shares with every other action
(a common look, a common motion direction, more energy) gives the initial attention one
action-vs-rest preference whose sign is the seed's, and the run goes all one way or all the other
(version 1). Version 2 has no such shared part; what is left consistent across videos is the
per-class evidence, strongest at the actions, which the classifier learns and which pulls the
selection onto the actions class by class.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .synthetic_v1 import (THUMOS14_CLASSES, ChannelMap, _class_looks, _instance, _mix, _name_seed,
                           _phases, _runs, _unit)

VERSION = 2

BACKGROUND_TYPES = ("wide_shot", "crowd", "interview", "replay", "camera_pan")
_REPLAY = 3

# classes whose instances are preceded by a run-up rather than a static preparation
_RUNUP = ("BasketballDunk", "CricketBowling", "FrisbeeCatch", "HighJump", "JavelinThrow", "LongJump",
          "PoleVault", "SoccerPenalty", "VolleyballSpiking")

# groups of related classes: (members, shared fraction of venue, of context, of action)
_GROUPS = [
    (("CricketBowling", "CricketShot"), 0.8, 0.6, 0.35),
    (("HammerThrow", "Shotput", "ThrowDiscus"), 0.55, 0.3, 0.3),
    (("HighJump", "LongJump", "PoleVault", "JavelinThrow"), 0.45, 0.4, 0.25),
    (("Diving", "CliffDiving"), 0.6, 0.3, 0.4),
    (("TennisSwing", "GolfSwing", "BaseballPitch"), 0.0, 0.0, 0.3),
    (("BasketballDunk", "VolleyballSpiking"), 0.3, 0.0, 0.3),
]

LATENT = 64
NUM_PHASES = 3
_PHASE_OWN = 0.55           # share of a phase look that is the phase's own (rest: the class part)
_ACT_ID = 0.7               # share of every action look that is its class's venue direction
_CTX_ACT = 0.35             # share of a preparation's RGB look that is the class's action look

# stream gains (rgb, flow)
_G = dict(scene=(0.5, 0.1), offset=(0.5, 0.2), act=(0.9, 1.2), ctx=(0.9, 0.25), post=0.6,
          replay=(0.7, 0.2), noise=(1.0, 1.0), slow_noise=(0.5, 0.5))
# per shot type: RGB look gain, flow look gain, share of the venue in view
_BG_RGB = np.array([0.6, 1.0, 1.2, 0.8, 0.6], np.float32)
_BG_FLOW = np.array([0.2, 0.6, 0.1, 0.3, 0.4], np.float32)
_BG_SCENE = np.array([1.0, 0.5, 0.1, 0.6, 1.0], np.float32)
_BG_ALPHA = np.array([1.0, 0.5, 0.5, 0.4, 0.5])   # Dirichlet mix of shot types per video
_SHOT_MEAN = 10.0           # mean shot length, snippets (6.4 s)
_BG_DURING_ACT = 0.3        # shot weight left during an action
_AMP = (0.5, 1.2)           # instance strength, uniform
_PRE_MAX, _POST_MAX = 6, 3  # context snippets before / after an instance (uniform from 1)
_SLOW_RHO = 0.85            # decay per snippet of the slow noise kernel
_PREP_EPISODES = 1 / 200.0  # isolated preparation episodes per snippet (Poisson rate)
_REPLAYS = 1 / 250.0        # unlabelled replays per snippet (Poisson rate)
_AMBIG_AMP = 0.4            # ambiguous test segments: faint actions of the video's class
_SIGNAL_NORM = 1.7          # every snippet's signal energy, before noise
_CH_NOISE = 0.5
_BIAS_MEAN, _BIAS_STD = -0.8, 0.3


def _slow_noise(rng: np.random.Generator, T: int, rho: float) -> np.ndarray:
    """(T, LATENT) noise with an exponential temporal kernel rho^k, rows of expected norm 1."""
    n = max(1, min(T, int(math.ceil(math.log(0.01) / math.log(rho)))))
    x = rng.standard_normal((T + n - 1, LATENT), dtype=np.float32)
    w = rho ** np.arange(n)
    w = (w / np.sqrt((w * w).sum())).astype(np.float32)
    out = np.zeros((T, LATENT), np.float32)
    for k in range(n):   # out[t] = sum_k w_k x[t + n - 1 - k]
        out += w[k] * x[n - 1 - k:n - 1 - k + T]
    return out / np.float32(math.sqrt(LATENT))


class Renderer:
    """Shared looks and projections for one (seed, width); ``render`` makes one video."""

    version = VERSION

    def __init__(self, seed: int, dim: int, class_names: Sequence[str] = THUMOS14_CLASSES):
        self.seed, self.dim = int(seed), int(dim)
        self.class_names = list(class_names)
        g = len(self.class_names)
        self.runup = np.array([c in _RUNUP for c in self.class_names], bool)
        rng = np.random.default_rng([self.seed, 0x5EED, VERSION, 1])
        self.scene, self.stack = [], []
        for s in range(2):
            scene, ctx, base = _class_looks(rng, self.class_names, _GROUPS)
            phase = _unit(rng, g, NUM_PHASES)
            _unit(rng)   # a draw this version does not use (kept: the looks stay those calibrated)
            act = _mix(scene[:, None, :], _mix(base[:, None, :], phase, _PHASE_OWN), _ACT_ID)
            if s == 0:   # RGB: a preparation looks partly like the action (same athlete, same pose)
                prep = ~self.runup
                ctx[prep] = _mix(base[prep], ctx[prep], _CTX_ACT)
            _unit(rng, len(BACKGROUND_TYPES) + 1)   # unused draws, as above
            self.scene.append(scene.astype(np.float32))
            act = act.reshape(g * NUM_PHASES, LATENT)
            # the looks in the column order of _latents' weights: action, context, replay (= action)
            self.stack.append(np.concatenate([act, ctx, act]).astype(np.float32))
        # per-width projection, bias and channel-noise bank (drawn from the seed and the width)
        self.channels = ChannelMap(np.random.default_rng([self.seed, 0x5EED, VERSION, 2, self.dim]), self.dim,
                                   _BIAS_MEAN, _BIAS_STD, _CH_NOISE)

    def _layout(self, name, T, anns, labels, ambiguous, snip):
        """What each snippet shows: shot type weights, action / context / replay weights, venue share."""
        g = len(self.class_names)
        amb = np.zeros((0, 2)) if ambiguous is None else np.asarray(ambiguous, np.float64).reshape(-1, 2)
        rng = np.random.default_rng([self.seed, _name_seed(name), VERSION, 3])
        bg_type = _runs(rng, _BG_ALPHA, T, _SHOT_MEAN)

        act_w = np.zeros((T, g * NUM_PHASES), np.float32)
        ctx_w = np.zeros((T, g), np.float32)
        presence = np.zeros(T, np.float32)
        starts = np.arange(T, dtype=np.float64) * snip

        def add_action(c, s, e, amp, phases=None):
            lo, hi, cover, ph = _instance(starts, s, e, snip)
            if hi <= lo:
                return lo, hi
            if phases is not None:
                ph[:] = phases
            act_w[lo:hi, c * NUM_PHASES:(c + 1) * NUM_PHASES] += (amp * cover)[:, None] * ph
            presence[lo:hi] = np.maximum(presence[lo:hi], cover * amp)
            return lo, hi

        def add_context(c, lo, hi, pre, post, amp):
            for d in range(1, pre + 1):   # before: run-up / preparation, strongest next to the action
                if 0 <= lo - d < T:
                    ctx_w[lo - d, c] = max(ctx_w[lo - d, c], amp * (1.0 - 0.5 * (d - 1) / pre))
            for d in range(post):         # after: aftermath, weaker
                if 0 <= hi + d < T:
                    ctx_w[hi + d, c] = max(ctx_w[hi + d, c], _G["post"] * amp * (1.0 - d / (post + 1)))

        for c, s, e in anns:
            amp = rng.uniform(*_AMP)
            lo, hi = add_action(c, s, e, amp)
            add_context(c, lo, hi, int(rng.integers(1, _PRE_MAX + 1)), int(rng.integers(1, _POST_MAX + 1)),
                        rng.uniform(0.6, 1.0))
        main = int(labels[0]) if len(labels) else int(rng.integers(g))
        for s, e in amb:
            add_action(main, s, e, _AMBIG_AMP, phases=(0.0, 1.0, 0.0))
        # isolated preparation episodes and unlabelled slow-motion replays, away from the actions
        replay_w = np.zeros((T, g * NUM_PHASES), np.float32)
        busy = presence > 0
        if len(labels):
            for _ in range(int(rng.poisson(T * _PREP_EPISODES))):
                c = int(labels[rng.integers(len(labels))])
                t0, n = int(rng.integers(T)), int(rng.integers(2, 7))
                sl = slice(t0, min(T, t0 + n))
                if not busy[sl].any():
                    ctx_w[sl, c] = np.maximum(ctx_w[sl, c], rng.uniform(0.5, 0.9))
            for _ in range(int(rng.poisson(T * _REPLAYS))):
                c = int(labels[rng.integers(len(labels))])
                t0, n = int(rng.integers(T)), int(rng.integers(4, 13))
                t1 = min(T, t0 + n)
                if busy[t0:t1].any():
                    continue
                replay_w[t0:t1, c * NUM_PHASES:(c + 1) * NUM_PHASES] += _phases(np.linspace(0.0, 1.0, t1 - t0))
                bg_type[t0:t1] = _REPLAY
        ctx_w *= (1.0 - np.minimum(presence, 1.0))[:, None]
        fg = np.maximum(np.minimum(presence, 1.0), ctx_w.max(axis=1))
        bg_w = np.zeros((T, len(BACKGROUND_TYPES)), np.float32)
        bg_w[np.arange(T), bg_type] = 1.0
        bg_w *= (1.0 - (1.0 - _BG_DURING_ACT) * fg)[:, None]
        scene_w = _BG_SCENE[bg_type] * (1.0 - fg) + fg
        return dict(bg_w=bg_w, act_w=act_w, ctx_w=ctx_w, replay_w=replay_w, scene_w=scene_w.astype(np.float32),
                    labels=list(labels) if len(labels) else [main]), rng

    def _latents(self, lay: dict, rng: np.random.Generator, T: int) -> List[np.ndarray]:
        """Per stream the (T, LATENT) latent sequence: the (T, C) weights of every part times the
        (C, LATENT) looks, plus venue and offset, scaled to one energy, plus noise."""
        lab = lay["labels"]
        offsets = rng.standard_normal((2, LATENT)).astype(np.float32) / math.sqrt(LATENT)
        out = []
        for s in range(2):
            noise = rng.standard_normal((T, LATENT), dtype=np.float32) / np.float32(math.sqrt(LATENT))
            slow = _slow_noise(rng, T, _SLOW_RHO)
            scene = self.scene[s][lab].mean(axis=0)
            scene = (scene / max(np.linalg.norm(scene), 1e-6)).astype(np.float32)
            w = np.concatenate([lay["bg_w"] * (_BG_RGB if s == 0 else _BG_FLOW), _G["act"][s] * lay["act_w"],
                                _G["ctx"][s] * lay["ctx_w"], _G["replay"][s] * lay["replay_w"]], axis=1)
            shots = rng.standard_normal((len(BACKGROUND_TYPES), LATENT))   # this video's shot looks
            shots /= np.linalg.norm(shots, axis=1, keepdims=True)
            z = w.astype(np.float32) @ np.concatenate([shots.astype(np.float32), self.stack[s]])
            z += np.outer(np.float32(_G["scene"][s]) * lay["scene_w"], scene)
            z += np.float32(_G["offset"][s]) * offsets[s]
            z *= np.float32(_SIGNAL_NORM) / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)
            z += np.float32(_G["noise"][s]) * noise
            z += np.float32(_G["slow_noise"][s]) * slow
            out.append(z)
        return out

    def render(self, name: str, T: int, anns: Sequence[Tuple[int, float, float]], labels: Sequence[int],
               ambiguous: Optional[np.ndarray] = None, snippet_seconds: float = 16 / 25) -> np.ndarray:
        """(T, 2*dim) float32 features of one video. ``anns``: (class index, start s, end s)."""
        T = int(T)
        zs = self._latents(*self._layout(name, T, anns, labels, ambiguous, float(snippet_seconds)), T)
        return self.channels(zs, np.random.default_rng([self.seed, _name_seed(name), VERSION, 4]))
