"""The protocols co2net, delu and wtalc (case_fast/evaluation/protocols.py) against the contract PROTOCOLS.md:
one hand-made case per rule where the rule changes the number, random files where the compiled
path and the reference agree bit for bit and both agree with a literal reading of the contract
(tests/protocol_oracle.py), and the real 212-video THUMOS14 ground truth."""
import json

import numpy as np
import pytest

import case_fast.evaluation.compiled_ap as ap_fast
import protocol_oracle as oracle
from case_fast.evaluation import protocols as P
from case_fast.cli.main import main
from case_fast.evaluation.results import Detections
from case_fast.evaluation.ground_truth import GroundTruth
from case_fast.evaluation.metric import evaluate

BACKENDS = ["reference"] + (["fast"] if ap_fast.available_first_fit() else [])
SNIP = 16 / 25  # seconds per snippet


def _gt(rows, videos=("A", "B"), n_cls=2, ambiguous=None):
    """rows: (video, class, start_s, end_s)."""
    return GroundTruth([r[0] for r in rows], [r[1] for r in rows],
                       [(r[2], r[3]) for r in rows], list(videos),
                       [f"c{i}" for i in range(n_cls)], ambiguous or {})


def _det(rows):
    """rows: (video, class, score, start_s, end_s)."""
    return Detections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                      [(r[3], r[4]) for r in rows])


def _ap(det, gt, protocol, tiou, backend, cls=0):
    return evaluate(det, gt, tiou, protocol=protocol, backend=backend)["ap"][:, cls]


# ------------------------------------------------------------------------ one rule, one case


@pytest.mark.parametrize("backend", BACKENDS)
def test_gt_rounds_half_to_even(backend):
    """A2: 20.8 s -> 32.5 -> 32 and 24.0 s -> 37.5 -> 38. The prediction [32, 38) snippets then
    has tIoU 1; half-up ([33, 38)) would give 5/6 and miss at 0.9."""
    gt = _gt([("A", 0, 20.8, 24.0), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 32 * SNIP, 38 * SNIP), ("A", 1, 0.5, 0, 5)])
    for proto in ("co2net", "wtalc"):
        assert _ap(det, gt, proto, (0.9,), backend).tolist() == [1.0]
    assert P.gt_to_snippets(np.array([20.8, 24.0])).tolist() == [32.0, 38.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_length_gt_counts_toward_recall(backend):
    """A2: [52.3, 52.7] s rounds to [82, 82] and stays in the class's GT total: a perfect
    prediction of the other segment gets AP 1/2, not 1."""
    gt = _gt([("A", 0, 52.3, 52.7), ("A", 0, 0.0, 6.4), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 0.0, 6.4), ("A", 1, 0.5, 0, 5)])
    for proto in ("co2net", "delu", "wtalc"):
        assert _ap(det, gt, proto, (0.5,), backend).tolist() == [0.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seconds_snap_onto_snippets(backend):
    """A3: 29 snippets written as 29 * 16 / 25 s come back as 28.999999999999996 snippets; snapped
    they are 29, so the prediction [26, 29) equals the GT: tIoU 1 (CO2-Net at 1.0) and W-TALC's
    int() keeps all three snippets (unsnapped: [26, 28), IoU 2/3)."""
    assert (29 * SNIP * 25) / 16 < 29 and P.to_snippets(np.array([29 * SNIP])).tolist() == [29.0]
    gt = _gt([("A", 0, 26 * SNIP, 29 * SNIP), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 26 * SNIP, 29 * SNIP), ("A", 1, 0.5, 0, 5)])
    assert _ap(det, gt, "co2net", (1.0,), backend).tolist() == [1.0]
    assert _ap(det, gt, "wtalc", (0.9,), backend).tolist() == [1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ambiguous_filter_on_the_snippet_grid(backend):
    """A4: the line [0.0, 1.4] s covers snippets {0, 1}; the prediction [1.3, 3.2] s covers
    {2, 3, 4}: no shared snippet, so it is kept (in seconds it overlaps and would be dropped).
    [0.5, 3.2] s starts in snippet 0 and is dropped."""
    gt = _gt([("A", 0, 1.3, 3.2), ("B", 1, 0, 5)], ambiguous={"A": [[0.0, 1.4]]})
    kept = _det([("A", 0, 0.9, 1.3, 3.2), ("B", 1, 0.5, 0, 5)])
    dropped = _det([("A", 0, 0.9, 0.5, 3.2), ("B", 1, 0.5, 0, 5)])
    for proto in ("co2net", "delu", "wtalc"):
        m = evaluate(kept, gt, (0.5,), protocol=proto, backend=backend)
        assert m["n_ambiguous_dropped"] == 0 and m["ap"][0, 0] == 1.0
        m = evaluate(dropped, gt, (0.5,), protocol=proto, backend=backend)
        assert m["n_ambiguous_dropped"] == 1 and m["ap"][0, 0] == 0.0
    m = evaluate(kept, gt, (0.5,), ambiguous_filter=True, backend=backend)  # basnet210, seconds
    assert m["n_ambiguous_dropped"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_delu_drops_one_snippet_strictly(backend):
    """C2: DELU keeps only u_e - u_s > 1 snippet; a one-snippet prediction equal to a one-snippet
    GT is a TP under co2net and gone under delu."""
    gt = _gt([("A", 0, 10 * SNIP, 11 * SNIP), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 10 * SNIP, 11 * SNIP), ("A", 1, 0.5, 0, 5)])
    assert _ap(det, gt, "co2net", (0.5,), backend).tolist() == [1.0]
    m = evaluate(det, gt, (0.5,), protocol="delu", backend=backend)
    assert m["ap"][0, 0] == 0.0 and m["n_short_dropped"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_fit_against_best_tiou(backend):
    """D5: GT [0, 10) and [2, 10) snippets; the first prediction [2, 10) takes [0, 10) (IoU 0.8,
    first in the list) under W-TALC, [2, 10) (tIoU 1) under CO2-Net; the second [0, 8) then
    finds only [2, 10) at 0.6 < 0.7: W-TALC 1 TP of 2, CO2-Net 2 of 2."""
    gt = _gt([("A", 0, 0, 10 * SNIP), ("A", 0, 2 * SNIP, 10 * SNIP), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 2 * SNIP, 10 * SNIP), ("A", 0, 0.8, 0, 8 * SNIP), ("A", 1, 0.5, 0, 5)])
    assert _ap(det, gt, "co2net", (0.7,), backend).tolist() == [1.0]
    assert _ap(det, gt, "wtalc", (0.7,), backend).tolist() == [0.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wtalc_ap_is_not_interpolated(backend):
    """D6: ranks FP, TP, TP with 2 GT: W-TALC (1/2 + 2/3) / 2 = 7/12, the interpolated AP 2/3."""
    gt = _gt([("A", 0, 0, 6.4), ("A", 0, 12.8, 19.2), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 30, 40), ("A", 0, 0.8, 0, 6.4), ("A", 0, 0.7, 12.8, 19.2),
                ("A", 1, 0.5, 0, 5)])
    assert _ap(det, gt, "wtalc", (0.5,), backend)[0] == pytest.approx(7 / 12, abs=1e-15)
    assert _ap(det, gt, "co2net", (0.5,), backend)[0] == pytest.approx(2 / 3, abs=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_class_zeroes_a_wtalc_threshold(backend):
    """D3: a class without predictions makes W-TALC report 0 at the threshold; CO2-Net gives that
    class AP 0 and averages."""
    gt = _gt([("A", 0, 0, 6.4), ("A", 1, 0, 6.4)])
    det = _det([("A", 0, 0.9, 0, 6.4)])
    m = evaluate(det, gt, protocol="wtalc", backend=backend)
    assert m["map"] == [0.0] * 5 and m["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5] and m["zeroed_by"] == ["c1"]
    assert evaluate(det, gt, protocol="co2net", backend=backend)["map"][0] == 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_videos(backend):
    """B4: CO2-Net counts a prediction on a video outside the ground truth as a false positive (here
    at rank 1: AP 1/2); D3: W-TALC drops it; basnet210 refuses it."""
    gt = _gt([("A", 0, 0, 6.4), ("A", 1, 0, 6.4)])
    det = _det([("Z", 0, 0.9, 0, 6.4), ("A", 0, 0.8, 0, 6.4), ("A", 1, 0.5, 0, 6.4)])
    m = evaluate(det, gt, (0.5,), protocol="co2net", backend=backend)
    assert m["ap"][0, 0] == 0.5 and m["unknown_videos"] == {"Z": 1}
    assert _ap(det, gt, "wtalc", (0.5,), backend).tolist() == [1.0]
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate(det, gt, (0.5,), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wtalc_takes_videos_in_its_order(backend):
    """D3: W-TALC's input is video by video in its (videoname.npy) order, whatever the results
    file's order: with tied scores, A's TP ranks before B's FP (AP 1), not after (1/2)."""
    gt = _gt([("A", 0, 0, 6.4), ("B", 1, 0, 6.4)])
    det = _det([("B", 0, 0.5, 0, 6.4), ("B", 1, 0.5, 0, 6.4), ("A", 0, 0.5, 0, 6.4)])
    assert _ap(det, gt, "wtalc", (0.5,), backend).tolist() == [1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_over_zero_tiou(backend):
    """B2: two zero-length segments have tIoU 0/0 = NaN, which passes every threshold: a
    zero-length prediction anywhere in the video takes the zero-length GT [82, 82] (one of them;
    the second is an FP), a positive-length one never does."""
    gt = _gt([("A", 0, 52.3, 52.7), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 10.0, 10.0), ("A", 0, 0.8, 30.0, 30.0), ("A", 0, 0.95, 52.0, 53.0),
                ("A", 1, 0.5, 0, 5)])
    ap = _ap(det, gt, "co2net", (0.1, 0.9), backend)
    assert ap.tolist() == [0.5, 0.5]  # ranks FP, TP, FP with 1 GT
    with pytest.raises(ValueError, match="divides by zero"):  # D4: the released W-TALC crashes
        evaluate(det, gt, protocol="wtalc", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_tie_order_of_candidates(backend):
    """B4: [2, 6) ties at tIoU 1/3 with GT [0, 4) and [4, 8); numpy's reversed argsort of the two
    visits [4, 8) first (insertion sort keeps ties in place), so the second prediction [4, 8) finds
    its segment taken: AP 1/2 (a stable order would give 1)."""
    gt = _gt([("A", 0, 0, 4 * SNIP), ("A", 0, 4 * SNIP, 8 * SNIP), ("A", 1, 0, 5)])
    det = _det([("A", 0, 0.9, 2 * SNIP, 6 * SNIP), ("A", 0, 0.8, 4 * SNIP, 8 * SNIP),
                ("A", 1, 0.5, 0, 5)])
    assert _ap(det, gt, "co2net", (0.3,), backend).tolist() == [0.5]


def test_backend_words(monkeypatch):
    """evaluate takes case_fast.ops' words: 'auto' runs the reference when the ops are missing,
    'fast' is then an error (never silently the reference)."""
    det, gt = _det([("A", 0, 0.5, 0, 1)]), _gt([("A", 0, 0, 1)], n_cls=1)
    monkeypatch.setattr(ap_fast, "available", lambda: False)
    monkeypatch.setattr(ap_fast, "available_first_fit", lambda: False)
    assert evaluate(det, gt, backend="auto")["map"] == [1.0] * 7
    for proto in ("basnet210", "wtalc"):
        with pytest.raises(RuntimeError, match="backend='fast'"):
            evaluate(det, gt, protocol=proto, backend="fast")


def test_protocol_names():
    assert P.get("wtalc212") is P.PROTOCOLS["co2net"]
    with pytest.raises(ValueError, match="co2net, delu, wtalc"):
        P.get("wtalc213")
    for b in ("auto", "reference"):
        evaluate(_det([("A", 0, 0.5, 0, 1)]), _gt([("A", 0, 0, 1)]), backend=b)
    with pytest.raises(ValueError, match="backend"):
        evaluate(_det([("A", 0, 0.5, 0, 1)]), _gt([("A", 0, 0, 1)]), backend="quick")


# ------------------------------------------------------------------------ random files


def _random_case(seed, n_vid=6, n_det=500):
    """Ground truth on and off the snippet grid (halves, zero lengths, duplicates), predictions in
    snippets * 16 / 25 s and in free seconds, rounded scores (ties), a video outside the GT."""
    r = np.random.default_rng(seed)
    vids = [f"v{i}" for i in range(n_vid)]
    rows = []
    for v in vids:
        for _ in range(int(r.integers(1, 15))):
            c = int(r.integers(0, 3))
            s = float(np.round(r.uniform(0, 60), 1))
            e = s + (0.0 if r.random() < 0.05 else float(np.round(r.uniform(0.3, 8), 1)))
            rows.append((v, c, s, e))
    if not {1, 2} <= {c for _, c, _, _ in rows}:
        rows += [(vids[0], 1, 3.0, 6.0), (vids[0], 2, 8.0, 9.0)]
    amb = {vids[0]: [[10.0, 14.0]], vids[1]: [[0.0, 1.4], [40.3, 41.0]]}
    preds = []
    for _ in range(n_det):
        v, c, s, e = rows[int(r.integers(0, len(rows)))]
        if r.random() < 0.6:
            a = max(0, round(s / SNIP) + int(r.integers(-2, 3)))
            b = max(a + int(r.random() < 0.8), round(e / SNIP) + int(r.integers(-2, 3)))
            s2, e2 = a * SNIP, b * SNIP
        else:
            s2 = max(0.0, s + float(r.normal(0, 1)))
            e2 = max(s2, e + float(r.normal(0, 1)))
        if r.random() < 0.1:
            c = int(r.integers(0, 3))
        if r.random() < 0.03:
            v = "outside"
        preds.append((v, c, float(np.round(r.random(), 1)), s2, e2))
    return rows, vids, amb, preds


def _oracle(proto, rows, amb, preds, thr):
    g = {}
    for v, c, s, e in rows:
        g.setdefault(v, []).append((c, s, e))
    if proto == "wtalc":
        return oracle.wtalc(g, preds, amb, thr)
    return oracle.anet(g, preds, amb, thr, drop_short=proto == "delu")


@pytest.mark.parametrize("seed", range(4))
def test_random_files_fast_reference_and_contract(seed):
    rows, vids, amb, preds = _random_case(seed)
    gt = _gt(rows, vids, 3, amb)
    det = _det(preds)
    for proto in ("co2net", "delu", "wtalc"):
        thr = P.get(proto).tiou
        if proto == "wtalc":  # W-TALC's 0/0 (D4) would crash the released code: not asked here
            cells = np.trunc(P.to_snippets(det.segment))
            ok = cells[:, 1] > cells[:, 0]
            d, pr = _det([p for p, k in zip(preds, ok) if k]), [p for p, k in zip(preds, ok) if k]
        else:
            d, pr = det, preds
        ref = evaluate(d, gt, protocol=proto, backend="reference")
        if ap_fast.available():
            fast = evaluate(d, gt, protocol=proto, backend="fast")
            assert np.array_equal(fast["ap"], ref["ap"]) and fast["map"] == ref["map"], proto
        np.testing.assert_allclose(ref["map"], _oracle(proto, rows, amb, pr, thr), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------ THUMOS14, 212 videos


@pytest.fixture(scope="module")
def thumos(shared_dir):
    from case_fast.evaluation.ground_truth import ground_truth_from_wtalc

    return ground_truth_from_wtalc(shared_dir / "data/thumos14/wtalc_layout")


def _thumos_predictions(gt, seed, n=4000):
    r = np.random.default_rng(seed)
    pick = r.integers(0, len(gt.label), n)
    sn = np.round(gt.segment[pick] * 25 / 16) + r.integers(-3, 4, (n, 2))
    sn = np.sort(np.maximum(sn, 0), axis=1)
    sn[:, 1] = np.maximum(sn[:, 1], sn[:, 0] + 1)
    sec = sn * 16 / 25
    free = r.random(n) < 0.3
    sec[free] = np.sort(np.maximum(gt.segment[pick][free] + r.normal(0, 1, (free.sum(), 2)), 0), axis=1)
    sec[free, 1] = np.maximum(sec[free, 1], sec[free, 0] + 0.7)  # > one snippet: no W-TALC 0/0
    lab = gt.label[pick].copy()
    other = r.random(n) < 0.2
    lab[other] = r.integers(0, gt.n_classes, other.sum())
    return gt.video[pick], lab, np.round(r.random(n), 2), sec


def test_thumos14_212_videos(thumos):
    gt = thumos
    assert len(gt.videos) == 212 and len(gt.label) == 3358 and gt.n_classes == 20
    g = gt_to_snip = P.gt_to_snippets(gt.segment)
    assert int((g[:, 1] == g[:, 0]).sum()) == 17  # A2: kept, counted
    half_up = np.floor(gt.segment * 25 / 16 + 0.5)
    assert int((half_up != gt_to_snip).sum()) == 100
    v, lab, score, sec = _thumos_predictions(gt, 0)
    det = Detections(v, lab, score, sec)
    rows = list(zip(gt.video.tolist(), gt.label.tolist(), gt.segment[:, 0], gt.segment[:, 1]))
    amb = {k: a.tolist() for k, a in gt.ambiguous.items()}
    preds = list(zip(v.tolist(), lab.tolist(), score.tolist(), sec[:, 0], sec[:, 1]))
    for proto in ("co2net", "delu", "wtalc"):
        m = evaluate(det, gt, protocol=proto)
        np.testing.assert_allclose(m["map"], _oracle(proto, rows, amb, preds, m["tiou"]),
                                   rtol=0, atol=1e-12)
        assert m["n_ambiguous_dropped"] > 0
        if ap_fast.available():
            assert np.array_equal(m["ap"], evaluate(det, gt, protocol=proto, backend="reference")["ap"])


def test_cli_protocols(thumos, shared_dir, tmp_path, capsys):
    from case_fast.evaluation.results import read_results

    gt = thumos
    v, lab, score, sec = _thumos_predictions(gt, 1, n=1500)
    per = {}
    for vv, c, s, (a, b) in zip(v, lab, score, sec):
        per.setdefault(vv, []).append((gt.class_names[c], s, a, b))
    res = {"results": {k: [{"label": c, "score": float(s), "segment": [float(a), float(b)]}
                           for c, s, a, b in p] for k, p in per.items()}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    folder = str(shared_dir / "data/thumos14/wtalc_layout")
    det = read_results(path, gt.class_names)  # the file's order (video by video)
    for proto in ("co2net", "delu", "wtalc", "wtalc212"):
        assert main(["eval", str(path), "--gt", folder, "--protocol", proto, "--json", "-"]) == 0
        out = capsys.readouterr()
        got = json.loads(out.out)
        want = evaluate(det, gt, protocol=proto)
        assert got["map"] == want["map"] and got["protocol"] == P.get(proto).name
        assert f"protocol {P.get(proto).name}: reproduces" in out.err
    assert main(["eval", str(path), "--gt", folder, "--protocol", "all"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{p} " in out for p in ("basnet210", "co2net", "delu", "wtalc"))


@pytest.mark.parametrize("protocol", ["co2net", "delu", "wtalc"])
def test_training_evaluator_scores_by_data_protocol(tmp_path, protocol, layouts):
    """data.protocol on the W-TALC layout: the trainer's Evaluator scores its proposals by that
    protocol's rules (the same numbers as evaluate(protocol=...) on them); wtalc without
    Ambiguous_test.txt is refused, as case-fast eval refuses it."""
    import torch

    from case_fast.config.schema import Config, ModelConfig
    from case_fast.data.load import load_datasets
    from case_fast.training.periodic_eval import Evaluator, proposals_to_detections
    from case_fast.method.model import CaseModel

    cfg = Config(data=layouts.wtalc(tmp_path), model=ModelConfig(num_classes=2, stream_dim=layouts.D, hidden_dim=8,
                                                              num_clusters=2))
    cfg.data.protocol = protocol
    _, test = load_datasets(cfg.data, 2, cfg.k)
    torch.manual_seed(0)
    model = CaseModel(cfg.model)
    metrics, props = Evaluator(test, cfg, torch.device("cpu"))(model, torch.rand(2, 2 * layouts.D))
    want = evaluate(proposals_to_detections(props), Evaluator(test, cfg, "cpu").gt,
                    tuple(cfg.infer.tiou), protocol=protocol)
    assert metrics["protocol"] == protocol and metrics["map"] == want["map"]
    if protocol == "wtalc":
        (tmp_path / "Tiny-Annotations/Ambiguous_test.txt").unlink()
        _, test = load_datasets(cfg.data, 2, cfg.k)
        with pytest.raises(ValueError, match="Ambiguous_test.txt"):
            Evaluator(test, cfg, torch.device("cpu"))
