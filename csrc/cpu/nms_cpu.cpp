// Temporal NMS on the CPU: one call runs every group. Each group is walked on contiguous,
// compacted arrays (start, end, score, input index; areas are recomputed) so the inner loops touch
// only live candidates and allocate nothing.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "../nms.h"

namespace case_fast {

int nms_method_id(const std::string& method) {
  if (method == "one_pass_decay") return kOnePassDecay;
  if (method == "hard") return kHard;
  if (method == "soft_gaussian") return kSoftGaussian;
  if (method == "soft_linear") return kSoftLinear;
  TORCH_CHECK(false, "temporal_nms: unknown method '", method,
              "' (one_pass_decay, hard, soft_gaussian, soft_linear)");
  return -1;
}

int check_nms_args(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& order,
                   const at::Tensor& offsets, const std::string& method) {
  TORCH_CHECK(segments.dim() == 2 && segments.size(1) == 2,
              "temporal_nms: segments must be (n, 2)");
  const int64_t n = segments.size(0);
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == n, "temporal_nms: scores must be (n,)");
  TORCH_CHECK(order.dim() == 1 && order.size(0) == n, "temporal_nms: order must be (n,)");
  TORCH_CHECK(segments.scalar_type() == at::kDouble && scores.scalar_type() == at::kDouble,
              "temporal_nms: segments and scores must be float64");
  TORCH_CHECK(order.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong,
              "temporal_nms: order and offsets must be int64");
  TORCH_CHECK(offsets.device().is_cpu() && offsets.dim() == 1 && offsets.size(0) >= 1,
              "temporal_nms: offsets must be a 1-d CPU tensor (num_groups + 1,)");
  TORCH_CHECK(segments.device() == scores.device() && segments.device() == order.device(),
              "temporal_nms: segments, scores and order must be on one device");
  auto off = offsets.contiguous();
  const int64_t* o = off.data_ptr<int64_t>();
  const int64_t g = off.size(0) - 1;
  TORCH_CHECK(o[0] == 0 && o[g] == n, "temporal_nms: offsets must run from 0 to n");
  for (int64_t i = 0; i < g; ++i)
    TORCH_CHECK(o[i] <= o[i + 1], "temporal_nms: offsets must be non-decreasing");
  return nms_method_id(method);
}

namespace {

// An uninitialised buffer (std::vector would zero it: measurable at 20k proposals).
template <typename T>
struct Buf {
  std::unique_ptr<T[]> p;
  void ensure(int64_t n) {
    if (!p) p.reset(new T[n > 0 ? n : 1]);
  }
  T* data() { return p.get(); }
  T& operator[](int64_t i) { return p[i]; }
};

// The op's outputs, written in place: (input index, score) pairs; never more than n of them.
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

// Live candidates of one group, in walk order, structure-of-arrays.
struct Live {
  Buf<double> s, e, sc, a;  // a (areas): Soft-NMS only, filled by group_soft
  Buf<int64_t> idx;
  explicit Live(int64_t cap) {
    for (auto* b : {&s, &e, &sc, &a}) b->ensure(cap);
    idx.ensure(cap);
  }
};

// Work buffers reused by every group of one call (no allocation inside the loops); the bucket
// buffers are allocated on the first group that uses them.
struct Scratch {
  int64_t cap;
  std::vector<int64_t> dkeep;
  std::vector<double> dout;
  Buf<char> alive;
  Buf<int32_t> bid;
  Buf<int64_t> bstart, bcnt, slot_pos, hit_of, rank_start, hit_q;
  Buf<double> ss, ee, hit_v, tmp;
  explicit Scratch(int64_t c) : cap(c) {
    dkeep.reserve(cap);
    dout.reserve(cap);
  }
  void ensure_buckets() {
    alive.ensure(cap);
    bid.ensure(cap);
    bstart.ensure(cap + 2);
    bcnt.ensure(cap + 1);
    for (auto* b : {&slot_pos, &hit_of}) b->ensure(cap);
    rank_start.ensure(cap + 1);
    hit_q.ensure(cap + 1);
    for (auto* b : {&ss, &ee, &tmp}) b->ensure(cap);
    hit_v.ensure(cap + 1);
  }
};

// factor[h] = exp(-(iou[h]^2) / alpha), the decay of one-pass decay, vectorised (see iou_row).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void decay_factors(const double* __restrict iou, double* __restrict factor, int64_t n,
                   double alpha) {
  for (int64_t h = 0; h < n; ++h) factor[h] = exp_nonpos(-(iou[h] * iou[h]) / alpha);
}

// Faithful one-pass decay / hard NMS of one group, plain form: every pick scans the compacted
// list of live candidates in walk order. Appends to the outputs.
void group_one_pass_scan(Live& L, int64_t m, double one, double thr, double alpha, bool decay,
                         Scratch& W, Sink& out) {
  double* s = L.s.data();
  double* e = L.e.data();
  double* sc = L.sc.data();
  int64_t* idx = L.idx.data();
  W.dkeep.clear();
  W.dout.clear();
  while (m > 0) {
    const double s0 = s[0], e0 = e[0], a0 = (e0 - s0) + one;
    out.push(idx[0], sc[0]);
    int64_t w = 0;
    for (int64_t t = 1; t < m; ++t) {
      const double iou = seg_iou(s0, e0, a0, s[t], e[t], (e[t] - s[t]) + one, one);
      if (iou >= thr) {
        if (decay) {
          W.dkeep.push_back(idx[t]);
          W.dout.push_back(sc[t] * exp_nonpos(-(iou * iou) / alpha));
        }
      } else {
        s[w] = s[t]; e[w] = e[t]; sc[w] = sc[t]; idx[w] = idx[t];
        ++w;
      }
    }
    m = w;
  }
  for (size_t h = 0; h < W.dkeep.size(); ++h) out.push(W.dkeep[h], W.dout[h]);
}

// IoUs of [s0, e0] (area a0) with the n segments (s, e) into iou; returns how many are >= thr.
// Their areas (e - s) + one are recomputed here (the same value as everywhere else; one load
// and one store fewer per candidate in the walk than keeping an area array in the buckets).
// A loop the compiler vectorises (no aliasing, branch-free seg_iou, -fno-trapping-math): 4 lanes
// where the CPU has AVX2 (the clone is chosen at load time), the plain loop elsewhere. Each lane
// does the scalar IEEE operations, so the values are the same either way.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
int64_t iou_row(double s0, double e0, double a0, double one, double thr,
                const double* __restrict s, const double* __restrict e,
                double* __restrict iou, int64_t n) {
  int64_t n_hit = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double v = seg_iou(s0, e0, a0, s[k], e[k], (e[k] - s[k]) + one, one);
    iou[k] = v;
    n_hit += v >= thr;
  }
  return n_hit;
}

// What the bucket walk needs to know of a group, in one pass: the range of starts, the largest
// and the summed areas, and whether every start and end is finite and every area positive and
// finite (else the plain scan runs). Four lanes at a time (GCC vector extensions; the finite
// test on the exponent bits), so no loop-carried latency; the order of the sum does not matter
// (it only sizes the buckets).
struct GroupStats {
  double smin, smax, amax, asum;
  bool ok;
};

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
GroupStats group_stats(const double* __restrict s, const double* __restrict e, int64_t m,
                       double one) {
  typedef double v4d __attribute__((vector_size(32)));
  typedef int64_t v4i __attribute__((vector_size(32)));
  const int64_t kExp = 0x7ff0000000000000LL;  // all exponent bits set: inf or NaN
  v4d lo, hi, am, su;
  v4i bad = {0, 0, 0, 0};
  for (int k = 0; k < 4; ++k) {
    lo[k] = hi[k] = s[0];
    am[k] = (e[0] - s[0]) + one;
    su[k] = 0.0;
  }
  int64_t p = 0;
  for (; p + 4 <= m; p += 4) {
    v4d sv, ev;
    std::memcpy(&sv, s + p, sizeof sv);
    std::memcpy(&ev, e + p, sizeof ev);
    const v4d av = (ev - sv) + one;
    lo = sv < lo ? sv : lo;
    hi = sv > hi ? sv : hi;
    am = av > am ? av : am;
    su += av;
    v4i sb, eb, ab;
    std::memcpy(&sb, &sv, sizeof sb);
    std::memcpy(&eb, &ev, sizeof eb);
    std::memcpy(&ab, &av, sizeof ab);
    bad |= ((sb & kExp) == kExp) | ((eb & kExp) == kExp) | ((ab & kExp) == kExp) | ~(av > 0.0);
  }
  GroupStats g{lo[0], hi[0], am[0], su[0], true};
  for (int k = 1; k < 4; ++k) {
    g.smin = std::min(g.smin, lo[k]);
    g.smax = std::max(g.smax, hi[k]);
    g.amax = std::max(g.amax, am[k]);
    g.asum += su[k];
  }
  bool ok = (bad[0] | bad[1] | bad[2] | bad[3]) == 0;
  for (; p < m; ++p) {
    const double ap = (e[p] - s[p]) + one;
    g.smin = std::min(g.smin, s[p]);
    g.smax = std::max(g.smax, s[p]);
    g.amax = std::max(g.amax, ap);
    g.asum += ap;
    ok = ok && std::isfinite(s[p]) && std::isfinite(e[p]) && std::isfinite(ap) && ap > 0.0;
  }
  // a range or an area sum that overflows would make the bucket width meaningless
  g.ok = ok && std::isfinite(g.smax - g.smin) && std::isfinite(g.asum);
  return g;
}

// bid[p] = min(floor((s[p] - smin) * inv_width), top), the bucket of each start (s >= smin, so
// never negative; top = number of buckets - 1 < 2^31), vectorised.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void bucket_ids(const double* __restrict s, int32_t* __restrict bid, int64_t m, double smin,
                double inv_width, double top) {
  for (int64_t p = 0; p < m; ++p) {
    const double f = (s[p] - smin) * inv_width;
    bid[p] = static_cast<int32_t>(f < top ? f : top);
  }
}

// Same result, fast form: the live candidates also sit in buckets of start time, and a pick only
// visits the buckets whose starts can reach IoU >= thr with it. Needs thr > 0, positive finite
// areas and finite times (checked by the caller). Why the window is safe, for pick i = [s0, e0]
// of area a0 and a candidate j (0 < thr <= 1): inter <= e0 - s_j + one and union >= a0, so
// IoU >= thr needs s_j <= e0 + one - thr a0; j starting at s_j < s0 has union >= a0 + (s0 - s_j)
// and inter <= a_j - (s0 - s_j), so it needs s0 - s_j <= a0 (1/thr - 1) and
// s0 - s_j <= (min(max a, a0/thr) - thr a0) / (1 + thr). The bounds get a relative slack far
// above rounding error; every visited candidate is then decided by the exact seg_iou. The hits
// (decayed ones) are listed pick by pick; a final pass over the walk positions puts each into
// its pick's block of the output, which gives the released order (by pick, then walk order).
void group_one_pass_buckets(Live& L, int64_t m, const GroupStats& st, double one, double thr,
                            double alpha, bool decay, Scratch& W, Sink& out) {
  W.ensure_buckets();
  const double* s = L.s.data();
  const double* e = L.e.data();
  const double* sc = L.sc.data();
  const int64_t* idx = L.idx.data();
  const double smin = st.smin, smax = st.smax, asum = st.asum, amax = st.amax;
  const double range = smax - smin;
  const double md = static_cast<double>(m);
  double width = std::max(0.25 * asum / md, 2.0 * range / md);
  if (!(width > 0.0)) width = 1.0;
  int64_t nb = std::min<int64_t>(static_cast<int64_t>(range / width) + 1, m);
  const double inv_width = 1.0 / width;
  auto bucket_of = [&](double x) -> int64_t {  // monotone in x
    if (!(x > smin)) return 0;
    const double f = (x - smin) * inv_width;
    return f >= static_cast<double>(nb - 1) ? nb - 1 : static_cast<int64_t>(f);
  };
  // counting sort of the walk positions into buckets
  int64_t* bstart = W.bstart.data();
  int64_t* bcnt = W.bcnt.data();
  std::fill(bcnt, bcnt + nb, 0);
  int32_t* bid = W.bid.data();
  bucket_ids(s, bid, m, smin, inv_width, static_cast<double>(nb - 1));
  for (int64_t p = 0; p < m; ++p) ++bcnt[bid[p]];
  bstart[0] = 0;
  for (int64_t b = 0; b < nb; ++b) bstart[b + 1] = bstart[b] + bcnt[b];
  std::fill(bcnt, bcnt + nb, 0);
  double* ss = W.ss.data();
  double* ee = W.ee.data();
  int64_t* slot_pos = W.slot_pos.data();
  for (int64_t p = 0; p < m; ++p) {  // one scattered store per candidate, then a gather
    const int64_t b = bid[p];
    slot_pos[bstart[b] + bcnt[b]++] = p;
  }
  for (int64_t k = 0; k < m; ++k) {
    const int64_t p = slot_pos[k];
    ss[k] = s[p]; ee[k] = e[p];
  }
  char* alive = W.alive.data();
  std::fill(alive, alive + m, 1);
  const double back = std::max(0.0, 1.0 / thr - 1.0) * (1.0 + 1e-7);
  const double fwd = std::min(thr, 1.0) * (1.0 - 1e-7);
  int64_t* rank_start = W.rank_start.data();  // the first hit of each rank
  int64_t* hit_q = W.hit_q.data();
  double* hit_v = W.hit_v.data();
  double* tmp = W.tmp.data();
  int64_t nkept = 0, ndec = 0;
  for (int64_t i = 0; i < m; ++i) {
    if (!alive[i]) continue;
    alive[i] = 0;
    const double s0 = s[i], e0 = e[i], a0 = (e0 - s0) + one;
    out.push(idx[i], sc[i]);
    const double tol = 1e-7 * (std::fabs(s0) + std::fabs(e0) + a0 + 1.0);
    // left reach: d = s0 - s_j <= min(a0 (1/thr - 1), (min(amax, a0/thr) - thr a0) / (1 + thr))
    const double reach = std::min(a0 * back, std::max(0.0, (std::min(amax, a0 / thr) - thr * a0) /
                                                             (1.0 + thr)) * (1.0 + 1e-7));
    const int64_t b_lo = bucket_of(s0 - reach - tol);
    const int64_t b_hi = bucket_of(e0 + one - fwd * a0 + tol);
    const int64_t rank = nkept++;
    rank_start[rank] = ndec;
    // visit the live candidates of the window's buckets, compacting each bucket in place;
    // branch-free (the hit test is unpredictable): every candidate is rewritten, hits (and the
    // pick itself, whose bucket is always in its window) are not counted in the new size, hits
    // are appended to a list (walk position, IoU); this pick's hits are the list from
    // rank_start[rank] on
    for (int64_t b = b_lo; b <= b_hi; ++b) {
      const int64_t k0 = bstart[b], k1 = bstart[b] + bcnt[b];
      // pass 1: the IoUs, independent of each other (vectorised divisions)
      const int64_t n_hit = iou_row(s0, e0, a0, one, thr, ss + k0, ee + k0, tmp, k1 - k0);
      if (n_hit == 0 && b != bid[i]) continue;  // nothing leaves this bucket
      // pass 2: compaction from the first candidate that leaves, whose only loop-carried state
      // is two counters
      int64_t k = k0;
      while (k < k1 && !(tmp[k - k0] >= thr) && slot_pos[k] != i) ++k;
      int64_t w = k;
      for (; k < k1; ++k) {
        const double iou = tmp[k - k0];
        const double sk = ss[k], ek = ee[k];
        const int64_t q = slot_pos[k];
        const bool self = q == i;
        const bool hit = (iou >= thr) & !self;
        const bool gone = hit | self;
        ss[w] = sk; ee[w] = ek; slot_pos[w] = q;
        hit_q[ndec] = q;
        hit_v[ndec] = iou;
        w += !gone;
        ndec += hit;
      }
      bcnt[b] = w - k0;
    }
    for (int64_t h = rank_start[rank]; h < ndec; ++h) alive[hit_q[h]] = 0;
  }
  rank_start[nkept] = ndec;
  if (!decay || ndec == 0) return;
  decay_factors(hit_v, tmp, ndec, alpha);
  // decayed ones: the hits are grouped by rank already (rank_start); within a rank, walk order:
  // visit the walk positions in order and send each decayed one to its rank's next slot
  // (hit_of[q] = rank << 32 | hit; ranks and hits are < 2^31)
  int64_t* hit_of = W.hit_of.data();
  std::fill(hit_of, hit_of + m, int64_t(-1));
  for (int64_t r = 0; r < nkept; ++r)
    for (int64_t h = rank_start[r]; h < rank_start[r + 1]; ++h) hit_of[hit_q[h]] = (r << 32) | h;
  int64_t* const ok = out.keep + out.len;
  double* const ov = out.score + out.len;
  for (int64_t q = 0; q < m; ++q) {
    const int64_t rh = hit_of[q];
    if (rh < 0) continue;
    const int64_t slot = rank_start[rh >> 32]++;
    ok[slot] = idx[q];
    ov[slot] = sc[q] * tmp[rh & 0xffffffff];
  }
  out.len += ndec;
}

constexpr int64_t kBucketMin = 48;  // below this a plain scan is as fast

void group_one_pass(Live& L, int64_t m, double one, double thr, double alpha, bool decay,
                    Scratch& W, Sink& out) {
  if (m >= kBucketMin && thr > 0.0 && !std::isnan(thr)) {
    const GroupStats st = group_stats(L.s.data(), L.e.data(), m, one);
    if (st.ok) return group_one_pass_buckets(L, m, st, one, thr, alpha, decay, W, out);
  }
  group_one_pass_scan(L, m, one, thr, alpha, decay, W, out);
}

// Iterative Soft-NMS of one group (candidates already pruned to score >= min_score), on its own
// area array. Kept out of the op's body: inlined there, its loop ran 5% slower.
#if defined(__GNUC__)
__attribute__((noinline))
#endif
void group_soft(Live& L, int64_t m, double one, double thr, double alpha, double min_score,
                bool linear, Sink& out) {
  double* s = L.s.data();
  double* e = L.e.data();
  double* a = L.a.data();
  double* sc = L.sc.data();
  int64_t* idx = L.idx.data();
  for (int64_t t = 0; t < m; ++t) a[t] = (e[t] - s[t]) + one;
  int64_t best = 0;  // first maximum among the live candidates
  for (int64_t t = 1; t < m; ++t)
    if (sc[t] > sc[best]) best = t;
  while (m > 0) {
    const double s0 = s[best], e0 = e[best], a0 = a[best];
    out.push(idx[best], sc[best]);
    const int64_t skip = best;
    int64_t w = 0;
    best = -1;
    for (int64_t t = 0; t < m; ++t) {
      if (t == skip) continue;
      double v = sc[t];
      const double iou = seg_iou(s0, e0, a0, s[t], e[t], a[t], one);
      if (linear) {
        if (iou >= thr) v = v * (1.0 - iou);
      } else if (iou != 0.0) {
        v = v * exp_nonpos(-(iou * iou) / alpha);
      }
      if (v >= min_score) {
        s[w] = s[t]; e[w] = e[t]; a[w] = a[t]; sc[w] = v; idx[w] = idx[t];
        if (best < 0 || v > sc[best]) best = w;
        ++w;
      }
    }
    m = w;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> temporal_nms_cpu(
    const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& order,
    const at::Tensor& offsets, const std::string& method, double iou_threshold, double alpha,
    double min_score, bool plus_one) {
  const int m_id = check_nms_args(segments, scores, order, offsets, method);
  TORCH_CHECK(segments.device().is_cpu(), "temporal_nms_cpu: CPU tensors expected");
  TORCH_CHECK(alpha > 0.0 || (m_id != kOnePassDecay && m_id != kSoftGaussian),
              "temporal_nms: alpha must be > 0");
  auto seg = segments.contiguous();
  auto scr = scores.contiguous();
  auto ord = order.contiguous();
  auto off = offsets.contiguous();
  const int64_t n = seg.size(0);
  const int64_t G = off.size(0) - 1;
  const double* sp = seg.data_ptr<double>();
  const double* scp = scr.data_ptr<double>();
  const int64_t* op = ord.data_ptr<int64_t>();
  const int64_t* offp = off.data_ptr<int64_t>();
  const double one = plus_one ? 1.0 : 0.0;

  int64_t cap = 0;
  for (int64_t g = 0; g < G; ++g) cap = std::max(cap, offp[g + 1] - offp[g]);
  // group sizes fit in 31 bits: bucket ids are int32, and a decayed one's (rank, hit) is packed
  // into one int64
  TORCH_CHECK(cap < (int64_t(1) << 31), "temporal_nms: a group has ", cap,
              " proposals; at most 2^31 - 1 per group");
  Live L(cap);
  Scratch W(cap);
  // every method returns at most n entries (one-pass decay exactly n): written in place
  auto keep_t = at::empty({n}, seg.options().dtype(at::kLong));
  auto out_t = at::empty({n}, seg.options());
  Sink out{keep_t.data_ptr<int64_t>(), out_t.data_ptr<double>()};

  const bool soft = m_id == kSoftGaussian || m_id == kSoftLinear;
  double* const ls = L.s.data();
  double* const le = L.e.data();
  double* const lsc = L.sc.data();
  int64_t* const lidx = L.idx.data();
  for (int64_t g = 0; g < G; ++g) {
    int64_t m = 0;
    for (int64_t p = offp[g]; p < offp[g + 1]; ++p) {  // the group in walk order
      const int64_t i = op[p];
      TORCH_CHECK(i >= 0 && i < n, "temporal_nms: order index out of range");
      const double v = scp[i];
      if (soft && !(v >= min_score)) continue;
      ls[m] = sp[2 * i];
      le[m] = sp[2 * i + 1];
      lsc[m] = v;
      lidx[m] = i;
      ++m;
    }
    if (m_id == kOnePassDecay || m_id == kHard)
      group_one_pass(L, m, one, iou_threshold, alpha, m_id == kOnePassDecay, W, out);
    else
      group_soft(L, m, one, iou_threshold, alpha, min_score, m_id == kSoftLinear, out);
  }
  if (out.len == n) return {keep_t, out_t};
  return {keep_t.narrow(0, 0, out.len), out_t.narrow(0, 0, out.len)};
}

}  // namespace case_fast
