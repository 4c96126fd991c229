"""Version 1 of the synthetic features (``data.synthetic_version = 1``; version 2 is the default).
Frozen, so that runs and tables made on it stay reproducible.

Far harder than THUMOS14 for the released method: its baseline reaches 11 avg mAP (3 seeds) and
the outcome of a run is decided by the sign of the initial attention (docs/ablation.md).

What is synthetic: the features. Each snippet is rendered from a latent description of what a
THUMOS14 video looks like, so that the things that make weakly-supervised localisation hard on real
I3D features are present, and the things CASE adds (clustering snippets into sub-types before
deciding foreground/background) have something to find:

* Scene (per video, whole video). Each class has a scene embedding (pool, cricket pitch, track...),
  mixed for related classes (CricketBowling/CricketShot share most of theirs; HammerThrow/Shotput/
  ThrowDiscus share a throwing circle; the jumps and javelin share a track; Diving/CliffDiving share
  water); a multi-label video averages its classes' scenes; plus a per-video offset (lighting,
  camera, broadcaster). Strong in RGB, weak in flow. It tells *which* class a video shows but not
  *where* - so video classification is easy and localisation is not.
* Background sub-types (4): static wide shot, crowd/close-up, graphics/replay, camera pan. They
  persist in runs of several seconds (geometric run lengths, mean 16 snippets ~ 10 s) with
  occasional switches; each video has its own mix of them (Dirichlet). The static wide shot carries
  almost no flow, crowd and graphics a little; the camera-pan type carries strong flow along the
  same "generic motion" direction that actions have - it fakes motion for a flow-only detector.
* Actions. Each class has 3 phases (start / middle / end of an instance, soft memberships along the
  instance) whose embeddings share a class part but differ; related classes share part of the class
  part (the two cricket classes, the throws, the swings, the jumps, the dives, dunk/spike). Instance
  amplitudes vary (0.4-1.1, some instances are faint). Actions are moderate in RGB and strong in flow
  (plus the generic motion component). Background fades (does not vanish) during an action.
* Context (the classic WTAL confusion). The 1-6 snippets just before and after every instance carry a
  class-specific context embedding (the athlete preparing, the run-up, the aftermath) that is strong
  in RGB and weak in flow: same scene, same class-specific look, little motion - top-k MIL on RGB
  alone happily selects it. Longer videos also get a few isolated context episodes away from any
  action, and occasional unlabelled slow-motion replays (action look in RGB at reduced amplitude,
  little flow, over the graphics/replay background). Ambiguous segments (test) are rendered as faint
  actions of the video's class.
* Rendering. Per stream (RGB, flow) the components are added in a 64-d latent space with the stream
  gains above, plus latent noise; the latent sequence is smoothed with a
  [0.25, 0.5, 0.25] kernel (I3D snippets overlap in receptive field); a fixed random projection
  (64 -> D), a bias, white per-channel noise and a softplus give non-negative, post-ReLU-like
  features of width D per stream (RGB first, flow second). Per-channel values therefore mix every
  component: no single channel separates foreground from background.

"""
from __future__ import annotations

import math
import zlib
from typing import List, Optional, Sequence, Tuple

import numpy as np

VERSION = 1

THUMOS14_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
    "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
    "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus",
    "VolleyballSpiking"]

BACKGROUND_TYPES = ("static_wide", "crowd_closeup", "graphics_replay", "camera_pan")
_REPLAY = 2

# groups of related classes: (members, shared fraction of scene, of context, of action)
_GROUPS = [
    (("CricketBowling", "CricketShot"), 0.8, 0.7, 0.35),
    (("HammerThrow", "Shotput", "ThrowDiscus"), 0.55, 0.3, 0.3),
    (("HighJump", "LongJump", "PoleVault", "JavelinThrow"), 0.45, 0.3, 0.25),
    (("Diving", "CliffDiving"), 0.6, 0.3, 0.4),
    (("TennisSwing", "GolfSwing", "BaseballPitch"), 0.0, 0.0, 0.3),
    (("BasketballDunk", "VolleyballSpiking"), 0.3, 0.0, 0.3),
]

LATENT = 64
NUM_PHASES = 3
# stream gains (rgb, flow)
_G_SCENE = (1.0, 0.25)
_G_OFFSET = (0.6, 0.3)
_G_BG_RGB = 0.9
# flow gain of each background type and how much generic motion it carries (camera pan fakes it)
_BG_FLOW = np.array([0.3, 0.6, 0.45, 0.9], np.float32)
_BG_MOTION = np.array([0.0, 0.3, 0.15, 1.0], np.float32)
_G_CTX = (0.9, 0.3)
_G_ACT = (0.75, 1.2)
_G_MOTION = (0.0, 0.8)
_G_LNOISE = (1.2, 1.2)
_CH_NOISE = 0.5
_BIAS_MEAN, _BIAS_STD = -0.8, 0.3
_BANK = 1024             # rows of the channel-noise bank
_RUN_MEAN = 16.0          # mean background run, snippets
_BG_ALPHA = np.array([2.0, 1.5, 1.0, 1.0])   # Dirichlet mix of background types per video


def _unit(rng: np.random.Generator, *shape) -> np.ndarray:
    x = rng.standard_normal(shape + (LATENT,))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mix(shared: np.ndarray, own: np.ndarray, frac: float) -> np.ndarray:
    v = math.sqrt(frac) * shared + math.sqrt(1.0 - frac) * own
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _name_seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF


def _class_looks(rng: np.random.Generator, class_names: Sequence[str], groups) -> Tuple[np.ndarray, ...]:
    """(scene, context, action base) looks, (G, LATENT) each, one stream: independent unit vectors,
    then for every group of related classes a shared part mixed in (``groups``: members, shared
    fraction of scene, of context, of action). Used by every version (same draws in the same order)."""
    g = len(class_names)
    cidx = {c: i for i, c in enumerate(class_names)}
    scene, ctx, base = _unit(rng, g), _unit(rng, g), _unit(rng, g)
    for members, fs, fc, fa in groups:
        idx = [cidx[m] for m in members if m in cidx]
        if not idx:
            continue
        sh_s, sh_c, sh_a = _unit(rng), _unit(rng), _unit(rng)
        if fs > 0:
            scene[idx] = _mix(sh_s, scene[idx], fs)
        if fc > 0:
            ctx[idx] = _mix(sh_c, ctx[idx], fc)
        if fa > 0:
            base[idx] = _mix(sh_a, base[idx], fa)
    return scene, ctx, base


def _phases(u: np.ndarray) -> np.ndarray:
    """(n, 3) soft start / middle / end memberships at relative positions u in [0, 1]."""
    ph = np.empty((len(u), NUM_PHASES))
    ph[:, 0] = np.maximum(0.0, 1.0 - u / 0.4)
    ph[:, 2] = np.maximum(0.0, (u - 0.6) / 0.4)
    ph[:, 1] = 1.0 - ph[:, 0] - ph[:, 2]
    return ph


def _runs(rng: np.random.Generator, alpha: np.ndarray, T: int, mean: float) -> np.ndarray:
    """(T,) int64 background / shot type per snippet: a per-video Dirichlet(alpha) mix of the types,
    in runs of geometric length (mean ``mean`` snippets)."""
    p = rng.dirichlet(alpha)
    types = np.empty(T, np.int64)
    t = 0
    while t < T:
        n = int(rng.geometric(1.0 / mean))
        types[t:t + n] = rng.choice(len(p), p=p)
        t += n
    return types


def _instance(starts: np.ndarray, s: float, e: float, snip: float):
    """The snippets an instance [s, e] (seconds) covers: (lo, hi, cover (hi - lo,) in [0, 1], phase
    memberships (hi - lo, 3)); hi <= lo (and no arrays) when it covers none. ``starts``: snippet start
    times."""
    lo, hi = max(int(math.floor(s / snip)), 0), min(int(math.ceil(e / snip)), len(starts))
    if hi <= lo:
        return lo, hi, None, None
    ts = starts[lo:hi]
    cover = np.clip((np.minimum(ts + snip, e) - np.maximum(ts, s)) / snip, 0.0, 1.0)
    if e - s < snip:   # very short instance: the snippet holding it sees it anyway
        cover = np.maximum(cover, 0.5 * (cover > 0))
    return lo, hi, cover, _phases(np.clip((ts + 0.5 * snip - s) / max(e - s, 1e-6), 0.0, 1.0))


class ChannelMap:
    """Latent (T, LATENT) -> features (T, dim) of one stream pair: a fixed random projection, a bias,
    white channel noise and a softplus (non-negative, post-ReLU-like), after a [0.25, 0.5, 0.25]
    temporal smoothing (I3D snippets overlap in receptive field). Drawn from ``prng``."""

    def __init__(self, prng: np.random.Generator, dim: int, bias_mean: float = _BIAS_MEAN,
                 bias_std: float = _BIAS_STD, ch_noise: float = _CH_NOISE):
        self.dim = int(dim)
        self.proj = [prng.standard_normal((LATENT, self.dim), dtype=np.float32) for _ in range(2)]
        self.bias = [(prng.standard_normal(self.dim, dtype=np.float32) * bias_std + bias_mean)
                     .astype(np.float32) for _ in range(2)]
        # white channel noise = sum of two random rows of a bank of N(0, 1/2) rows (2^20 distinct
        # pairs per stream): as good as fresh Gaussian noise here, and a gather instead of T*D draws
        self.noise_bank = [(prng.standard_normal((_BANK, self.dim), dtype=np.float32)
                            * np.float32(ch_noise / math.sqrt(2.0))) for _ in range(2)]

    def __call__(self, zs: Sequence[np.ndarray], nrng: np.random.Generator) -> np.ndarray:
        """(T, 2*dim) float32 from the two streams' (T, LATENT) latents; ``nrng`` picks the noise rows."""
        T = len(zs[0])
        rows = nrng.integers(0, _BANK, size=(2, 2, T))
        out = np.empty((T, 2 * self.dim), np.float32)
        for s, z in enumerate(zs):
            if T > 1:   # temporal smoothing, edge-replicated [0.25, 0.5, 0.25]
                zp = np.concatenate([z[:1], z, z[-1:]], axis=0)
                z = 0.25 * zp[:-2] + 0.5 * zp[1:-1] + 0.25 * zp[2:]
            pre = z @ self.proj[s]
            pre += self.bias[s]
            pre += self.noise_bank[s][rows[s, 0]]
            pre += self.noise_bank[s][rows[s, 1]]
            # softplus(x) = max(x, 0) + log1p(exp(-|x|)), in place, float32
            dst = out[:, s * self.dim:(s + 1) * self.dim]
            np.maximum(pre, np.float32(0.0), out=dst)
            np.abs(pre, out=pre)
            np.negative(pre, out=pre)
            np.exp(pre, out=pre)
            np.log1p(pre, out=pre)
            dst += pre
        return out


# ----------------------------------------------------------------------------------------------

class Renderer:
    """Shared embeddings/projections for one (seed, width); ``render`` makes one video."""

    version = VERSION

    def __init__(self, seed: int, dim: int, class_names: Sequence[str] = THUMOS14_CLASSES):
        self.seed, self.dim = int(seed), int(dim)
        self.class_names = list(class_names)
        g = len(self.class_names)
        rng = np.random.default_rng([self.seed, 0x5EED, 1])
        self.scene, self.context, self.action, self.bg, self.motion = [], [], [], [], []
        for s in range(2):
            scene, ctx, base = _class_looks(rng, self.class_names, _GROUPS)
            phase = _unit(rng, g, NUM_PHASES)
            act = _mix(base[:, None, :], phase, 0.45)   # 55 % own phase, 45 % class part
            self.scene.append(scene.astype(np.float32))
            self.context.append(ctx.astype(np.float32))
            self.action.append(act.reshape(g * NUM_PHASES, LATENT).astype(np.float32))
            self.bg.append(_unit(rng, len(BACKGROUND_TYPES)).astype(np.float32))
            self.motion.append(_unit(rng).astype(np.float32))
        # per-width projection, bias and channel-noise bank (drawn from the seed and the width)
        self.channels = ChannelMap(np.random.default_rng([self.seed, 0x5EED, 2, self.dim]), self.dim)

    # -- latent description ------------------------------------------------------------------
    def _latents(self, name: str, T: int, anns: Sequence[Tuple[int, float, float]],
                 labels: Sequence[int], ambiguous: np.ndarray, snip: float) -> List[np.ndarray]:
        g = len(self.class_names)
        rng = np.random.default_rng([self.seed, _name_seed(name), 3])
        bg_type = _runs(rng, _BG_ALPHA, T, _RUN_MEAN)
        bg_w = np.zeros((T, len(BACKGROUND_TYPES)), np.float32)
        bg_w[np.arange(T), bg_type] = 1.0

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
            presence[lo:hi] = np.maximum(presence[lo:hi], cover * min(amp, 1.0))
            return lo, hi

        def add_context(c, lo, hi, pre, post, amp):
            for d in range(1, pre + 1):
                if 0 <= lo - d < T:
                    ctx_w[lo - d, c] = max(ctx_w[lo - d, c], amp * (1.0 - (d - 1) / (pre + 1)))
            for d in range(post):
                if 0 <= hi + d < T:
                    ctx_w[hi + d, c] = max(ctx_w[hi + d, c], amp * (1.0 - d / (post + 1)))

        for c, s, e in anns:
            amp = rng.uniform(0.4, 1.1)
            lo, hi = add_action(c, s, e, amp)
            add_context(c, lo, hi, int(rng.integers(1, 7)), int(rng.integers(1, 6)),
                        rng.uniform(0.6, 1.0))
        main = int(labels[0]) if len(labels) else int(rng.integers(g))
        for s, e in ambiguous:
            add_action(main, s, e, 0.4, phases=(0.0, 1.0, 0.0))
        # isolated context episodes and unlabelled slow-motion replays (longer videos)
        replay_w = np.zeros((T, g * NUM_PHASES), np.float32)
        if len(labels):
            for _ in range(int(rng.poisson(T / 150.0))):
                c = int(labels[rng.integers(len(labels))])
                t0, n = int(rng.integers(T)), int(rng.integers(3, 9))
                ctx_w[t0:t0 + n, c] = np.maximum(ctx_w[t0:t0 + n, c], rng.uniform(0.5, 0.9))
            for _ in range(int(rng.poisson(T / 400.0))):
                c = int(labels[rng.integers(len(labels))])
                t0, n = int(rng.integers(T)), int(rng.integers(4, 12))
                t1 = min(T, t0 + n)
                u = np.linspace(0.0, 1.0, t1 - t0)
                ph = np.stack([np.maximum(0, 1 - u / 0.4), 1 - np.maximum(0, 1 - u / 0.4)
                               - np.maximum(0, (u - 0.6) / 0.4), np.maximum(0, (u - 0.6) / 0.4)], 1)
                replay_w[t0:t1, c * NUM_PHASES:(c + 1) * NUM_PHASES] += 0.7 * ph
                bg_w[t0:t1] = 0.0
                bg_w[t0:t1, _REPLAY] = 1.0
        ctx_w *= (1.0 - np.minimum(presence, 1.0))[:, None]
        ctx_presence = ctx_w.max(axis=1)
        bg_w *= (1.0 - 0.5 * presence - 0.3 * ctx_presence)[:, None]

        lab = list(labels) if len(labels) else [main]
        offsets = rng.standard_normal((2, LATENT)).astype(np.float32) / math.sqrt(LATENT)
        lnoise = rng.standard_normal((2, T, LATENT), dtype=np.float32) / math.sqrt(LATENT)
        out = []
        for s in range(2):
            scene = self.scene[s][lab].mean(axis=0)
            scene = scene / max(np.linalg.norm(scene), 1e-6)
            z = (_G_SCENE[s] * scene + _G_OFFSET[s] * offsets[s])[None, :]
            z = z + (bg_w * (_G_BG_RGB if s == 0 else _BG_FLOW)) @ self.bg[s]
            z = z + (_G_ACT[s] * act_w) @ self.action[s]
            z = z + (_G_CTX[s] * ctx_w) @ self.context[s]
            rep = (0.8 if s == 0 else 0.25) * replay_w
            z = z + rep @ self.action[s]
            if s == 1:
                z = z + np.outer(bg_w @ _BG_MOTION + _G_MOTION[s] * presence, self.motion[s])
            z = z + _G_LNOISE[s] * lnoise[s]
            out.append(z.astype(np.float32))
        return out

    # -- rendering ------------------------------------------------------------------------------
    def render(self, name: str, T: int, anns: Sequence[Tuple[int, float, float]], labels: Sequence[int],
               ambiguous: Optional[np.ndarray] = None, snippet_seconds: float = 16 / 25) -> np.ndarray:
        """(T, 2*dim) float32 features of one video. ``anns``: (class index, start s, end s)."""
        T = int(T)
        amb = np.zeros((0, 2)) if ambiguous is None else np.asarray(ambiguous, np.float64).reshape(-1, 2)
        zs = self._latents(name, T, anns, labels, amb, float(snippet_seconds))
        return self.channels(zs, np.random.default_rng([self.seed, _name_seed(name), 4]))
