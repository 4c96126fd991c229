"""Results files (method.md §5 "Output"): round trip, validation, atomic strict writes."""

import json
import math
import os

import numpy as np
import pytest

from case_fast.evaluation.results import detections_from_results, read_results, results_dict
from case_fast.files import save_json


def test_results_roundtrip(tmp_path):
    res = results_dict({"A": np.array([[0, 0.9, 1.0, 2.5], [1, 0.1, 3, 4]]), "B": np.zeros((0, 4))},
                       ["c0", "c1"], config={"name": "x"})
    path = tmp_path / "r.json"
    save_json(res, str(path), None)
    det = read_results(path, ["c0", "c1"], known_videos=["A", "B"])
    assert det.video.tolist() == ["A", "A"] and det.label.tolist() == [0, 1]
    assert det.video_names == ["A", "B"] and det.video_index.tolist() == [0, 0]
    np.testing.assert_array_equal(det.segment, [[1.0, 2.5], [3.0, 4.0]])
    back = json.loads(path.read_text())
    assert back["external_data"] == {} and back["case_fast"] == {"config": {"name": "x"}, "split": "test"}


@pytest.mark.parametrize("bad, what", [
    ({"results": {"vid_x": [{"label": "c0", "score": 1, "segment": [0, 1]}]}}, "unknown video"),
    ({"results": {"A": [{"label": "nope", "score": 1, "segment": [0, 1]}]}}, "label"),
    ({"results": {"A": [{"label": "c0", "score": 1, "segment": [2, 1]}]}}, "ends before"),
    ({"results": {"A": [{"label": "c0", "score": 1, "segment": [0, 1, 2]}]}}, "segment"),
    ({"results": {"A": [{"label": "c0", "score": 1, "segment": [0, float("nan")]}]}}, "segment"),
    ({"results": {"A": [{"label": "c0", "score": float("inf"), "segment": [0, 1]}]}}, "score"),
])
def test_results_validation(bad, what):
    with pytest.raises(ValueError, match=what) as e:
        detections_from_results(bad, ["c0"], known_videos=["A"], source="f.json")
    assert "f.json" in str(e.value)
    assert ("vid_x" if what == "unknown video" else "'A'") in str(e.value)


def test_results_not_mapping():
    for bad in ([], {"results": []}):
        with pytest.raises(ValueError, match="f.json"):
            detections_from_results(bad, ["c0"], source="f.json")


def test_results_written_atomically_and_strictly(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    bad = {"version": "x", "results": {"A": [{"label": "c0", "score": object(), "segment": [0, 1]}]}}
    with pytest.raises(TypeError):
        save_json(bad, str(path))
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]
    with pytest.raises(ValueError, match=r"results\.A\[0\]\.score is nan"):  # NaN is not JSON
        save_json(results_dict({"A": np.array([[0, math.nan, 0, 1]])}, ["c0"]), str(tmp_path / "n.json"))
    assert os.listdir(tmp_path) == ["out.json"]
