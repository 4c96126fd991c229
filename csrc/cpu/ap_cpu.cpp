// Detection AP on the CPU (SPEC §6): bitwise the APs of case_fast.evaluation's reference backend.
//
// Per class (with ground truth), per prediction in processing order (computed by the caller
// with numpy, which fixes the tie order), per tIoU threshold: the prediction is a TP iff an
// unmatched GT segment of its (class, video) group has tIoU >= threshold; it consumes the one
// with the highest tIoU, ties -> the lowest GroundTruth index (GT rows of a group are in
// GroundTruth order). tIoU is the reference's float64 expression
//   inter = min(e, ge) - max(s, ge_s);  tIoU = inter > 0 ? inter / (((e - s) + (ge - gs)) - inter) : 0.
// The AP of (threshold, class) is summed as the reference does: the terms
// (k / n_gt - (k - 1) / n_gt) * P_k over the TPs (k-th TP at 1-based rank r_k, P_k the running
// max from the right of k / r_k), plus a 0 term when recall stays below 1, added with numpy's
// pairwise summation (numpy_sum.h). -ffp-contract=off: no FMA.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
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

void check_index(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kLong && t.dim() == 1 &&
                  t.size(0) == n,
              "ap: ", name, " must be an int64 CPU tensor (", n, ",)");
}

void check_offsets(const int64_t* o, int64_t groups, int64_t n, const char* name) {
  TORCH_CHECK(o[0] == 0 && o[groups] == n, "ap: ", name, " must run from 0 to ", n);
  for (int64_t i = 0; i < groups; ++i)
    TORCH_CHECK(o[i] <= o[i + 1], "ap: ", name, " must be non-decreasing");
}

// First index in [0, n) with v[idx] >= x (or_equal = false) / > x (or_equal = true), else n.
// Branch-free halving (the conditional compiles to a cmov): groups are short and the outcome
// of each comparison is unpredictable.
inline int64_t first_above(const double* v, int64_t n, double x, bool or_equal) {
  if (n == 0) return 0;
  const double* base = v;
  while (n > 1) {
    const int64_t half = n / 2;
    const bool right = or_equal ? base[half - 1] <= x : base[half - 1] < x;
    base = right ? base + half : base;
    n -= half;
  }
  const bool past = or_equal ? *base <= x : *base < x;
  return (base - v) + (past ? 1 : 0);
}

// AP of one (threshold, class) from its TP ranks (1-based, ascending); `terms` is scratch.
double interpolated_ap(const std::vector<int64_t>& tp_rank, int64_t n_gt,
                       std::vector<double>& terms) {
  const int64_t m = int64_t(tp_rank.size());
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

}  // namespace

at::Tensor ap_greedy_cpu(const at::Tensor& seg, const at::Tensor& video, const at::Tensor& order,
                         const at::Tensor& class_offsets, const at::Tensor& gt_seg,
                         const at::Tensor& gt_offsets, const at::Tensor& thresholds) {
  check_seg(seg, "seg");
  check_seg(gt_seg, "gt_seg");
  const int64_t n = seg.size(0), n_gt_all = gt_seg.size(0);
  check_index(video, n, "video");
  check_index(order, n, "order");
  TORCH_CHECK(class_offsets.scalar_type() == at::kLong && class_offsets.dim() == 1 &&
                  class_offsets.size(0) >= 1,
              "ap: class_offsets must be int64 (n_cls + 1,)");
  const int64_t n_cls = class_offsets.size(0) - 1;
  TORCH_CHECK(gt_offsets.scalar_type() == at::kLong && gt_offsets.dim() == 1 && n_cls > 0 &&
                  (gt_offsets.size(0) - 1) % n_cls == 0,
              "ap: gt_offsets must be int64 (n_cls * n_vid + 1,)");
  TORCH_CHECK(thresholds.scalar_type() == at::kDouble && thresholds.dim() == 1,
              "ap: thresholds must be float64 (n_thr,)");
  const int64_t n_vid = (gt_offsets.size(0) - 1) / n_cls;
  const int64_t n_thr = thresholds.size(0);

  const auto seg_c = seg.contiguous(), vid_c = video.contiguous(), ord_c = order.contiguous();
  const auto coff_c = class_offsets.contiguous(), gseg_c = gt_seg.contiguous();
  const auto goff_c = gt_offsets.contiguous(), thr_c = thresholds.contiguous();
  const double* ps = seg_c.data_ptr<double>();
  const int64_t* pv = vid_c.data_ptr<int64_t>();
  const int64_t* po = ord_c.data_ptr<int64_t>();
  const int64_t* coff = coff_c.data_ptr<int64_t>();
  const double* gs = gseg_c.data_ptr<double>();
  const int64_t* goff = goff_c.data_ptr<int64_t>();
  const double* thr = thr_c.data_ptr<double>();
  check_offsets(coff, n_cls, n, "class_offsets");
  check_offsets(goff, n_cls * n_vid, n_gt_all, "gt_offsets");
  TORCH_CHECK(n_thr <= 64, "ap: at most 64 thresholds");
  for (int64_t u = 0; u < n_thr; ++u)
    TORCH_CHECK(thr[u] > 0.0 && thr[u] <= 1.0, "ap: thresholds must lie in (0, 1]");

  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(pv[i] >= 0 && pv[i] < n_vid, "ap: video index out of range");
    TORCH_CHECK(po[i] >= 0 && po[i] < n, "ap: order index out of range");
  }

  // Each (class, video) group's GT sorted by start (ties: GroundTruth order), with the running
  // max of the ends: a prediction [s, e] can only overlap the group's entries [lo, hi), hi = the
  // first start >= e, lo = the first running-max end > s (searched in groups of > 8 only). `gt_rank` is the GT's index in its
  // class (GroundTruth order; the tie-break), `gt_at` its row of gt_seg.
  std::vector<int64_t> gt_at(n_gt_all), gt_rank(n_gt_all);
  std::vector<double> g_start(n_gt_all), g_end(n_gt_all), g_pmax(n_gt_all);
  for (int64_t grp = 0; grp < n_cls * n_vid; ++grp) {
    const int64_t a = goff[grp], b = goff[grp + 1];
    if (a == b) continue;
    const int64_t base = goff[(grp / n_vid) * n_vid];
    for (int64_t j = a; j < b; ++j) gt_at[j] = j;
    std::stable_sort(gt_at.begin() + a, gt_at.begin() + b,
                     [&](int64_t x, int64_t y) { return gs[2 * x] < gs[2 * y]; });
    double pmax = 0.0;
    for (int64_t j = a; j < b; ++j) {
      const int64_t row = gt_at[j];
      gt_rank[j] = row - base;
      g_start[j] = gs[2 * row];
      g_end[j] = gs[2 * row + 1];
      pmax = j == a ? g_end[j] : std::max(pmax, g_end[j]);
      g_pmax[j] = pmax;
    }
  }

  // Thresholds in ascending order: a candidate's level is the number it reaches; per GT a
  // bitmask of the (sorted) thresholds at which it is already matched.
  std::vector<int64_t> t_order(n_thr);
  for (int64_t u = 0; u < n_thr; ++u) t_order[u] = u;
  std::stable_sort(t_order.begin(), t_order.end(),
                   [&](int64_t x, int64_t y) { return thr[x] < thr[y]; });
  std::vector<double> thr_s(n_thr);
  for (int64_t u = 0; u < n_thr; ++u) thr_s[u] = thr[t_order[u]];

  auto ap_t = at::zeros({n_thr, n_cls}, at::kDouble);
  double* ap = ap_t.data_ptr<double>();
  struct Cand {
    double iou;
    int64_t rank;  // GT index in its class
    uint64_t reach;  // sorted thresholds with thr <= iou
  };
  constexpr int64_t kAhead = 16;  // prefetch distance along the (random) processing order

  // Classes are independent: they run in parallel on torch's intra-op threads, each writing its
  // own column of `ap`, so the result does not depend on the number of threads.
  at::parallel_for(0, n_cls, 1, [&](int64_t c_begin, int64_t c_end) {
  std::vector<uint64_t> matched;  // per GT of the class (GroundTruth order)
  std::vector<std::vector<int64_t>> tp_rank(n_thr);  // by original threshold index
  std::vector<Cand> cand;
  std::vector<double> terms;
  for (int64_t c = c_begin; c < c_end; ++c) {
    const int64_t g_base = goff[c * n_vid], n_gt = goff[(c + 1) * n_vid] - g_base;
    const int64_t p0 = coff[c], p1 = coff[c + 1];
    if (n_gt == 0 || p1 == p0) continue;  // AP 0
    matched.assign(n_gt, 0);
    for (auto& v : tp_rank) v.clear();
    for (int64_t r = 0; r < p1 - p0; ++r) {
      if (p0 + r + kAhead < p1) {
        const int64_t ia = po[p0 + r + kAhead];
        __builtin_prefetch(pv + ia);
        __builtin_prefetch(ps + 2 * ia);
      }
      const int64_t i = po[p0 + r];
      const int64_t grp = c * n_vid + pv[i];
      const int64_t a = goff[grp], b = goff[grp + 1];
      if (a == b) continue;  // no ground truth of this class in this video: FP
      const double s = ps[2 * i], e = ps[2 * i + 1], len = e - s;
      // candidates: skip the entries whose running-max end is <= s, stop at the first start >= e
      int64_t j = a;
      if (b - a > 8) j += first_above(g_pmax.data() + a, b - a, s, true);
      cand.clear();
      for (; j < b && g_start[j] < e; ++j) {
        const double g0 = g_start[j], g1 = g_end[j];
        const double inter = std::min(e, g1) - std::max(s, g0);
        if (inter > 0.0) {
          const double iou = inter / ((len + (g1 - g0)) - inter);
          int64_t level = 0;
          for (int64_t u = 0; u < n_thr; ++u) level += iou >= thr_s[u];
          if (level == 0) continue;
          const uint64_t reach = level == 64 ? ~uint64_t(0) : (uint64_t(1) << level) - 1;
          // keep candidates by tIoU descending, then GT index ascending (insertion; few)
          Cand x{iou, gt_rank[j], reach};
          cand.push_back(x);
          size_t q = cand.size() - 1;
          while (q > 0 && (cand[q - 1].iou < x.iou ||
                           (cand[q - 1].iou == x.iou && cand[q - 1].rank > x.rank))) {
            cand[q] = cand[q - 1];
            --q;
          }
          cand[q] = x;
        }
      }
      // each threshold goes to the first candidate (best tIoU, lowest index) still free there
      uint64_t taken = 0;
      for (const Cand& x : cand) {
        const uint64_t take = x.reach & ~matched[x.rank] & ~taken;
        matched[x.rank] |= take;
        taken |= take;
      }
      while (taken) {
        const int u = __builtin_ctzll(taken);
        taken &= taken - 1;
        tp_rank[t_order[u]].push_back(r + 1);
      }
    }
    for (int64_t u = 0; u < n_thr; ++u) ap[u * n_cls + c] = interpolated_ap(tp_rank[u], n_gt, terms);
  }
  });
  return ap_t;
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
