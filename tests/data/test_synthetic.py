"""The synthetic THUMOS14-shaped set: lengths, labels, ground truth, determinism, frozen versions."""
import pathlib

import numpy as np
import pytest

from case_fast.config.schema import DataConfig
from case_fast.data.annotations import DataError
from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
from case_fast.data.synthetic import assets_dir, embedded_thumos14_test
from case_fast.data.load import load_datasets
from case_fast.data.sampling import sample_batch

D = 4           # per-stream width of the fixtures


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
