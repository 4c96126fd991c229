"""Data layer: method.md §1 sampling, the synthetic THUMOS14 set, the three loaders and their errors."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from case_fast.config.schema import DataConfig
from case_fast.data.annotations import DataError
from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
from case_fast.data.synthetic import assets_dir, embedded_thumos14_test
from case_fast.data.load import load_datasets
from case_fast.data.sampling import sample_batch, sample_test_indices, sample_train_indices
from case_fast.data.sampling import sample_train_batch, sample_train_indices_loop

D = 4           # per-stream width of the fixtures
FD = 2 * D


# ---------------------------------------------------------------------------------------------
# sampling

@pytest.mark.parametrize("tv,T,expected", [
    (10, 5, [0, 2, 4, 6, 8]), (3, 5, [0, 0, 1, 1, 2]), (7, 7, list(range(7))), (1, 4, [0, 0, 0, 0]),
    (750, 750, list(range(750))), (1000, 4, [0, 250, 500, 750]), (5, 2, [0, 2])])
def test_sample_test_indices(tv, T, expected):
    got = sample_test_indices(tv, T)
    assert got.dtype == np.int64 and got.shape == (T,)
    assert got.tolist() == expected
    # the reference float formula gives the same indices
    assert got.tolist() == [int(i * tv / T) for i in range(T)]


def test_sample_train_indices_hand_cases():
    rng = np.random.RandomState(0)
    for _ in range(20):
        assert sample_train_indices(7, 7, rng).tolist() == list(range(7))     # T_v == T
        assert sample_train_indices(1, 5, rng).tolist() == [0] * 5            # T_v == 1
    state = rng.get_state()[1].copy()
    sample_train_indices(7, 7, rng), sample_train_indices(1, 5, rng)
    assert np.array_equal(rng.get_state()[1], state) and rng.get_state()[2] == 624  # no draw
    # T_v < T: lo = [0, 0, 1, 1, 2]; closed ranges [0] [0, 1] [1] [1, 2] [2]
    draws = np.stack([sample_train_indices(3, 5, rng) for _ in range(400)])
    for b, allowed in enumerate([{0}, {0, 1}, {1}, {1, 2}, {2}]):
        assert set(draws[:, b].tolist()) == allowed
    draws = np.stack([sample_train_indices(10, 3, rng) for _ in range(400)])
    assert draws.dtype == np.int64 and draws.shape == (400, 3)
    # closed ranges [0, 3] [3, 6] [6, 9]: a bin can pick the next bin's first index
    for b, (lo, hi) in enumerate([(0, 3), (3, 6), (6, 9)]):
        assert set(draws[:, b].tolist()) == set(range(lo, hi + 1))


def test_sample_train_batch_equals_the_per_bin_loop():
    """The vectorised sampler (one bounded draw for a whole batch) against the per-bin scalar
    reference, and the reference against the released code's draw (``choice(range(a, b + 1))``) on
    the same legacy stream: equal indices and the generator left in the same state."""
    lengths = np.random.default_rng(7)
    for t in (1, 2, 32, 256, 750):
        for _ in range(4):
            tv = lengths.integers(1, 5000, size=int(lengths.integers(1, 6))).tolist()
            tv += [t, max(1, t - 1), t + 1]
            seed = int(lengths.integers(2 ** 32))
            fast, loop, released = (np.random.RandomState(seed) for _ in range(3))
            got = sample_train_batch(tv, t, fast)
            want = np.stack([sample_train_indices_loop(v, t, loop) for v in tv])
            assert got.dtype == np.int64 and got.shape == (len(tv), t)
            np.testing.assert_array_equal(got, want)
            for row, v in zip(want, tv):   # the released random_perturb's draws, bin by bin
                if v == t:
                    continue
                s = np.arange(t) * v / t
                for i in range(t):
                    lo, hi = int(s[i]), (int(s[i + 1]) if i < t - 1 else v - 1)
                    assert row[i] == (released.choice(range(lo, hi + 1)) if hi > lo else lo)
            for a, b in ((fast, loop), (fast, released)):
                assert np.array_equal(a.get_state()[1], b.get_state()[1]) and a.get_state()[2] == b.get_state()[2]


def test_sample_train_indices_bins_large():
    rng = np.random.RandomState(1)
    for tv, T in [(2614, 750), (751, 750), (13, 750), (400, 50)]:
        lo = (np.arange(T) * tv) // T
        hi = np.append(lo[1:], tv - 1)
        for _ in range(5):
            idx = sample_train_indices(tv, T, rng)
            assert idx.shape == (T,) and idx.dtype == np.int64
            assert np.all(idx >= lo) and np.all(idx <= hi) and np.all(idx < tv)


def test_sampling_rejects_empty():
    with pytest.raises(ValueError):
        sample_test_indices(0, 5)
    with pytest.raises(ValueError):
        sample_train_indices(0, 5, np.random.RandomState(0))


# ---------------------------------------------------------------------------------------------
# synthetic set

def _syn(**kw):
    base = dict(layout="synthetic", synthetic_dim=16, feature_dim=32, synthetic_videos=3)
    base.update(kw)
    return DataConfig(**base)


def test_synthetic_real_lengths_labels_gt():
    tr, te = load_datasets(_syn(synthetic_videos=0), 20, 93)
    assert (len(tr), len(te)) == (200, 210)
    assert tr.class_names == THUMOS14_CLASSES == sorted(THUMOS14_CLASSES)
    assert tr.name == "synthetic-thumos14-train" and te.name == "synthetic-thumos14-test"
    assert tr.num_snippets.dtype == np.int64 and tr.labels.dtype == np.float32
    assert tr.labels.shape == (200, 20) and te.labels.shape == (210, 20)
    assert tr.fps == 25.0 and tr.frames_per_snippet == 16
    i = tr.videos.index("video_validation_0000051")     # 169.794 s, Billiards
    assert tr.num_snippets[i] == 265
    assert np.flatnonzero(tr.labels[i]).tolist() == [THUMOS14_CLASSES.index("Billiards")]
    j = te.videos.index("video_test_0000004")           # 33.825 s, the two cricket classes
    assert te.num_snippets[j] == 52
    assert [te.class_names[c] for c in np.flatnonzero(te.labels[j])] == ["CricketBowling", "CricketShot"]
    assert te.labels.sum(1).min() >= 1
    gt = te.ground_truth()
    assert len(gt["videos"]) == 210 and gt["segment"].shape == (3311, 2)
    assert gt["video"].shape == gt["label"].shape == (3311,) and gt["label"].dtype == np.int64
    assert gt["segment"].dtype == np.float64 and np.all(gt["segment"][:, 1] >= gt["segment"][:, 0])
    assert set(gt["video"].tolist()) <= set(te.videos)
    assert gt["ambiguous"] and set(gt["ambiguous"]) <= set(te.videos)
    assert all(a.shape[1] == 2 for a in gt["ambiguous"].values())
    names, lengths, gt2 = embedded_thumos14_test()           # the same, without features
    assert names == te.videos and lengths.tolist() == te.num_snippets.tolist()
    assert np.array_equal(gt2["segment"], gt["segment"]) and gt2["video"].tolist() == gt["video"].tolist()
    assert pathlib.Path(assets_dir("thumos14"), "gt.json").is_file()


def test_synthetic_features_and_determinism():
    tr, te = load_datasets(_syn(), 20, 93)
    f = te.features(0)
    assert f.dtype == np.float32 and f.shape == (te.num_snippets[0], 32)
    assert np.all(f >= 0) and np.isfinite(f).all() and not f.flags.writeable
    tr2, te2 = load_datasets(_syn(synthetic_videos=5), 20, 93)
    assert te2.features(0).tobytes() == f.tobytes()          # same seed: same bytes
    assert tr2.features(2).tobytes() == tr.features(2).tobytes()
    _, te3 = load_datasets(_syn(synthetic_seed=1), 20, 93)
    assert te3.features(0).shape == f.shape and not np.array_equal(te3.features(0), f)
    feats, labels = sample_batch(tr, [0, 2], 50, np.random.RandomState(0))
    assert feats.shape == (2, 50, 32) and feats.dtype == np.float32
    assert labels.shape == (2, 20) and np.array_equal(labels, tr.labels[[0, 2]])


def test_synthetic_full_size_and_max_len():
    tr, te = load_datasets(_syn(synthetic_size="full", feature_dim=2048, synthetic_videos=1), 20, 93)
    assert te.features(0).shape == (52, 2048)
    tr, te = load_datasets(_syn(synthetic_videos=0, synthetic_max_len=100), 20, 93)
    assert te.num_snippets.max() == 100
    j = te.videos.index("video_test_0000006")                  # 104 snippets -> compressed to 100
    assert te.num_snippets[j] == 100 and te.features(j).shape == (100, 32)
    _, full = load_datasets(_syn(synthetic_videos=0), 20, 93)
    g1, g0 = te.ground_truth(), full.ground_truth()
    m = g0["video"] == "video_test_0000006"
    np.testing.assert_allclose(g1["segment"][m], g0["segment"][m] * 100 / 104)


def test_synthetic_config_errors():
    with pytest.raises(DataError, match="feature_dim"):
        load_datasets(_syn(feature_dim=256), 20, 93)
    with pytest.raises(DataError, match="num_classes"):
        load_datasets(_syn(), 21, 93)
    with pytest.raises(DataError, match="k = 800"):
        load_datasets(_syn(), 20, 800)
    with pytest.raises(DataError, match="synthetic_version = 3: this release generates versions 1, 2 "):
        load_datasets(_syn(synthetic_version=3), 20, 93)


@pytest.mark.parametrize("version, col_sums, total", [
    (1, [14.2624, 25.0924, 1.4594, 17.3876, 102.2763, 37.6897, 41.0237, 5.7229], 893.203),
    (2, [20.7276, 61.9313, 27.938, 65.8094, 21.2803, 2.1631, 22.5635, 12.5038], 1253.335)])
def test_synthetic_versions_are_frozen(version, col_sums, total):
    """A released version never changes what it generates (the figures of its first release; to
    float32 rounding, which another CPU's exp/log may change in the last bit)."""
    _, te = load_datasets(_syn(synthetic_version=version), 20, 93)
    assert te.videos[0] == "video_test_0000004" and te.sources[0].startswith(f"synthetic:v{version}:")
    f = te.features(0).astype(np.float64)
    assert f.shape == (52, 32)
    np.testing.assert_allclose(f.sum(0)[:8], col_sums, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(f.sum(), total, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# fixtures: tiny datasets of each layout (classes Jump, Run; width D per stream)

TRAIN = {"v_a": (6, [("Run", 0.0, 1.0)]), "v_b": (5, [("Jump", 0.5, 2.0), ("Run", 2.0, 3.0)]),
         "v_c": (9, [("Jump", 1.0, 1.5)])}
TEST = {"t_a": (7, [("Run", 0.1, 2.2)]), "t_b": (4, [("Jump", "0.3", "1.9")])}


def _feat(t, width, seed):
    return np.random.default_rng(seed).random((t, width), dtype=np.float32)


def make_basnet(root: pathlib.Path) -> DataConfig:
    db = {}
    for sub, vids in (("train", TRAIN), ("test", TEST)):
        (root / f"split_{sub}.txt").write_text("\n".join(vids) + "\n")
        for n, (v, (t, anns)) in enumerate(vids.items()):
            db[v] = {"subset": sub, "annotations": [{"segment": [str(s), str(e)], "label": l}
                                                     for l, s, e in anns]}
            for k, s in enumerate(("rgb", "flow")):
                d = root / "features" / sub / s
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{v}.npy", _feat(t, D, 10 * n + k))
    (root / "gt.json").write_text(json.dumps({"database": db}))
    (root / "Ambiguous_test.txt").write_text("t_a 3.0 3.5\n")
    return DataConfig(layout="basnet", root=str(root), feature_dim=FD, num_segments=8)


def make_wtalc(root: pathlib.Path, prefix="Tiny") -> DataConfig:
    ann = root / f"{prefix}-Annotations"
    ann.mkdir(parents=True)
    allv = [(v, b"validation", x) for v, x in TRAIN.items()] + [(v, b"test", x) for v, x in TEST.items()]
    obj = lambda xs: np.array(xs + [None], dtype=object)[:-1]     # 1-d object array of lists
    np.save(ann / "videoname.npy", np.array([v.encode() for v, _, _ in allv]))
    np.save(ann / "subset.npy", np.array([s for _, s, _ in allv]))
    np.save(ann / "segments.npy", obj([[[float(s), float(e)] for _, s, e in x[1]] for _, _, x in allv]))
    np.save(ann / "labels.npy", obj([[l.encode() for l, _, _ in x[1]] for _, _, x in allv]))
    np.save(ann / "labels_all.npy", obj([sorted({l.encode() for l, _, _ in x[1]}) for _, _, x in allv]))
    np.save(ann / "classlist.npy", np.array([b"Run", b"Jump"]))      # file order, not alphabetical
    np.save(ann / "duration.npy", np.ones((len(allv), 1)))
    (ann / "Ambiguous_test.txt").write_text("t_b 0.0 0.2\n")
    feats = obj([_feat(x[0], FD, n) for n, (_, _, x) in enumerate(allv)])
    np.save(root / f"{prefix}-I3D-JOINTFeatures.npy", feats, allow_pickle=True)
    return DataConfig(layout="wtalc", root=str(root), dataset_name=prefix, feature_dim=FD, num_segments=8)


def make_anet(root: pathlib.Path) -> DataConfig:
    db = {}
    (root / "features").mkdir(parents=True)
    for sub, vids in (("training", TRAIN), ("validation", TEST)):
        for n, (v, (t, anns)) in enumerate(vids.items()):
            db[v] = {"subset": sub, "duration": t * 0.64,
                     "annotations": [{"segment": [float(s), float(e)], "label": l} for l, s, e in anns]}
            name = f"v_{v}" if n % 2 else v          # both naming conventions
            np.save(root / "features" / f"{name}.npy", _feat(t, FD, n))
    db["x_test"] = {"subset": "testing", "annotations": []}          # unlabelled, never loaded
    (root / "annotations.json").write_text(json.dumps({"version": "1.3", "database": db}))
    return DataConfig(layout="anet_json", root=str(root), feature_dim=FD, num_segments=8)


def test_basnet_loader(tmp_path):
    cfg = make_basnet(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)
    assert tr.class_names == ["Jump", "Run"] and tr.videos == list(TRAIN)
    assert tr.num_snippets.tolist() == [6, 5, 9] and te.num_snippets.tolist() == [7, 4]
    assert tr.labels.tolist() == [[0, 1], [1, 1], [1, 0]]
    f = tr.features(1)
    rgb = np.load(tmp_path / "features/train/rgb/v_b.npy")
    flow = np.load(tmp_path / "features/train/flow/v_b.npy")
    np.testing.assert_array_equal(f, np.concatenate([rgb, flow], 1))
    gt = te.ground_truth()
    assert gt["video"].tolist() == ["t_a", "t_b"] and gt["label"].tolist() == [1, 0]
    np.testing.assert_allclose(gt["segment"], [[0.1, 2.2], [0.3, 1.9]])
    assert list(gt["ambiguous"]) == ["t_a"]
    feats, labels = sample_batch(tr, [2, 0], 8, np.random.RandomState(0))
    assert feats.shape == (2, 8, FD) and labels.tolist() == [[1, 0], [0, 1]]


def test_wtalc_loader(tmp_path):
    cfg = make_wtalc(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)
    assert tr.class_names == ["Run", "Jump"] and tr.videos == list(TRAIN) and te.videos == list(TEST)
    assert tr.labels.tolist() == [[1, 0], [1, 1], [0, 1]]
    assert te.num_snippets.tolist() == [7, 4] and tr.name == "Tiny-train"
    assert te.features(1).shape == (4, FD)
    gt = te.ground_truth()
    assert gt["label"].tolist() == [0, 1] and list(gt["ambiguous"]) == ["t_b"]


def test_anet_json_loader(tmp_path):
    cfg = make_anet(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)            # 'train'/'test' -> 'training'/'validation'
    assert tr.videos == list(TRAIN) and te.videos == list(TEST)
    assert tr.class_names == ["Jump", "Run"] and tr.num_snippets.tolist() == [6, 5, 9]
    np.testing.assert_array_equal(tr.features(1), np.load(tmp_path / "features" / "v_v_b.npy"))
    cfg.train_subset, cfg.test_subset = "validation", "training"     # explicit names used as is
    tr2, _ = load_datasets(cfg, 2, 2)
    assert tr2.videos == list(TEST)


def test_wtalc_real_annotations(tmp_path, shared_dir):
    """The real THUMOS14 W-TALC annotation files parse (features faked, 2 snippets each)."""
    src = shared_dir / "data/thumos14/wtalc_layout"
    ann = tmp_path / "Thumos14reduced-Annotations"
    shutil.copytree(src, ann)
    n = len(np.load(ann / "videoname.npy"))
    feats = np.empty(n, dtype=object)
    for i in range(n):
        feats[i] = np.full((2, FD), 0.5, np.float32)
    np.save(tmp_path / "Thumos14reduced-I3D-JOINTFeatures.npy", feats, allow_pickle=True)
    tr, te = load_datasets(DataConfig(layout="wtalc", root=str(tmp_path), feature_dim=FD,
                                      num_segments=8), 20, 2)
    assert (len(tr), len(te)) == (200, 212) and tr.class_names == THUMOS14_CLASSES
    assert tr.labels.sum(1).min() >= 1 and len(te.ground_truth()["ambiguous"]) > 0


# ---------------------------------------------------------------------------------------------
# errors: DataError naming the video and/or file

def _raises(cfg, match, num_classes=2, k=2, **kw):
    with pytest.raises(DataError, match=match):
        load_datasets(cfg, num_classes, k, **kw)


def test_basnet_errors(tmp_path):
    cfg = make_basnet(tmp_path)
    ft = tmp_path / "features" / "train"
    # missing feature file
    p = ft / "flow" / "v_b.npy"
    p.rename(p.with_suffix(".bak"))
    _raises(cfg, r"missing feature file.*v_b.*flow/v_b\.npy")
    p.with_suffix(".bak").rename(p)
    good = p.read_bytes()
    # corrupt / truncated .npy
    p.write_bytes(b"not a numpy file at all")
    _raises(cfg, r"corrupt or unreadable.*v_b")
    p.write_bytes(good[:-10])
    _raises(cfg, r"corrupt or unreadable.*v_b")
    # wrong width, zero snippets, RGB/flow length mismatch
    np.save(p, _feat(5, D + 1, 0))
    _raises(cfg, r"v_b.*5 wide, expected 4")
    np.save(p, np.zeros((0, D), np.float32))
    _raises(cfg, r"v_b.*zero snippets")
    np.save(p, _feat(4, D, 0))
    _raises(cfg, r"v_b.*RGB has 5 snippets.*flow has 4")
    # NaN / inf: at load time with validate=True, at first access otherwise
    bad = _feat(5, D, 0)
    bad[3, 1] = np.nan
    np.save(p, bad)
    _raises(cfg, r"v_b.*NaN/inf")
    tr, _ = load_datasets(cfg, 2, 2, validate=False)
    tr.features(0)
    with pytest.raises(DataError, match=r"v_b.*NaN/inf.*snippet 3"):
        tr.features(1)
    p.write_bytes(good)
    load_datasets(cfg, 2, 2)
    # class count, labels outside the class list, k
    _raises(cfg, r"gt\.json.*2 classes found but model\.num_classes = 3", num_classes=3)
    (tmp_path / "classlist.txt").write_text("Jump\nSwim\n")
    _raises(cfg, r"video 'v_a'.*label 'Run' is not in the class list")
    (tmp_path / "classlist.txt").unlink()
    _raises(cfg, r"k = 9", k=9)
    # a split file naming a video absent from gt.json
    split = tmp_path / "split_test.txt"
    split.write_text("t_a\nt_zz\n")
    _raises(cfg, r"split_test\.txt names video 't_zz'.*absent from .*gt\.json")
    split.write_text("t_a\nt_b\n")
    # malformed segments
    gt_path = tmp_path / "gt.json"
    gt = json.loads(gt_path.read_text())
    gt["database"]["t_b"]["annotations"][0]["segment"] = ["0.3", "abc"]
    gt_path.write_text(json.dumps(gt))
    _raises(cfg, r"gt\.json: video 't_b'.*non-numeric segment")
    gt["database"]["t_b"]["annotations"][0]["segment"] = [2.0, 1.0]
    gt_path.write_text(json.dumps(gt))
    _raises(cfg, r"gt\.json: video 't_b'.*ends before it starts")
    gt_path.write_text("{not json")
    _raises(cfg, r"cannot parse annotation file .*gt\.json")


def test_wtalc_errors(tmp_path):
    cfg = make_wtalc(tmp_path)
    fpath = tmp_path / "Tiny-I3D-JOINTFeatures.npy"
    feats = np.load(fpath, allow_pickle=True)
    for i, arr, match in [(1, _feat(5, FD - 2, 0), r"v_b.*6 wide, expected 8"),
                          (3, np.zeros((0, FD), np.float32), r"t_a.*zero snippets"),
                          (4, np.full((4, FD), np.inf, np.float32), r"t_b.*NaN/inf")]:
        f2 = feats.copy()
        f2[i] = arr
        np.save(fpath, f2, allow_pickle=True)
        _raises(cfg, match)
    np.save(fpath, feats, allow_pickle=True)
    load_datasets(cfg, 2, 2)
    labs = np.load(tmp_path / "Tiny-Annotations/labels.npy", allow_pickle=True)
    labs[2] = [b"Swim"]
    np.save(tmp_path / "Tiny-Annotations/labels.npy", labs, allow_pickle=True)
    _raises(cfg, r"video 'v_c'.*label 'Swim' is not in the class list")
    fpath.unlink()
    _raises(cfg, r"missing feature file.*Tiny-I3D-JOINTFeatures\.npy")


def test_anet_json_errors(tmp_path):
    cfg = make_anet(tmp_path)
    (tmp_path / "features" / "v_v_b.npy").unlink()
    _raises(cfg, r"missing feature file.*'v_b'")
    np.save(tmp_path / "features" / "v_b.npy", _feat(5, FD, 0)[:, :3])
    _raises(cfg, r"v_b.*3 wide, expected 8")
    np.save(tmp_path / "features" / "v_b.npy", _feat(5, FD, 0))
    load_datasets(cfg, 2, 2)
    _raises(cfg, r"annotations\.json: 2 classes found", num_classes=5)
    ann = tmp_path / "annotations.json"
    db = json.loads(ann.read_text())
    db["database"]["t_a"]["annotations"][0]["segment"] = [1.0]
    ann.write_text(json.dumps(db))
    _raises(cfg, r"video 't_a'.*malformed segment")
    db["database"]["t_a"]["annotations"][0]["segment"] = [0.1, 2.2]
    ann.write_text(json.dumps(db))
    cfg.test_subset = "nosuch"
    _raises(cfg, r"subset 'nosuch' not found")
