"""The three on-disk layouts (basnet, wtalc, anet_json): loaders and their errors."""
import json
import shutil

import numpy as np
import pytest

from case_fast.config.schema import DataConfig
from case_fast.data.annotations import DataError
from case_fast.data.synthetic_v1 import THUMOS14_CLASSES
from case_fast.data.load import load_datasets
from case_fast.data.sampling import sample_batch

def test_basnet_loader(tmp_path, layouts):
    cfg = layouts.basnet(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)
    assert tr.class_names == ["Jump", "Run"] and tr.videos == list(layouts.TRAIN)
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
    assert feats.shape == (2, 8, layouts.FD) and labels.tolist() == [[1, 0], [0, 1]]


def test_wtalc_loader(tmp_path, layouts):
    cfg = layouts.wtalc(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)
    assert tr.class_names == ["Run", "Jump"] and tr.videos == list(layouts.TRAIN) and te.videos == list(layouts.TEST)
    assert tr.labels.tolist() == [[1, 0], [1, 1], [0, 1]]
    assert te.num_snippets.tolist() == [7, 4] and tr.name == "Tiny-train"
    assert te.features(1).shape == (4, layouts.FD)
    gt = te.ground_truth()
    assert gt["label"].tolist() == [0, 1] and list(gt["ambiguous"]) == ["t_b"]


def test_anet_json_loader(tmp_path, layouts):
    cfg = layouts.anet(tmp_path)
    tr, te = load_datasets(cfg, 2, 2)            # 'train'/'test' -> 'training'/'validation'
    assert tr.videos == list(layouts.TRAIN) and te.videos == list(layouts.TEST)
    assert tr.class_names == ["Jump", "Run"] and tr.num_snippets.tolist() == [6, 5, 9]
    np.testing.assert_array_equal(tr.features(1), np.load(tmp_path / "features" / "v_v_b.npy"))
    cfg.train_subset, cfg.test_subset = "validation", "training"     # explicit names used as is
    tr2, _ = load_datasets(cfg, 2, 2)
    assert tr2.videos == list(layouts.TEST)


def test_wtalc_real_annotations(tmp_path, shared_dir, layouts):
    """The real THUMOS14 W-TALC annotation files parse (features faked, 2 snippets each)."""
    src = shared_dir / "data/thumos14/wtalc_layout"
    ann = tmp_path / "Thumos14reduced-Annotations"
    shutil.copytree(src, ann)
    n = len(np.load(ann / "videoname.npy"))
    feats = np.empty(n, dtype=object)
    for i in range(n):
        feats[i] = np.full((2, layouts.FD), 0.5, np.float32)
    np.save(tmp_path / "Thumos14reduced-I3D-JOINTFeatures.npy", feats, allow_pickle=True)
    tr, te = load_datasets(DataConfig(layout="wtalc", root=str(tmp_path), feature_dim=layouts.FD,
                                      num_segments=8), 20, 2)
    assert (len(tr), len(te)) == (200, 212) and tr.class_names == THUMOS14_CLASSES
    assert tr.labels.sum(1).min() >= 1 and len(te.ground_truth()["ambiguous"]) > 0


def _raises(cfg, match, num_classes=2, k=2, **kw):
    with pytest.raises(DataError, match=match):
        load_datasets(cfg, num_classes, k, **kw)


def test_basnet_errors(tmp_path, layouts):
    cfg = layouts.basnet(tmp_path)
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
    np.save(p, layouts.feat(5, layouts.D + 1, 0))
    _raises(cfg, r"v_b.*5 wide, expected 4")
    np.save(p, np.zeros((0, layouts.D), np.float32))
    _raises(cfg, r"v_b.*zero snippets")
    np.save(p, layouts.feat(4, layouts.D, 0))
    _raises(cfg, r"v_b.*RGB has 5 snippets.*flow has 4")
    # NaN / inf: at load time with validate=True, at first access otherwise
    bad = layouts.feat(5, layouts.D, 0)
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


def test_wtalc_errors(tmp_path, layouts):
    cfg = layouts.wtalc(tmp_path)
    fpath = tmp_path / "Tiny-I3D-JOINTFeatures.npy"
    feats = np.load(fpath, allow_pickle=True)
    for i, arr, match in [(1, layouts.feat(5, layouts.FD - 2, 0), r"v_b.*6 wide, expected 8"),
                          (3, np.zeros((0, layouts.FD), np.float32), r"t_a.*zero snippets"),
                          (4, np.full((4, layouts.FD), np.inf, np.float32), r"t_b.*NaN/inf")]:
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


def test_anet_json_errors(tmp_path, layouts):
    cfg = layouts.anet(tmp_path)
    (tmp_path / "features" / "v_v_b.npy").unlink()
    _raises(cfg, r"missing feature file.*'v_b'")
    np.save(tmp_path / "features" / "v_b.npy", layouts.feat(5, layouts.FD, 0)[:, :3])
    _raises(cfg, r"v_b.*3 wide, expected 8")
    np.save(tmp_path / "features" / "v_b.npy", layouts.feat(5, layouts.FD, 0))
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
