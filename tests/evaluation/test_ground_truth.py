"""Ground truth loaders: BaS-Net gt.json and the W-TALC annotation folder on THUMOS14."""


import pytest

from case_fast.evaluation.ground_truth import ground_truth_from_wtalc


def test_gt_json_loader(thumos_gt):
    gt = thumos_gt
    assert len(gt.videos) == 210 and len(gt.class_names) == 20
    assert gt.class_names == sorted(gt.class_names)
    assert gt.label.size > 3000 and (gt.segment[:, 1] >= gt.segment[:, 0]).all()


def test_wtalc_loader(shared_dir):
    d = shared_dir / "data" / "thumos14" / "wtalc_layout"
    if not (d / "videoname.npy").is_file():
        pytest.skip("W-TALC annotations not available")
    gt = ground_truth_from_wtalc(d)
    assert len(gt.videos) == 212 and len(gt.class_names) == 20
    assert gt.ambiguous and all(a.shape[1] == 2 for a in gt.ambiguous.values())
    assert "video_test_0000278" in gt.ambiguous
    assert ground_truth_from_wtalc(d, subset=b"test").videos == gt.videos
