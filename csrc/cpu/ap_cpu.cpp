// Detection AP on the CPU (method.md §6): bitwise the APs of case_fast.evaluation.metric's reference backend.
//
// Two ops, with numpy's argsort between them (numpy's sort fixes the order of tied scores, so
// the ranking itself stays numpy's):
// * ap_group checks the predictions (label range, finite values) and groups them by class with a
//   stable counting sort: the class offsets, the class-major prediction indices and scores; the
//   caller ranks each class with np.argsort of its scores (the very array the reference sorts).
// * ap_classes computes the APs of some classes from their predictions and those argsorts.
//   One thread; the caller passes every class to compute in one call. Per class:
//   1. gather_class / find_candidates, in input order: for each prediction, the GT segments of
//      its video with tIoU >= the lowest threshold, ordered by tIoU descending, each with its
//      level (the number of thresholds that it reaches); kept inline when there are at most two
//      (almost always), else in an overflow list. Among equal tIoUs the released evaluator takes
//      the order of numpy.argsort(tiou)[::-1] over all the video's GT of the class, which only
//      numpy knows (it differs between CPUs and array sizes): such predictions are returned as
//      `tied` (their class is not matched, its APs NaN), and the caller passes numpy's order for
//      them back (tie_pos / tie_offsets / tie_gt) in a second call for those classes;
//   2. class_match, in ranking order (the argsort reversed): per GT a bitmask of the thresholds
//      at which it is matched; each threshold goes to the prediction's first candidate that
//      reaches it and is still free there;
//   3. the AP of each threshold from its TP ranks.
//   Variant 1 (W-TALC's detectionMAP, the protocol `wtalc`): the candidates in GT order instead
//   (first fit; ties cannot matter) and the AP = (sum of k / r_k over the TPs) / n_gt.
// tIoU is the reference's float64 expression
//   inter = min(e, ge) - max(s, gs);  tIoU = inter > 0 ? inter / (((e - s) + (ge - gs)) - inter) : 0.
// The AP of (threshold, class) is summed as the reference does: the terms
// (k / n_gt - (k - 1) / n_gt) * P_k over the TPs (k-th TP at 1-based rank r_k, P_k the running
// max from the right of k / r_k), plus a 0 term when recall stays below 1, added with numpy's
// pairwise summation (numpy_sum.h). -ffp-contract=off: no FMA.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "../ap.h"
#include "../numpy_sum.h"

namespace case_fast {

namespace {

void check_seg(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kDouble && t.dim() == 2 &&
                  t.size(1) == 2,
              "ap: ", name, " must be a float64 CPU tensor (n, 2)");
}

// int64 CPU vector; of n entries unless n < 0
void check_index(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kLong && t.dim() == 1,
              "ap: ", name, " must be a 1-D int64 CPU tensor");
  TORCH_CHECK(n < 0 || t.size(0) == n, "ap: ", name, " must have ", n, " entries");
}

void check_offsets(const int64_t* o, int64_t groups, int64_t n, const char* name) {
  TORCH_CHECK(o[0] == 0 && o[groups] == n, "ap: ", name, " must run from 0 to ", n);
  for (int64_t i = 0; i < groups; ++i)
    TORCH_CHECK(o[i] <= o[i + 1], "ap: ", name, " must be non-decreasing");
}

// AP of one (threshold, class) from its m TP ranks (1-based, ascending); `terms` is scratch.
double interpolated_ap(const int64_t* tp_rank, int64_t m, int64_t n_gt,
                       std::vector<double>& terms) {
  if (m == 0) return 0.0;
  terms.resize(m + 1);
  const double npos = double(n_gt);
  double run_max = 0.0;
  for (int64_t k = m; k >= 1; --k) {
    const double prec = double(k) / double(tp_rank[k - 1]);
    run_max = std::max(run_max, prec);
    terms[k - 1] = (double(k) / npos - double(k - 1) / npos) * run_max;
  }
  int64_t len = m;
  if (m < n_gt) terms[len++] = 0.0;  // the last recall step to 1 at precision 0
  return numpy_sum(terms.data(), len);
}

// W-TALC's AP of one (threshold, class): the precisions k / r_k at the TP ranks, summed with
// numpy's pairwise summation, over n_gt; 0 without TP (not interpolated).
double precision_sum_ap(const int64_t* tp_rank, int64_t m, int64_t n_gt,
                        std::vector<double>& terms) {
  if (m == 0) return 0.0;
  terms.resize(m);
  for (int64_t k = 1; k <= m; ++k) terms[k - 1] = double(k) / double(tp_rank[k - 1]);
  return numpy_sum(terms.data(), m) / double(n_gt);
}

// level(x) = the number of thresholds <= x (thr: the n sorted thresholds).
struct Levels {
  const double* thr;
  int64_t n;
  inline int32_t operator()(double x) const {
    int32_t c = 0;
    for (int64_t u = 0; u < n; ++u) c += x >= thr[u];
    return c;
  }
};

// The ground truth of one class, per video a block of its segments sorted by start (ties:
// GroundTruth order) with the running max of the ends, padded to a multiple of 4 with at least
// two pads (start +inf, end -inf, pmax +inf: never counted, never overlapping).
struct ClassGt {
  std::vector<int64_t> off;  // (n_vid + 1,) block offsets
  std::vector<double> start, end, pmax;
  std::vector<int32_t> index;  // the segment's index in the class (GroundTruth order)
  int64_t max_block = 0;

  // gs: the class's segments from row 0; video v's at rows [goff[v], goff[v + 1]) - goff[0]
  void build(const double* gs, const int64_t* goff, int64_t n_vid) {
    off.resize(n_vid + 1);
    off[0] = 0;
    max_block = 0;
    for (int64_t v = 0; v < n_vid; ++v) {
      const int64_t n = goff[v + 1] - goff[v];
      off[v + 1] = off[v] + (n ? (n + 2 + 3) & ~int64_t(3) : 0);
      max_block = std::max(max_block, off[v + 1] - off[v]);
    }
    const int64_t total = off[n_vid];
    start.assign(total, std::numeric_limits<double>::infinity());
    end.assign(total, -std::numeric_limits<double>::infinity());
    pmax.assign(total, std::numeric_limits<double>::infinity());
    index.assign(total, 0);
    std::vector<int64_t> rows;
    for (int64_t v = 0; v < n_vid; ++v) {
      const int64_t a = goff[v] - goff[0], n = goff[v + 1] - goff[v];
      if (n == 0) continue;
      rows.resize(n);
      for (int64_t j = 0; j < n; ++j) rows[j] = a + j;
      std::stable_sort(rows.begin(), rows.end(),
                       [&](int64_t x, int64_t y) { return gs[2 * x] < gs[2 * y]; });
      double run = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t t = off[v] + j, row = rows[j];
        start[t] = gs[2 * row];
        end[t] = gs[2 * row + 1];
        run = j == 0 ? end[t] : std::max(run, end[t]);
        pmax[t] = run;
        index[t] = int32_t(row);
      }
    }
  }
};

// numpy's candidate order for some predictions of a class (class-local positions, ascending): the
// GT indices (in the class) of prediction pos[q] in that order are gt[off[q] : off[q + 1]].
struct TieOrders {
  const int64_t* pos = nullptr;
  const int64_t* off = nullptr;
  const int64_t* gt = nullptr;
  int64_t n = 0;
};

// A candidate: GT index in the class and level (0: none). Per prediction two inline slots; when
// it has more than two candidates, slot1.level = -(1 + p): ovf[p] = count, then (gt, level) pairs.
struct Cand {
  int32_t gt;
  int32_t level;
};
struct Slots {
  Cand c0, c1;
};

// Per-thread buffers, reused from call to call (no page faults for fresh memory per class).
struct Scratch {
  std::vector<double> seg;    // (m, 2) the class's predictions, class order
  std::vector<int32_t> vid;   // (m,)
  std::vector<Slots> slots;   // (m,)
  std::vector<int32_t> ovf;
  std::vector<Cand> many;     // candidates of one prediction with more than two
  std::vector<double> many_iou;
  std::vector<int64_t> tied;  // class-local positions of predictions with tied candidates
  std::vector<uint64_t> matched;
  std::vector<int64_t> tp;    // (n_thr, min(m, n_gt)) TP ranks per threshold
  std::vector<int64_t> n_tp;
  std::vector<double> terms;
  ClassGt gt;
};

// This thread's buffers (one TLS look-up per call, not one per use in the loops).
__attribute__((noinline)) Scratch& thread_scratch() {
  static thread_local Scratch w;
  return w;
}

// Gathers (and checks) the segments and videos of the m predictions `order` of one class into
// w.seg / w.vid (a video index < n_vid).
void gather_class(const double* seg, const int64_t* video, const int64_t* lut, int64_t n,
                  int64_t n_lut, int64_t n_vid, const int64_t* order, int64_t m, Scratch& w) {
  w.seg.resize(2 * m);
  w.vid.resize(m);
  double* cs = w.seg.data();
  int32_t* cv = w.vid.data();
  for (int64_t k = 0; k < m; ++k) {
    const int64_t i = order[k];
    TORCH_CHECK(i >= 0 && i < n, "ap: order index out of range");
    const int64_t code = video[i];
    TORCH_CHECK(code >= 0 && code < n_lut, "ap: video code out of range");
    const int64_t v = lut[code];
    TORCH_CHECK(v >= 0 && v < n_vid, "ap: video index out of range");
    cs[2 * k] = seg[2 * i];
    cs[2 * k + 1] = seg[2 * i + 1];
    cv[k] = int32_t(v);
  }
}

// Step 1: the candidates of the gathered predictions into w.slots / w.ovf. For a prediction
// [s, e] and its video's block [a, b): from the first entry whose running-max end is > s
// (nothing before it overlaps), the next two entries are computed branch-free and stored in
// candidate order; only when a third entry starts before e are all of them collected by
// insertion (tIoU desc, index desc). Predictions whose candidates tie in tIoU go to w.tied,
// unless `ties` gives their order (gs: the class's GT segments by index in the class).
void find_candidates(const ClassGt& g, const double* gs, int64_t m, Levels level, double lowest,
                     const TieOrders& ties, bool first_fit, Scratch& w) {
  const double* gst = g.start.data();
  const double* gen = g.end.data();
  const double* gpm = g.pmax.data();
  const int32_t* gix = g.index.data();
  const int64_t* goff = g.off.data();
  const double* cs = w.seg.data();
  const int32_t* cv = w.vid.data();
  w.slots.resize(m);
  Slots* slots = w.slots.data();
  w.ovf.clear();
  w.many.resize(g.max_block);
  w.many_iou.resize(g.max_block);
  Cand* many = w.many.data();
  double* many_iou = w.many_iou.data();
  const Cand none{0, 0};
  w.tied.clear();
  int64_t next_tie = 0;
  auto store_many = [&](int64_t k, int64_t n_many) {
    if (n_many <= 2) {
      slots[k].c0 = n_many > 0 ? many[0] : none;
      slots[k].c1 = n_many > 1 ? many[1] : none;
      return;
    }
    TORCH_CHECK(w.ovf.size() < size_t(std::numeric_limits<int32_t>::max() / 2),
                "ap: too many candidates");
    slots[k].c1 = Cand{0, -int32_t(w.ovf.size()) - 1};
    w.ovf.push_back(int32_t(n_many));
    for (int64_t q = 0; q < n_many; ++q) {
      w.ovf.push_back(many[q].gt);
      w.ovf.push_back(many[q].level);
    }
  };
  for (int64_t k = 0; k < m; ++k) {
    const int64_t v = cv[k], a = goff[v], b = goff[v + 1];
    if (a == b) {  // no ground truth of this class in this video: FP
      slots[k] = Slots{none, none};
      continue;
    }
    const double s = cs[2 * k], e = cs[2 * k + 1], len = e - s;
    if (next_tie < ties.n && ties.pos[next_tie] == k) {  // numpy's order, given by the caller
      int64_t n_many = 0;
      for (int64_t q = ties.off[next_tie]; q < ties.off[next_tie + 1]; ++q) {
        const int64_t row = ties.gt[q];
        TORCH_CHECK(row >= 0 && row <= std::numeric_limits<int32_t>::max() &&
                        n_many < g.max_block,
                    "ap: tie order out of range");
        const double g0 = gs[2 * row], g1 = gs[2 * row + 1];
        const double inter = std::min(e, g1) - std::max(s, g0);
        const double u = inter / ((len + (g1 - g0)) - inter);
        if ((inter > 0.0) & (u >= lowest)) many[n_many++] = Cand{int32_t(row), level(u)};
      }
      ++next_tie;
      store_many(k, n_many);
      continue;
    }
    int64_t j = std::upper_bound(gpm + a, gpm + b, s) - gpm;
    double iou[2];
    bool ok[2];
    Cand x[2];
    for (int t = 0; t < 2; ++t) {
      const double g0 = gst[j + t], g1 = gen[j + t];
      const double inter = std::min(e, g1) - std::max(s, g0);
      iou[t] = inter / ((len + (g1 - g0)) - inter);
      ok[t] = (inter > 0.0) & (iou[t] >= lowest);  // (inter > 0: also g0 < e, not a pad)
      x[t] = Cand{gix[j + t], level(iou[t]) & -int32_t(ok[t])};
    }
    const bool tie = ok[0] & ok[1] & (iou[1] == iou[0]) & !first_fit;
    const bool swap = ok[0] & ok[1] &
                      (first_fit ? (x[1].gt < x[0].gt)
                                 : ((iou[1] > iou[0]) | (tie & (x[1].gt > x[0].gt))));
    slots[k].c0 = swap ? x[1] : x[0];
    slots[k].c1 = swap ? x[0] : x[1];
    if (!(gst[j + 1] < e) || !(gst[j + 2] < e)) {  // (j + 2 <= b: j + 1 starts before e)
      if (tie) w.tied.push_back(k);
      continue;
    }
    // a third entry starts before e: collect all candidates
    int64_t n_many = 0;
    auto insert = [&](const Cand c, const double u) {
      int64_t p = n_many++;
      while (p > 0 && (first_fit ? many[p - 1].gt > c.gt
                                 : (many_iou[p - 1] < u ||
                                    (many_iou[p - 1] == u && many[p - 1].gt < c.gt)))) {
        many[p] = many[p - 1];
        many_iou[p] = many_iou[p - 1];
        --p;
      }
      many[p] = c;
      many_iou[p] = u;
    };
    for (int t = 0; t < 2; ++t)
      if (ok[t]) insert(x[t], iou[t]);
    for (j += 2; gst[j] < e; ++j) {  // ends at the pads
      const double g0 = gst[j], g1 = gen[j];
      const double inter = std::min(e, g1) - std::max(s, g0);
      if (!(inter > 0.0)) continue;
      const double u = inter / ((len + (g1 - g0)) - inter);
      if (u >= lowest) insert(Cand{gix[j], level(u)}, u);
    }
    for (int64_t q = 1; q < n_many && !first_fit; ++q)
      if (many_iou[q] == many_iou[q - 1]) {  // sorted: equal tIoUs are neighbours
        w.tied.push_back(k);
        break;
      }
    store_many(k, n_many);
  }
}

// Steps 2 and 3: the greedy matching in ranking order (rank = ascending argsort, walked
// reversed), then the APs (ap[t] for original threshold t; t_order[u]: the u-th smallest).
void class_match(const int64_t* rank, int64_t m, int64_t n_gt, const int64_t* t_order,
                 int64_t n_thr, bool first_fit, double* ap, Scratch& w) {
  uint64_t reach[65];  // reach[l]: the l lowest thresholds
  for (int l = 0; l <= 64; ++l) reach[l] = l == 64 ? ~uint64_t(0) : (uint64_t(1) << l) - 1;
  const int64_t cap = std::min(m, n_gt);  // TPs per threshold: one per rank, one per GT
  w.matched.assign(n_gt, 0);
  w.tp.resize(n_thr * cap);
  w.n_tp.assign(n_thr, 0);
  uint64_t* matched = w.matched.data();
  const Slots* slots = w.slots.data();
  int64_t* tp = w.tp.data();
  int64_t* n_tp = w.n_tp.data();
  for (int64_t r = 0; r < m; ++r) {
    const int64_t k = rank[m - 1 - r];  // np.argsort(...)[::-1]
    TORCH_CHECK(k >= 0 && k < m, "ap: rank index out of range");
    const Slots x = slots[k];
    uint64_t taken = 0;
    if (x.c1.level >= 0) {  // (an empty slot has level 0: takes nothing)
      const uint64_t t0 = reach[x.c0.level] & ~matched[x.c0.gt];
      matched[x.c0.gt] |= t0;
      const uint64_t t1 = reach[x.c1.level] & ~matched[x.c1.gt] & ~t0;
      matched[x.c1.gt] |= t1;
      taken = t0 | t1;
    } else {
      const int32_t* o = w.ovf.data() + (-int64_t(x.c1.level) - 1);
      for (int32_t q = 0; q < o[0]; ++q) {
        const int32_t gt = o[1 + 2 * q], lev = o[2 + 2 * q];
        const uint64_t take = reach[lev] & ~matched[gt] & ~taken;
        matched[gt] |= take;
        taken |= take;
      }
    }
    while (taken) {
      const int u = __builtin_ctzll(taken);
      taken &= taken - 1;
      tp[u * cap + n_tp[u]++] = r + 1;
    }
  }
  for (int64_t u = 0; u < n_thr; ++u)
    ap[t_order[u]] = first_fit ? precision_sum_ap(tp + u * cap, n_tp[u], n_gt, w.terms)
                               : interpolated_ap(tp + u * cap, n_tp[u], n_gt, w.terms);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ap_group_cpu(const at::Tensor& label,
                                                                        const at::Tensor& score,
                                                                        const at::Tensor& seg,
                                                                        int64_t n_cls) {
  check_index(label, -1, "label");
  const int64_t n = label.size(0);
  TORCH_CHECK(score.device().is_cpu() && score.scalar_type() == at::kDouble && score.dim() == 1 &&
                  score.size(0) == n,
              "ap: score must be a float64 CPU tensor (", n, ",)");
  check_seg(seg, "seg");
  TORCH_CHECK(seg.size(0) == n, "ap: seg must have ", n, " rows");
  TORCH_CHECK(n_cls >= 1, "ap: n_cls must be positive");
  const auto lab_c = label.contiguous(), sc_c = score.contiguous(), seg_c = seg.contiguous();
  const int64_t* pl = lab_c.data_ptr<int64_t>();
  const double* psc = sc_c.data_ptr<double>();
  const double* ps = seg_c.data_ptr<double>();

  // a stable counting sort by class: count (and check), then scatter
  auto status_t = at::zeros({}, at::kLong);
  auto off_t = at::zeros({n_cls + 1}, at::kLong);
  auto order_t = at::empty({n}, at::kLong);
  auto cscore_t = at::empty({n}, at::kDouble);
  int64_t* off = off_t.data_ptr<int64_t>();
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = pl[i];
    if (uint64_t(l) >= uint64_t(n_cls)) {
      status_t.fill_(1);
      return {status_t, off_t, order_t, cscore_t};
    }
    ++off[l + 1];
    finite &= std::isfinite(psc[i]) & std::isfinite(ps[2 * i]) & std::isfinite(ps[2 * i + 1]);
  }
  if (!finite) {
    status_t.fill_(2);
    return {status_t, off_t, order_t, cscore_t};
  }
  for (int64_t c = 0; c < n_cls; ++c) off[c + 1] += off[c];
  std::vector<int64_t> next(off, off + n_cls);
  int64_t* order = order_t.data_ptr<int64_t>();
  double* cscore = cscore_t.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = next[pl[i]]++;
    order[k] = i;
    cscore[k] = psc[i];
  }
  return {status_t, off_t, order_t, cscore_t};
}

std::tuple<at::Tensor, at::Tensor> ap_classes_cpu(
    const at::Tensor& seg, const at::Tensor& video, const at::Tensor& video_lut,
    const at::Tensor& class_order, const at::Tensor& class_offsets, const at::Tensor& classes,
    const at::Tensor& rank, const at::Tensor& gt_seg, const at::Tensor& gt_offsets,
    const at::Tensor& thresholds, const std::optional<at::Tensor>& tie_pos,
    const std::optional<at::Tensor>& tie_offsets, const std::optional<at::Tensor>& tie_gt,
    int64_t variant) {
  TORCH_CHECK(variant == 0 || variant == 1, "ap: variant must be 0 (ActivityNet) or 1 (W-TALC)");
  const bool first_fit = variant == 1;
  check_seg(seg, "seg");
  check_seg(gt_seg, "gt_seg");
  const int64_t n = seg.size(0), n_gt_all = gt_seg.size(0);
  check_index(video, n, "video");
  check_index(video_lut, -1, "video_lut");
  check_index(class_order, n, "class_order");
  check_index(rank, n, "rank");
  check_index(class_offsets, -1, "class_offsets");
  check_index(classes, -1, "classes");
  check_index(gt_offsets, -1, "gt_offsets");
  const int64_t n_cls = class_offsets.size(0) - 1;
  TORCH_CHECK(n_cls >= 1 && (gt_offsets.size(0) - 1) % n_cls == 0,
              "ap: class_offsets must be (n_cls + 1,), gt_offsets (n_cls * n_vid + 1,)");
  TORCH_CHECK(thresholds.device().is_cpu() && thresholds.scalar_type() == at::kDouble &&
                  thresholds.dim() == 1 && thresholds.size(0) >= 1 && thresholds.size(0) <= 64,
              "ap: thresholds must be float64 (n_thr,), 1 <= n_thr <= 64");
  const int64_t n_vid = (gt_offsets.size(0) - 1) / n_cls, n_thr = thresholds.size(0);
  const auto seg_c = seg.contiguous(), vid_c = video.contiguous(), lut_c = video_lut.contiguous();
  const auto ord_c = class_order.contiguous(), coff_c = class_offsets.contiguous();
  const auto cls_c = classes.contiguous(), rank_c = rank.contiguous();
  const auto gseg_c = gt_seg.contiguous(), goff_c = gt_offsets.contiguous();
  const auto thr_c = thresholds.contiguous();
  const int64_t* coff = coff_c.data_ptr<int64_t>();
  const int64_t* goff = goff_c.data_ptr<int64_t>();
  const double* thr = thr_c.data_ptr<double>();
  check_offsets(coff, n_cls, n, "class_offsets");
  check_offsets(goff, n_cls * n_vid, n_gt_all, "gt_offsets");
  for (int64_t u = 0; u < n_thr; ++u)
    TORCH_CHECK(thr[u] > 0.0 && thr[u] <= 1.0, "ap: thresholds must lie in (0, 1]");

  // thresholds in ascending order: a candidate's level is the number it reaches
  std::vector<int64_t> t_order(n_thr);
  for (int64_t u = 0; u < n_thr; ++u) t_order[u] = u;
  std::stable_sort(t_order.begin(), t_order.end(),
                   [&](int64_t x, int64_t y) { return thr[x] < thr[y]; });
  std::vector<double> thr_s(n_thr);
  for (int64_t u = 0; u < n_thr; ++u) thr_s[u] = thr[t_order[u]];
  const Levels level{thr_s.data(), n_thr};

  // numpy's candidate orders of tied predictions (global class-major positions, ascending)
  TORCH_CHECK(tie_pos.has_value() == tie_offsets.has_value() &&
                  tie_pos.has_value() == tie_gt.has_value(),
              "ap: tie_pos, tie_offsets and tie_gt go together");
  at::Tensor tpos_c, toff_c, tgt_c;
  int64_t n_ties = 0;
  if (tie_pos.has_value()) {
    check_index(*tie_pos, -1, "tie_pos");
    n_ties = tie_pos->size(0);
    check_index(*tie_offsets, n_ties + 1, "tie_offsets");
    check_index(*tie_gt, -1, "tie_gt");
    tpos_c = tie_pos->contiguous();
    toff_c = tie_offsets->contiguous();
    tgt_c = tie_gt->contiguous();
    check_offsets(toff_c.data_ptr<int64_t>(), n_ties, tie_gt->size(0), "tie_offsets");
    for (int64_t q = 1; q < n_ties; ++q)
      TORCH_CHECK(tpos_c.data_ptr<int64_t>()[q - 1] < tpos_c.data_ptr<int64_t>()[q],
                  "ap: tie_pos must be increasing");
  }
  const int64_t k_cls = classes.size(0);
  auto ap_t = at::zeros({k_cls, n_thr}, at::kDouble);
  std::vector<int64_t> tied, local_pos;
  Scratch& w = thread_scratch();
  for (int64_t q = 0; q < k_cls; ++q) {
    const int64_t c = cls_c.data_ptr<int64_t>()[q];
    TORCH_CHECK(c >= 0 && c < n_cls, "ap: class index out of range");
    const int64_t p0 = coff[c], m = coff[c + 1] - p0;
    const int64_t g0 = goff[c * n_vid], n_gt = goff[(c + 1) * n_vid] - g0;
    TORCH_CHECK(n_gt <= std::numeric_limits<int32_t>::max(), "ap: too many GT segments");
    if (m == 0 || n_gt == 0) continue;  // AP 0
    w.gt.build(gseg_c.data_ptr<double>() + 2 * g0, goff + c * n_vid, n_vid);
    gather_class(seg_c.data_ptr<double>(), vid_c.data_ptr<int64_t>(), lut_c.data_ptr<int64_t>(),
                 n, video_lut.size(0), n_vid, ord_c.data_ptr<int64_t>() + p0, m, w);
    TieOrders ties;
    if (n_ties) {  // this class's part of the tie orders, positions made class-local
      const int64_t* tp = tpos_c.data_ptr<int64_t>();
      const int64_t lo = std::lower_bound(tp, tp + n_ties, p0) - tp;
      const int64_t hi = std::lower_bound(tp, tp + n_ties, p0 + m) - tp;
      local_pos.resize(hi - lo);
      for (int64_t q = lo; q < hi; ++q) local_pos[q - lo] = tp[q] - p0;
      ties = TieOrders{local_pos.data(), toff_c.data_ptr<int64_t>() + lo,
                       tgt_c.data_ptr<int64_t>(), hi - lo};
    }
    const double* gs = gseg_c.data_ptr<double>() + 2 * g0;
    find_candidates(w.gt, gs, m, level, thr_s[0], ties, first_fit, w);
    if (!w.tied.empty()) {  // the caller computes this class again with numpy's tie orders
      for (const int64_t k : w.tied) tied.push_back(p0 + k);
      std::fill_n(ap_t.data_ptr<double>() + q * n_thr, n_thr, std::nan(""));
      continue;
    }
    class_match(rank_c.data_ptr<int64_t>() + p0, m, n_gt, t_order.data(), n_thr, first_fit,
                ap_t.data_ptr<double>() + q * n_thr, w);
  }
  auto tied_t = at::empty({int64_t(tied.size())}, at::kLong);
  std::copy(tied.begin(), tied.end(), tied_t.data_ptr<int64_t>());
  return {ap_t, tied_t};
}

at::Tensor ambiguous_keep_cpu(const at::Tensor& seg, const at::Tensor& video,
                              const at::Tensor& amb_seg, const at::Tensor& amb_offsets) {
  check_seg(seg, "seg");
  check_seg(amb_seg, "amb_seg");
  const int64_t n = seg.size(0);
  check_index(video, n, "video");
  TORCH_CHECK(amb_offsets.scalar_type() == at::kLong && amb_offsets.dim() == 1 &&
                  amb_offsets.size(0) >= 1,
              "ap: amb_offsets must be int64 (n_vid + 1,)");
  const int64_t n_vid = amb_offsets.size(0) - 1;
  const auto seg_c = seg.contiguous(), vid_c = video.contiguous();
  const auto aseg_c = amb_seg.contiguous(), aoff_c = amb_offsets.contiguous();
  const double* ps = seg_c.data_ptr<double>();
  const int64_t* pv = vid_c.data_ptr<int64_t>();
  const double* as = aseg_c.data_ptr<double>();
  const int64_t* aoff = aoff_c.data_ptr<int64_t>();
  check_offsets(aoff, n_vid, amb_seg.size(0), "amb_offsets");
  auto keep_t = at::empty({n}, at::kBool);
  bool* keep = keep_t.data_ptr<bool>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = pv[i];
    TORCH_CHECK(v >= 0 && v < n_vid, "ap: video index out of range");
    const double s = ps[2 * i], e = ps[2 * i + 1];
    bool k = true;
    for (int64_t j = aoff[v]; j < aoff[v + 1]; ++j)
      if (std::min(e, as[2 * j + 1]) - std::max(s, as[2 * j]) > 0.0) {
        k = false;
        break;
      }
    keep[i] = k;
  }
  return keep_t;
}

}  // namespace case_fast
