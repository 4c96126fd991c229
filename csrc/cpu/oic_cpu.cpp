// OIC proposal generation on the CPU (method.md §5): one video per call, bitwise equal to
// case_fast.ops.proposals.generate_proposals_reference (same rows, same order, same bits).
//
// Every value is computed with the reference's IEEE operations in the reference's order (the
// build uses -ffp-contract=off, so no FMA):
// * upsampled point i (x_i = i * (1/scale), segment lo_i) of column c:
//   float64(cas[lo+1] - cas[lo]) * (x_i - lo) + float64(cas[lo]), the difference in the input
//   dtype (proposals.upsample_cas);
// * runs of `value >= threshold` are found per snippet segment: the values inside a segment are
//   monotone (rounding is monotone), so a segment is all in, all out, or has one crossing, found
//   by bisection on the exact values (the same run sets as np.nonzero);
// * window sums are proposals._Sums.window_scalar: a closed form per partial segment and int64
//   fixed-point prefix sums for whole segments, with the same scale 2**k (k from numpy's
//   pairwise sum of |segment sums|, numpy_sum.h).
// T < 2 is not handled here (the Python wrapper uses the reference, which is trivial then).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../numpy_sum.h"
#include "../oic.h"

namespace case_fast {

namespace {

// proposals._Plan: the upsampled axis of (T, scale).
struct Axis {
  int64_t T, scale, L;
  double inv;              // 1.0 / scale, as np.arange(0, T, 1 / scale) uses it
  std::vector<int64_t> g;  // segment s (s < T - 1) covers points [g[s], g[s + 1]); g[T-1] = L

  Axis(int64_t T_, int64_t scale_) : T(T_), scale(scale_), L(T_ * scale_), inv(1.0 / scale_), g(T_) {
    g[0] = 0;
    g[T - 1] = L;
    // point i is in segment >= s iff x_i > s (np.searchsorted(arange(T), x, 'left') clipped)
    for (int64_t s = 1; s < T - 1; ++s) {
      int64_t i = std::max(g[s - 1], s * scale - 1);
      while (i > g[s - 1] && x(i - 1) > double(s)) --i;
      while (x(i) <= double(s)) ++i;
      g[s] = i;
    }
  }
  double x(int64_t i) const { return double(i) * inv; }
  // lo_ext: the segment of point i, T - 1 for i = L (a virtual empty segment)
  int64_t seg_of(int64_t i) const {
    if (i >= L) return T - 1;
    const double c = std::ceil(x(i));
    int64_t hi = c >= double(T) ? T : int64_t(c);
    hi = std::min(std::max(hi, int64_t(1)), T - 1);
    return hi - 1;
  }
};

int ceil_log2(double v) {
  int e = 0;
  const double m = std::frexp(v, &e);
  return e - (m == 0.5 ? 1 : 0);
}

// One column: the interpolant's data and the window sums (proposals._Sums for one column).
struct Column {
  const Axis* ax;
  std::vector<double> c, d;        // c[s] = float64(cas[s]); d[s] = float64(cas[s+1] - cas[s]), d[T-1] = 0
  std::vector<double> seg;         // exact-ish sum of segment s (s < T - 1), before fixed point
  std::vector<int64_t> prefix;     // prefix[s] = sum of the fixed-point segment sums < s
  std::vector<double> y_first, y_last;  // upsampled values at each segment's first / last point

  double value(int64_t s, int64_t i) const { return d[s] * (ax->x(i) - double(s)) + c[s]; }

  double part(int64_t s, int64_t i0, int64_t i1) const {
    const int64_t m = i1 - i0;
    const int64_t b = (m * (i0 + i1 - 1)) / 2 - ax->scale * s * m;
    return double(m) * c[s] + d[s] * (double(b) / double(ax->scale));
  }

  // sum of the upsampled values over [a, b), 0 <= a, b <= L (window_scalar)
  double window(int64_t a, int64_t b, double w) const {
    if (b <= a) return 0.0;
    const int64_t sa = ax->seg_of(a), sb = ax->seg_of(b - 1);
    if (sa == sb) return part(sa, a, b);
    const double head = part(sa, a, ax->g[sa + 1]);
    const double mid = double(prefix[sb] - prefix[sa + 1]) * w;
    return (head + mid) + part(sb, ax->g[sb], b);
  }
};

template <typename scalar_t>
void fill_column(const scalar_t* cas, int64_t p, int64_t col, const Axis& ax, Column& out) {
  const int64_t T = ax.T;
  out.ax = &ax;
  out.c.resize(T);
  out.d.assign(T, 0.0);
  out.seg.resize(T - 1);
  out.y_first.resize(T - 1);
  out.y_last.resize(T - 1);
  for (int64_t s = 0; s < T; ++s) out.c[s] = double(cas[s * p + col]);
  for (int64_t s = 0; s + 1 < T; ++s) {
    const scalar_t diff = cas[(s + 1) * p + col] - cas[s * p + col];  // in the input dtype
    out.d[s] = double(diff);
  }
  for (int64_t s = 0; s + 1 < T; ++s) {
    const int64_t g0 = ax.g[s], n = ax.g[s + 1] - g0;
    const int64_t b = (n * (2 * g0 + n - 1)) / 2 - ax.scale * s * n;  // _Plan.seg_b
    out.seg[s] = double(n) * out.c[s] + out.d[s] * (double(b) / double(ax.scale));
    out.y_first[s] = n ? out.value(s, g0) : 0.0;
    out.y_last[s] = n ? out.value(s, g0 + n - 1) : 0.0;
  }
}

struct Run {
  int64_t s, e;  // inclusive
};

// Runs of `value >= t` in one column, by start.
void find_runs(const Column& col, double t, std::vector<Run>& runs) {
  const Axis& ax = *col.ax;
  runs.clear();
  bool in = false;
  int64_t start = 0;
  auto toggle = [&](int64_t i) {
    if (in) runs.push_back({start, i - 1});
    else start = i;
    in = !in;
  };
  for (int64_t s = 0; s + 1 < ax.T; ++s) {
    const int64_t i0 = ax.g[s], i1 = ax.g[s + 1];
    if (i0 == i1) continue;
    const bool f = col.y_first[s] >= t, l = col.y_last[s] >= t;
    if (f != in) toggle(i0);
    if (f != l) {  // one crossing: first point whose predicate equals l's, in (i0, i1 - 1]
      int64_t lo = i0, hi = i1 - 1;
      while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        if ((col.value(s, mid) >= t) == l) hi = mid;
        else lo = mid;
      }
      toggle(hi);
    }
  }
  if (in) runs.push_back({start, ax.L - 1});
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> run(const at::Tensor& cas_t, const int64_t* ids,
                                       const double* vscores, int64_t n_cls, const double* thr,
                                       int64_t n_thr, int64_t scale, double t_factor, double lam,
                                       double gamma, bool drop_zero_run) {
  const int64_t T = cas_t.size(0), p = cas_t.size(1);
  const scalar_t* cas = cas_t.data_ptr<scalar_t>();
  const Axis ax(T, scale);
  const int64_t L = ax.L;

  std::vector<Column> cols(p);
  double total = 0.0;  // float(np.abs(seg).sum(axis=1).max()) * 1.001 + 1e-300
  bool finite = true;
  std::vector<double> absbuf(T - 1);
  for (int64_t c = 0; c < p; ++c) {
    fill_column(cas, p, c, ax, cols[c]);
    for (int64_t s = 0; s + 1 < T; ++s) absbuf[s] = std::fabs(cols[c].seg[s]);
    const double sum = numpy_sum(absbuf.data(), T - 1);
    finite = finite && std::isfinite(sum);
    total = c == 0 ? sum : std::max(total, sum);
  }
  TORCH_CHECK(finite, "oic_proposals: the CAS must be finite");
  total = total * 1.001 + 1e-300;
  const int k = std::min(62 - ceil_log2(total), 1000);
  const double up = std::ldexp(1.0, k), w = std::ldexp(1.0, -k);
  for (auto& col : cols) {
    col.prefix.assign(T, 0);
    for (int64_t s = 0; s + 1 < T; ++s)
      col.prefix[s + 1] = col.prefix[s] + int64_t(std::nearbyint(col.seg[s] * up));
  }

  std::vector<double> cls_f(p), bonus(p);
  for (int64_t c = 0; c < p; ++c) {
    int64_t id = ids[c];
    cls_f[c] = double(id);
    if (id < 0) id += n_cls;  // numpy indexing of video_scores
    TORCH_CHECK(id >= 0 && id < n_cls, "oic_proposals: class id ", ids[c],
                " out of range for ", n_cls, " video scores");
    bonus[c] = gamma * vscores[id];
  }

  std::vector<double> rows;
  rows.reserve(4 * 64 * n_thr * p);
  auto counts = at::zeros({n_thr}, at::kLong);
  int64_t* cnt = counts.data_ptr<int64_t>();
  std::vector<Run> runs;
  for (int64_t j = 0; j < n_thr; ++j) {
    const int64_t before = int64_t(rows.size());
    for (int64_t c = 0; c < p; ++c) {
      const Column& col = cols[c];
      find_runs(col, thr[j], runs);
      if (runs.empty()) continue;
      if (drop_zero_run && runs.size() == 1 && runs[0].s == 0 && runs[0].e == 0) continue;
      for (const Run& r : runs) {
        const int64_t s = r.s, e = r.e, n = e - s + 1;
        const double inner = col.window(s, e + 1, w) / double(n);
        const int64_t os = std::max(int64_t(0), int64_t(double(s) - lam * double(n)));
        const int64_t oe = std::min(L - 1, int64_t(double(e) + lam * double(n)));
        const int64_t n_out = (s - os) + (oe - e);
        const double outer =
            n_out ? (col.window(os, s, w) + col.window(e + 1, oe + 1, w)) / double(n_out) : 0.0;
        rows.push_back(cls_f[c]);
        rows.push_back((inner - outer) + bonus[c]);
        rows.push_back(double(s) * t_factor);
        rows.push_back(double(e + 1) * t_factor);
      }
    }
    cnt[j] = (int64_t(rows.size()) - before) / 4;
  }
  const int64_t m = int64_t(rows.size()) / 4;
  auto out = at::empty({m, 4}, at::kDouble);
  if (m) std::memcpy(out.data_ptr<double>(), rows.data(), rows.size() * sizeof(double));
  return {out, counts};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> oic_proposals_cpu(
    const at::Tensor& cas, const at::Tensor& class_ids, const at::Tensor& video_scores,
    const at::Tensor& thresholds, int64_t scale, double t_factor, double oic_lambda,
    double oic_gamma, bool drop_zero_run) {
  TORCH_CHECK(cas.dim() == 2 && cas.size(0) >= 2, "oic_proposals: cas must be (T, p) with T >= 2");
  TORCH_CHECK(cas.scalar_type() == at::kFloat || cas.scalar_type() == at::kDouble,
              "oic_proposals: cas must be float32 or float64");
  TORCH_CHECK(scale >= 1, "oic_proposals: scale must be >= 1");
  TORCH_CHECK(class_ids.scalar_type() == at::kLong && class_ids.dim() == 1 &&
                  class_ids.size(0) == cas.size(1),
              "oic_proposals: class_ids must be int64 (p,)");
  TORCH_CHECK(video_scores.scalar_type() == at::kDouble && video_scores.dim() == 1,
              "oic_proposals: video_scores must be float64 (n_classes,)");
  TORCH_CHECK(thresholds.scalar_type() == at::kDouble && thresholds.dim() == 1,
              "oic_proposals: thresholds must be float64 (n_thr,)");
  const auto c = cas.contiguous();
  const auto ids = class_ids.contiguous();
  const auto vs = video_scores.contiguous();
  const auto th = thresholds.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "oic_proposals", [&] {
    return run<scalar_t>(c, ids.data_ptr<int64_t>(), vs.data_ptr<double>(), vs.size(0),
                         th.data_ptr<double>(), th.size(0), scale, t_factor, oic_lambda,
                         oic_gamma, drop_zero_run);
  });
}

}  // namespace case_fast
