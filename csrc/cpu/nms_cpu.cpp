// Temporal NMS on the CPU (method.md §5): one call runs every group. Each group is walked on compact
// arrays of its live candidates (start, end, score, input index) in walk order.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../nms.h"

namespace case_fast {

int check_nms_args(const at::Tensor& segments, const at::Tensor& scores,
                   const std::optional<at::Tensor>& groups, const std::optional<at::Tensor>& order,
                   const std::string& method, double alpha) {
  TORCH_CHECK(segments.dim() == 2 && segments.size(1) == 2,
              "temporal_nms: segments must be (n, 2)");
  const int64_t n = segments.size(0);
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == n, "temporal_nms: scores must be (n,)");
  TORCH_CHECK(at::isFloatingType(segments.scalar_type()) &&
                  at::isFloatingType(scores.scalar_type()),
              "temporal_nms: segments and scores must be floating point");
  TORCH_CHECK(segments.device() == scores.device(),
              "temporal_nms: segments and scores must be on one device");
  for (const auto* t : {&groups, &order}) {
    if (!t->has_value()) continue;
    const char* name = t == &groups ? "groups" : "order";
    TORCH_CHECK((*t)->dim() == 1 && (*t)->size(0) == n, "temporal_nms: ", name, " must be (n,)");
    TORCH_CHECK(at::isIntegralType((*t)->scalar_type(), /*includeBool=*/false),
                "temporal_nms: ", name, " must be an integer tensor");
    TORCH_CHECK((*t)->device() == segments.device(),
                "temporal_nms: ", name, " must be on the device of segments");
  }
  int id = -1;
  if (method == "one_pass_decay") id = kOnePassDecay;
  if (method == "hard") id = kHard;
  if (method == "soft_gaussian") id = kSoftGaussian;
  if (method == "soft_linear") id = kSoftLinear;
  TORCH_CHECK(id >= 0, "temporal_nms: unknown method '", method,
              "' (one_pass_decay, hard, soft_gaussian, soft_linear)");
  TORCH_CHECK(alpha > 0.0 || (id != kOnePassDecay && id != kSoftGaussian),
              "temporal_nms: alpha (the decay exp(-IoU^2 / alpha)) must be > 0");
  return id;
}

bool nms_plus_one(int method, std::optional<bool> plus_one) {
  return plus_one.value_or(method == kOnePassDecay || method == kHard);
}

namespace {

// The outputs, written in place: (input index, score) pairs; never more than n of them.
struct Sink {
  int64_t* keep;
  double* score;
  int64_t len = 0;
  void push(int64_t i, double v) {
    keep[len] = i;
    score[len] = v;
    ++len;
  }
};

// The live candidates of one group, in walk order.
struct Live {
  std::vector<double> s, e, sc;
  std::vector<int64_t> idx;
  int64_t m = 0;
  void reset(int64_t cap) {
    for (auto* v : {&s, &e, &sc}) v->resize(cap);
    idx.resize(cap);
    m = 0;
  }
  void push(double s0, double e0, double v, int64_t i) {
    s[m] = s0;
    e[m] = e0;
    sc[m] = v;
    idx[m] = i;
    ++m;
  }
  void move(int64_t from, int64_t to, double v) {
    s[to] = s[from];
    e[to] = e[from];
    sc[to] = v;
    idx[to] = idx[from];
  }
};

// The walk: `order` lists the input indices group by group (group ids ascending); group g is
// order[offsets[g] : offsets[g + 1]]. A given order is checked (a permutation whose groups
// ascend); without one, the default: descending score (NaN first), equal scores in input order.
void walk(const double* sc, const int64_t* gr, int64_t n, const int64_t* given,
          std::vector<int64_t>& order, std::vector<int64_t>& offsets) {
  order.resize(n);
  if (given) {
    std::vector<char> seen(n, 0);
    for (int64_t p = 0; p < n; ++p) {
      const int64_t i = given[p];
      TORCH_CHECK(i >= 0 && i < n && !seen[i], "temporal_nms: order must be a permutation of 0..n-1");
      seen[i] = 1;
      order[p] = i;
    }
  } else {
    std::iota(order.begin(), order.end(), int64_t(0));
    auto above = [](double a, double b) { return a > b || (std::isnan(a) && !std::isnan(b)); };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      if (gr && gr[a] != gr[b]) return gr[a] < gr[b];
      return above(sc[a], sc[b]);
    });
  }
  offsets.assign(1, 0);
  for (int64_t p = 1; gr && p < n; ++p) {
    const int64_t a = gr[order[p - 1]], b = gr[order[p]];
    TORCH_CHECK(a <= b, "temporal_nms: order must list the groups by ascending id");
    if (a != b) offsets.push_back(p);
  }
  if (n > 0) offsets.push_back(n);
}

// One-pass decay (decay) or hard NMS of one group: the first live candidate is kept; every other
// one with IoU >= thr leaves, decayed to score * exp(-IoU^2 / alpha) (one-pass decay: output
// after all kept ones, by pick and then walk order).
void group_one_pass(Live& L, double one, double thr, double alpha, bool decay,
                    std::vector<int64_t>& dkeep, std::vector<double>& dscore, Sink& out) {
  dkeep.clear();
  dscore.clear();
  int64_t m = L.m;
  while (m > 0) {
    const double s0 = L.s[0], e0 = L.e[0], a0 = (e0 - s0) + one;
    out.push(L.idx[0], L.sc[0]);
    int64_t w = 0;
    for (int64_t t = 1; t < m; ++t) {
      const double iou = seg_iou(s0, e0, a0, L.s[t], L.e[t], (L.e[t] - L.s[t]) + one, one);
      if (iou >= thr) {
        if (decay) {
          dkeep.push_back(L.idx[t]);
          dscore.push_back(L.sc[t] * exp_nonpos(-(iou * iou) / alpha));
        }
      } else {
        L.move(t, w++, L.sc[t]);
      }
    }
    m = w;
  }
  for (size_t h = 0; h < dkeep.size(); ++h) out.push(dkeep[h], dscore[h]);
}

// Iterative Soft-NMS of one group (candidates already pruned to score >= min_score): pick the
// highest current score (first in walk order on ties), decay the others, prune below min_score.
void group_soft(Live& L, double one, double thr, double alpha, double min_score, bool linear,
                Sink& out) {
  int64_t m = L.m, best = 0;
  for (int64_t t = 1; t < m; ++t)
    if (L.sc[t] > L.sc[best]) best = t;
  while (m > 0) {
    const double s0 = L.s[best], e0 = L.e[best], a0 = (e0 - s0) + one;
    out.push(L.idx[best], L.sc[best]);
    const int64_t skip = best;
    int64_t w = 0;
    best = -1;
    for (int64_t t = 0; t < m; ++t) {
      if (t == skip) continue;
      double v = L.sc[t];
      const double iou = seg_iou(s0, e0, a0, L.s[t], L.e[t], (L.e[t] - L.s[t]) + one, one);
      if (linear) {
        if (iou >= thr) v = v * (1.0 - iou);
      } else if (iou != 0.0) {
        v = v * exp_nonpos(-(iou * iou) / alpha);
      }
      if (v >= min_score) {
        L.move(t, w, v);
        if (best < 0 || v > L.sc[best]) best = w;
        ++w;
      }
    }
    m = w;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> temporal_nms_cpu(
    const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& groups,
    const std::string& method, double iou_threshold, double alpha, double min_score,
    std::optional<bool> plus_one, const std::optional<at::Tensor>& order) {
  const int m_id = check_nms_args(segments, scores, groups, order, method, alpha);
  TORCH_CHECK(segments.device().is_cpu(), "temporal_nms_cpu: CPU tensors expected");
  const double one = nms_plus_one(m_id, plus_one) ? 1.0 : 0.0;
  const auto seg = segments.to(at::kDouble).contiguous();
  const auto scr = scores.to(at::kDouble).contiguous();
  at::Tensor gr, ord;
  if (groups) gr = groups->to(at::kLong).contiguous();
  if (order) ord = order->to(at::kLong).contiguous();
  const int64_t n = seg.size(0);
  const double* sp = seg.data_ptr<double>();
  const double* scp = scr.data_ptr<double>();
  std::vector<int64_t> wo, off;
  walk(scp, gr.defined() ? gr.data_ptr<int64_t>() : nullptr, n,
       ord.defined() ? ord.data_ptr<int64_t>() : nullptr, wo, off);

  // every method returns at most n entries (one-pass decay exactly n)
  auto keep_t = at::empty({n}, seg.options().dtype(at::kLong));
  auto out_t = at::empty({n}, seg.options());
  Sink out{keep_t.data_ptr<int64_t>(), out_t.data_ptr<double>()};
  const bool soft = m_id == kSoftGaussian || m_id == kSoftLinear;
  Live L;
  std::vector<int64_t> dkeep;
  std::vector<double> dscore;
  for (size_t g = 0; g + 1 < off.size(); ++g) {
    L.reset(off[g + 1] - off[g]);
    for (int64_t p = off[g]; p < off[g + 1]; ++p) {  // the group in walk order
      const int64_t i = wo[p];
      if (soft && !(scp[i] >= min_score)) continue;
      L.push(sp[2 * i], sp[2 * i + 1], scp[i], i);
    }
    if (soft)
      group_soft(L, one, iou_threshold, alpha, min_score, m_id == kSoftLinear, out);
    else
      group_one_pass(L, one, iou_threshold, alpha, m_id == kOnePassDecay, dkeep, dscore, out);
  }
  if (out.len == n) return {keep_t, out_t};
  return {keep_t.narrow(0, 0, out.len), out_t.narrow(0, 0, out.len)};
}

}  // namespace case_fast
