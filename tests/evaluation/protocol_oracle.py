"""The contract PROTOCOLS.md (sections A-D) read literally, one prediction at a time, in plain
Python and NumPy: the yardstick the tests hold case_fast.evaluate(protocol=...) against. It shares
no code with the package. Inputs: ground truth as ``{video: [(class, start_s, end_s), ...]}``
(file order), predictions as ``[(video, class, score, start_s, end_s), ...]`` (results order),
ambiguous lines as ``{video: [(start_s, end_s), ...]}`` or None (no file)."""
import numpy as np

F = 25 / 16


def _u(sec):  # A3
    u = (sec * 25) / 16
    return float(round(u)) if abs(u - round(u)) <= 1e-6 else u


def _ambiguous_drop(video, us, ue, ambiguous):  # A4
    for a_s, a_e in (ambiguous or {}).get(video, []):
        p = set(range(int(us), int(ue)))
        a = set(range(int(round(a_s * F)), int(round(a_e * F))))
        if len(p | a) == 0:
            raise ZeroDivisionError(video)
        if len(p & a) / len(p | a) > 0:
            return True
    return False


def _classes(gt):
    return sorted({c for segs in gt.values() for c, _, _ in segs})


def _interpolated_ap(tp, n_gt):  # B5
    tp = np.asarray(tp, float)
    fp = 1 - tp
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / n_gt
    prec = ctp / (ctp + cfp)
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def anet(gt, preds, ambiguous, thresholds, drop_short=False):
    """co2net (B), delu (drop_short, C2): mAP per threshold."""
    classes = _classes(gt)
    g = {(v, c): [(round(s * F), round(e * F)) for cc, s, e in segs if cc == c]
         for v, segs in gt.items() for c in classes}
    n_gt = {c: sum(len(g[(v, c)]) for v in gt) for c in classes}
    kept = []
    for v, c, sc, s, e in preds:
        us, ue = _u(s), _u(e)
        if _ambiguous_drop(v, us, ue, ambiguous):
            continue
        if drop_short and not (ue - us > 1):
            continue
        kept.append((v, c, sc, us, ue))
    out = []
    for t in thresholds:
        aps = []
        for c in classes:
            cp = [p for p in kept if p[1] == c]
            if not cp:
                aps.append(0.0)
                continue
            order = np.argsort(np.array([p[2] for p in cp]))[::-1]
            lock = {}
            tp = []
            for i in order:
                v, _, _, us, ue = cp[i]
                segs = g.get((v, c), [])
                if not segs:
                    tp.append(0)
                    continue
                arr = np.array(segs, dtype=float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    inter = np.maximum(0, np.minimum(ue, arr[:, 1]) - np.maximum(us, arr[:, 0]))
                    union = (arr[:, 1] - arr[:, 0]) + (ue - us) - inter
                    tiou = inter / union
                hit = 0
                for j in np.argsort(tiou)[::-1]:
                    if tiou[j] < t:
                        break
                    if lock.get(j_key := (v, j)):
                        continue
                    lock[j_key] = True
                    hit = 1
                    break
                tp.append(hit)
            aps.append(_interpolated_ap(tp, n_gt[c]))
        out.append(float(np.mean(aps)))
    return out


def wtalc(gt, preds, ambiguous, thresholds):
    """W-TALC (D): mAP (fraction) per threshold; the predictions are taken video by video in the
    ground truth's video order (``gt``'s keys), each video's in the given order."""
    classes = _classes(gt)
    preds = [p for v in gt for p in preds if p[0] == v]
    gtlist = {c: [(v, round(s * F), round(e * F)) for v, segs in gt.items() for cc, s, e in segs
                  if cc == c] for c in classes}
    out = []
    for t in thresholds:
        aps = []
        for c in classes:
            cp = [(v, sc, int(_u(s)), int(_u(e))) for v, cc, sc, s, e in preds
                  if cc == c and v in gt and not _ambiguous_drop(v, _u(s), _u(e), ambiguous)]
            if not cp:
                aps = None
                break
            order = np.argsort(-np.array([p[1] for p in cp]))
            remaining = list(gtlist[c])
            tp = []
            for i in order:
                v, _, ps, pe = cp[i]
                hit = 0
                for j, (gv, gs, ge) in enumerate(remaining):
                    if gv != v:
                        continue
                    P, G = set(range(ps, pe)), set(range(gs, ge))
                    if len(P | G) == 0:
                        raise ZeroDivisionError(v)
                    if len(P & G) / len(P | G) >= t:
                        hit = 1
                        del remaining[j]
                        break
                tp.append(hit)
            tp = np.array(tp, float)
            prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
            aps.append(float(np.sum(prec * tp)) / len(gtlist[c]))
        out.append(0.0 if aps is None else float(np.mean(aps)))
    return out
