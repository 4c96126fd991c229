"""Fixtures shared by the evaluation tests."""
import pytest

from case_fast.evaluation.ground_truth import ground_truth_from_gt_json


@pytest.fixture(scope="module")
def thumos_gt(shared_dir):
    d = shared_dir / "data" / "thumos14" / "bas_net_layout"
    if not (d / "gt.json").is_file():
        pytest.skip("THUMOS14 gt.json not available")
    return ground_truth_from_gt_json(d / "gt.json", d / "split_test.txt")
