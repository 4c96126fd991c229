// Temporal NMS on CUDA, CUDA runtime only (plain pointers + cudaStream_t, no torch headers).
//
// Per group (positions already in walk order, see nms.h):
//  1. mask_kernel: bitmask IoU tiles. Row i, word w holds bit k set when position j = 64 w + k
//     comes after i in the walk (j > i) and IoU(i, j) >= thr. Only tiles with w >= i / 64 are
//     computed (all the scan reads). Same float64 seg_iou as the CPU: identical decisions.
//  2. scan_kernel: the greedy walk on the device, one thread block per group, 64 rows at a time:
//     thread 0 walks the 64 rows of the block using the diagonal words (in shared memory), then
//     all threads OR the kept rows into the "removed" words to the right. With `claims` (one-pass
//     decay) each kept row's words are overwritten by the bits it removed first, so afterwards
//     row i lists exactly the positions i decayed. No mask leaves the device.
//  3. one-pass decay only: count_kernel (claimed bits per kept row), assemble_kernel (one block
//     per group: block scans give each kept row its output slot and the start of its decayed
//     run), decay_kernel (one warp per kept row writes its decayed ones in walk order with the
//     score * exp(-IoU^2 / alpha), IoU recomputed in float64).
//
// Soft-NMS (gaussian / linear), soft_kernel: one thread block per group. Thread t owns the
// group's positions t, t + blockDim, ... and is the only one to read or write their current
// scores (`cur`, a global work array, n doubles). A position is a candidate exactly while its
// current score passes the CPU kernel's test `v >= min_score` (a NaN score never does; the pick
// is retired by writing NaN). Per pick: every thread decays its candidates against the pick
// (same expressions as group_soft in csrc/cpu/nms_cpu.cpp) and keeps its best survivor, then a
// block argmax with the key (score desc, walk position asc) gives the next pick: the first
// maximum in walk order, as on the CPU. Pick k of group g goes to slot offsets[g] + k of
// out_keep / out_score and flag[offsets[g] + k] = 1 (flag is 0 on the group's other positions);
// the caller compacts the flagged slots.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "../nms.h"

namespace case_fast {
namespace {

constexpr int kTile = 64;
constexpr int kScanThreads = 256;
constexpr int kSharedRemovedMax = 4096;  // words of "removed" kept in shared memory (32 KiB)

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("temporal_nms CUDA: ") + what + ": " +
                             cudaGetErrorString(err));
}

__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

inline std::size_t align256(std::size_t x) { return (x + 255) & ~std::size_t(255); }

struct Layout {  // per-group sizes and the workspace layout (host side)
  std::vector<int64_t> meta;  // [tile_off (G+1) | mask_off (G) | word_off (G) | nb (G)]
  int64_t total_tiles = 0, mask_words = 0, removed_words = 0, max_nb = 0;
  std::size_t off_mask = 0, off_removed = 0, off_meta = 0, off_cnt = 0, off_base = 0, bytes = 0;
};

Layout make_layout(const int64_t* offsets, int64_t G) {
  Layout L;
  L.meta.assign(4 * G + 1, 0);
  int64_t* tile_off = L.meta.data();
  int64_t* mask_off = tile_off + (G + 1);
  int64_t* word_off = mask_off + G;
  int64_t* nbs = word_off + G;
  const int64_t n = offsets[G];
  for (int64_t g = 0; g < G; ++g) {
    const int64_t ng = offsets[g + 1] - offsets[g];
    const int64_t nb = (ng + kTile - 1) / kTile;
    tile_off[g] = L.total_tiles;
    mask_off[g] = L.mask_words;
    word_off[g] = L.removed_words;
    nbs[g] = nb;
    L.total_tiles += nb * nb;
    L.mask_words += ng * nb;
    L.removed_words += nb;
    L.max_nb = nb > L.max_nb ? nb : L.max_nb;
  }
  tile_off[G] = L.total_tiles;
  std::size_t at = 0;
  L.off_mask = at;    at = align256(at + sizeof(uint64_t) * L.mask_words);
  L.off_removed = at; at = align256(at + sizeof(uint64_t) * L.removed_words);
  L.off_meta = at;    at = align256(at + sizeof(int64_t) * L.meta.size());
  L.off_cnt = at;     at = align256(at + sizeof(int64_t) * n);
  L.off_base = at;    at = align256(at + sizeof(int64_t) * n);
  L.bytes = at;
  return L;
}

// The largest i in [0, n) with v[i] <= x (v non-decreasing, v[0] <= x).
__device__ __forceinline__ int64_t last_le(const int64_t* __restrict__ v, int64_t n, int64_t x) {
  int64_t lo = 0, hi = n;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (v[mid] <= x) lo = mid; else hi = mid;
  }
  return lo;
}

// Group of tile t (empty groups have no tiles) / of sorted position p (offsets has G + 1 entries).
__device__ __forceinline__ int64_t group_of_tile(const int64_t* tile_off, int64_t G, int64_t t) {
  return last_le(tile_off, G, t);
}
__device__ __forceinline__ int64_t group_of(const int64_t* offsets, int64_t G, int64_t p) {
  return last_le(offsets, G + 1, p);
}

__global__ void mask_kernel(const double* __restrict__ s, const double* __restrict__ e,
                            const int64_t* __restrict__ offsets, const int64_t* __restrict__ meta,
                            int64_t G, double one, double thr, uint64_t* __restrict__ mask) {
  const int64_t* tile_off = meta;
  const int64_t* mask_off = meta + (G + 1);
  const int64_t* nbs = meta + (G + 1) + 2 * G;
  const int64_t t = blockIdx.x;
  const int64_t g = group_of_tile(tile_off, G, t);
  const int64_t nb = nbs[g];
  const int64_t local = t - tile_off[g];
  const int64_t rb = local / nb, cb = local % nb;
  if (cb < rb) return;  // lower triangle: never read
  const int64_t p0 = offsets[g], ng = offsets[g + 1] - p0;
  const int64_t rows = imin(kTile, ng - rb * kTile);
  const int64_t cols = imin(kTile, ng - cb * kTile);
  __shared__ double cs[kTile], ce[kTile], ca[kTile];
  if (threadIdx.x < cols) {
    const int64_t j = p0 + cb * kTile + threadIdx.x;
    cs[threadIdx.x] = s[j];
    ce[threadIdx.x] = e[j];
    ca[threadIdx.x] = (e[j] - s[j]) + one;
  }
  __syncthreads();
  if (threadIdx.x >= rows) return;
  const int64_t i = rb * kTile + threadIdx.x;  // group-local
  const double s0 = s[p0 + i], e0 = e[p0 + i], a0 = (e0 - s0) + one;
  uint64_t bits = 0;
  const int start = (cb == rb) ? static_cast<int>(threadIdx.x) + 1 : 0;  // only j > i
  for (int k = start; k < cols; ++k)
    if (seg_iou(s0, e0, a0, cs[k], ce[k], ca[k], one) >= thr) bits |= 1ULL << k;
  mask[mask_off[g] + i * nb + cb] = bits;
}

__global__ void scan_kernel(const int64_t* __restrict__ offsets, const int64_t* __restrict__ meta,
                            int64_t G, uint64_t* __restrict__ mask,
                            uint64_t* __restrict__ removed_global, bool use_shared, bool claims,
                            uint8_t* __restrict__ keep_flag) {
  extern __shared__ uint64_t removed_shared[];
  __shared__ uint64_t diag[kTile];
  __shared__ int kept_rows[kTile];
  __shared__ int n_kept;
  __shared__ uint64_t kept_bits;
  const int64_t g = blockIdx.x;
  const int64_t* mask_off = meta + (G + 1);
  const int64_t* word_off = mask_off + G;
  const int64_t nb = (word_off + G)[g];
  const int64_t p0 = offsets[g], ng = offsets[g + 1] - p0;
  if (ng == 0) return;
  uint64_t* M = mask + mask_off[g];
  uint64_t* removed = use_shared ? removed_shared : removed_global + word_off[g];
  for (int64_t w = threadIdx.x; w < nb; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  for (int64_t rb = 0; rb < nb; ++rb) {
    const int rows = static_cast<int>(imin(kTile, ng - rb * kTile));
    if (threadIdx.x < rows) diag[threadIdx.x] = M[(rb * kTile + threadIdx.x) * nb + rb];
    __syncthreads();
    if (threadIdx.x == 0) {  // the serial walk through this block's 64 rows
      uint64_t w = removed[rb], kb = 0;
      int cnt = 0;
      for (int k = 0; k < rows; ++k) {
        if (!((w >> k) & 1ULL)) {
          kb |= 1ULL << k;
          kept_rows[cnt++] = k;
          const uint64_t nw = diag[k] & ~w;  // diag[k] only has bits > k
          diag[k] = nw;
          w |= nw;
        }
      }
      removed[rb] = w;
      n_kept = cnt;
      kept_bits = kb;
    }
    __syncthreads();
    if (threadIdx.x < rows) {
      const bool kept = (kept_bits >> threadIdx.x) & 1ULL;
      keep_flag[p0 + rb * kTile + threadIdx.x] = kept ? 1 : 0;
      if (claims && kept) M[(rb * kTile + threadIdx.x) * nb + rb] = diag[threadIdx.x];
    }
    const int nk = n_kept;
    for (int64_t w = rb + 1 + threadIdx.x; w < nb; w += blockDim.x) {
      uint64_t r = removed[w];
      for (int c = 0; c < nk; ++c) {
        uint64_t* row = M + (rb * kTile + kept_rows[c]) * nb;
        const uint64_t nw = row[w] & ~r;
        if (claims) row[w] = nw;
        r |= nw;
      }
      removed[w] = r;
    }
    __syncthreads();
  }
}

// Warp per position: number of positions a kept row claimed (decayed).
__global__ void count_kernel(const int64_t* __restrict__ offsets, const int64_t* __restrict__ meta,
                             int64_t G, int64_t n, const uint64_t* __restrict__ mask,
                             const uint8_t* __restrict__ keep_flag, int64_t* __restrict__ cnt) {
  const int64_t p = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (p >= n) return;
  if (!keep_flag[p]) {
    if (lane == 0) cnt[p] = 0;
    return;
  }
  const int64_t g = group_of(offsets, G, p);
  const int64_t* mask_off = meta + (G + 1);
  const int64_t nb = (mask_off + 2 * G)[g];
  const int64_t i = p - offsets[g];
  const uint64_t* row = mask + mask_off[g] + i * nb;
  int64_t c = 0;
  for (int64_t w = i / kTile + lane; w < nb; w += 32) c += __popcll(row[w]);
  for (int d = 16; d > 0; d /= 2) c += __shfl_down_sync(0xffffffffu, c, d);
  if (lane == 0) cnt[p] = c;
}

__device__ int64_t block_exclusive_scan(int64_t v, int64_t* sh, int64_t* total) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned d = 1; d < blockDim.x; d *= 2) {
    const int64_t x = threadIdx.x >= d ? sh[threadIdx.x - d] : 0;
    __syncthreads();
    sh[threadIdx.x] += x;
    __syncthreads();
  }
  const int64_t incl = sh[threadIdx.x];
  *total = sh[blockDim.x - 1];
  __syncthreads();
  return incl - v;
}

// One block per group: kept rows go to offsets[g] + (kept rank); base[p] = the first output slot
// of kept row p's decayed run.
__global__ void assemble_kernel(const int64_t* __restrict__ offsets, int64_t G,
                                const double* __restrict__ score, const int64_t* __restrict__ order,
                                const uint8_t* __restrict__ keep_flag,
                                const int64_t* __restrict__ cnt, int64_t* __restrict__ base,
                                int64_t* __restrict__ out_keep, double* __restrict__ out_score) {
  __shared__ int64_t sh[kScanThreads];
  const int64_t g = blockIdx.x;
  const int64_t p0 = offsets[g], ng = offsets[g + 1] - p0;
  int64_t n_kept = 0, tot;
  for (int64_t b = 0; b < ng; b += blockDim.x) {  // pass 1: kept count
    const int64_t i = b + threadIdx.x;
    block_exclusive_scan(i < ng ? keep_flag[p0 + i] : 0, sh, &tot);
    n_kept += tot;
  }
  int64_t carry_k = 0, carry_d = 0;
  for (int64_t b = 0; b < ng; b += blockDim.x) {  // pass 2: slots
    const int64_t i = b + threadIdx.x;
    const bool in = i < ng;
    const int64_t k = in ? keep_flag[p0 + i] : 0;
    const int64_t c = (in && k) ? cnt[p0 + i] : 0;
    const int64_t rk = block_exclusive_scan(k, sh, &tot) + carry_k;
    carry_k += tot;
    const int64_t rd = block_exclusive_scan(c, sh, &tot) + carry_d;
    carry_d += tot;
    if (in && k) {
      out_keep[p0 + rk] = order[p0 + i];
      out_score[p0 + rk] = score[p0 + i];
      base[p0 + i] = p0 + n_kept + rd;
    }
  }
}

// Warp per kept position: write its claimed positions in walk order.
__global__ void decay_kernel(const double* __restrict__ s, const double* __restrict__ e,
                             const double* __restrict__ score, const int64_t* __restrict__ order,
                             const int64_t* __restrict__ offsets, const int64_t* __restrict__ meta,
                             int64_t G, int64_t n, const uint64_t* __restrict__ mask,
                             const uint8_t* __restrict__ keep_flag,
                             const int64_t* __restrict__ base, double one, double alpha,
                             int64_t* __restrict__ out_keep, double* __restrict__ out_score) {
  const int64_t p = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (p >= n || !keep_flag[p]) return;
  const int64_t g = group_of(offsets, G, p);
  const int64_t* mask_off = meta + (G + 1);
  const int64_t nb = (mask_off + 2 * G)[g];
  const int64_t p0 = offsets[g], i = p - p0;
  const uint64_t* row = mask + mask_off[g] + i * nb;
  const double s0 = s[p], e0 = e[p], a0 = (e0 - s0) + one;
  int64_t slot = base[p];
  for (int64_t w0 = i / kTile; w0 < nb; w0 += 32) {
    const int64_t w = w0 + lane;
    uint64_t bits = w < nb ? row[w] : 0;
    const int c = __popcll(bits);
    int incl = c;  // warp inclusive scan of the counts
    for (int d = 1; d < 32; d *= 2) {
      const int x = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += x;
    }
    int64_t at = slot + incl - c;
    while (bits) {
      const int k = __ffsll(static_cast<long long>(bits)) - 1;
      bits &= bits - 1;
      const int64_t q = p0 + w * kTile + k;
      const double v = seg_iou(s0, e0, a0, s[q], e[q], (e[q] - s[q]) + one, one);
      out_keep[at] = order[q];
      out_score[at] = score[q] * exp_nonpos(-(v * v) / alpha);
      ++at;
    }
    slot += __shfl_sync(0xffffffffu, incl, 31);
  }
}

constexpr int kSoftMaxThreads = 512;

// Soft-NMS pick order: a beats b when a is a candidate (pos >= 0) and b is none, or a has the
// higher score, or the same score and the earlier walk position. Candidate scores are never NaN
// (they pass v >= min_score), so this is a total order and any reduction tree gives the same
// winner: the first maximum in walk order.
__device__ __forceinline__ bool soft_better(double va, int pa, double vb, int pb) {
  return pa >= 0 && (pb < 0 || va > vb || (va == vb && pa < pb));
}

__device__ __forceinline__ void warp_soft_argmax(double& v, int& p) {
  for (int d = 16; d > 0; d /= 2) {
    const double ov = __shfl_down_sync(0xffffffffu, v, d);
    const int op = __shfl_down_sync(0xffffffffu, p, d);
    if (soft_better(ov, op, v, p)) {
      v = ov;
      p = op;
    }
  }
}

// Block argmax of the threads' (v, p); every thread gets the winner (p = -1: no candidate left).
// All threads of the block must call it (blockDim.x a multiple of 32, at most 32 warps).
// Shared memory reuse between calls: wv / wp are rewritten only before the first barrier of the
// next call, after warp 0 read them before the second barrier of this one; bv / bp are rewritten
// only after the first barrier of the next call, which every thread reaches after reading them.
__device__ __forceinline__ void block_soft_argmax(double& v, int& p) {
  __shared__ double wv[32];
  __shared__ int wp[32];
  __shared__ double bv;
  __shared__ int bp;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  warp_soft_argmax(v, p);
  if (lane == 0) {
    wv[warp] = v;
    wp[warp] = p;
  }
  __syncthreads();
  if (warp == 0) {
    const bool in = lane < static_cast<int>(blockDim.x / 32);
    v = in ? wv[lane] : 0.0;
    p = in ? wp[lane] : -1;
    warp_soft_argmax(v, p);
    if (lane == 0) {
      bv = v;
      bp = p;
    }
  }
  __syncthreads();
  v = bv;
  p = bp;
}

// One block per group; see the comment at the top of the file.
template <bool kLinear>
__global__ void __launch_bounds__(kSoftMaxThreads)
soft_kernel(const double* __restrict__ s, const double* __restrict__ e,
            const double* __restrict__ score, const int64_t* __restrict__ order,
            const int64_t* __restrict__ offsets, double one, double thr, double alpha,
            double min_score, double* __restrict__ cur, uint8_t* __restrict__ flag,
            int64_t* __restrict__ out_keep, double* __restrict__ out_score) {
  const int64_t g = blockIdx.x;
  const int64_t p0 = offsets[g];
  const int ng = static_cast<int>(offsets[g + 1] - p0);  // the launcher checks ng <= INT_MAX
  if (ng == 0) return;  // uniform in the block: no barrier is skipped by part of it
  const double* S = s + p0;
  const double* E = e + p0;
  double* C = cur + p0;
  const int step = static_cast<int>(blockDim.x);
  double bv = 0.0;  // this thread's best candidate (bp = -1: none)
  int bp = -1;
  for (int i = threadIdx.x; i < ng; i += step) {
    const double v = score[p0 + i];
    C[i] = v;
    if (v >= min_score && soft_better(v, i, bv, bp)) {
      bv = v;
      bp = i;
    }
  }
  block_soft_argmax(bv, bp);
  int cnt = 0;  // picks so far, the same in every thread
  while (bp >= 0) {
    const int pick = bp;
    if (threadIdx.x == 0) {
      out_keep[p0 + cnt] = order[p0 + pick];
      out_score[p0 + cnt] = bv;
    }
    ++cnt;
    const double s0 = S[pick], e0 = E[pick], a0 = (e0 - s0) + one;
    bv = 0.0;
    bp = -1;
    for (int i = threadIdx.x; i < ng; i += step) {
      double v = C[i];
      if (!(v >= min_score)) continue;  // not a candidate (never was, picked, or dropped)
      if (i == pick) {
        C[i] = __longlong_as_double(0x7ff8000000000000LL);  // NaN: retired
        continue;
      }
      const double si = S[i], ei = E[i];
      const double iou = seg_iou(s0, e0, a0, si, ei, (ei - si) + one, one);
      // a decayed score below min_score (or NaN) is dropped for good
      if (kLinear) {
        if (iou >= thr) C[i] = v = v * (1.0 - iou);
      } else if (iou != 0.0) {
        C[i] = v = v * exp_nonpos(-(iou * iou) / alpha);
      }
      if (v >= min_score && soft_better(v, i, bv, bp)) {
        bv = v;
        bp = i;
      }
    }
    block_soft_argmax(bv, bp);
  }
  for (int i = threadIdx.x; i < ng; i += step) flag[p0 + i] = i < cnt ? 1 : 0;
}

}  // namespace

std::size_t nms_cuda_workspace_bytes(const int64_t* offsets_host, int64_t num_groups) {
  return make_layout(offsets_host, num_groups).bytes;
}

void nms_cuda_launch(const double* s, const double* e, const double* score, const int64_t* order,
                     const int64_t* offsets_host, const int64_t* offsets_dev, int64_t num_groups,
                     int64_t n, int method, double iou_threshold, double alpha, bool plus_one,
                     void* workspace, uint8_t* keep_flag, int64_t* out_keep, double* out_score,
                     void* stream_ptr) {
  if (method != kOnePassDecay && method != kHard)
    throw std::runtime_error("temporal_nms CUDA: only one_pass_decay and hard run on the GPU");
  if (n == 0 || num_groups == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t G = num_groups;
  const Layout L = make_layout(offsets_host, G);
  char* ws = static_cast<char*>(workspace);
  uint64_t* mask = reinterpret_cast<uint64_t*>(ws + L.off_mask);
  uint64_t* removed = reinterpret_cast<uint64_t*>(ws + L.off_removed);
  int64_t* meta = reinterpret_cast<int64_t*>(ws + L.off_meta);
  int64_t* cnt = reinterpret_cast<int64_t*>(ws + L.off_cnt);
  int64_t* base = reinterpret_cast<int64_t*>(ws + L.off_base);
  check(cudaMemcpyAsync(meta, L.meta.data(), sizeof(int64_t) * L.meta.size(),
                        cudaMemcpyHostToDevice, stream), "copy group layout");
  const double one = plus_one ? 1.0 : 0.0;
  const bool decay = method == kOnePassDecay;

  if (L.total_tiles > 0x7fffffffLL) throw std::runtime_error("temporal_nms CUDA: too many tiles");
  mask_kernel<<<static_cast<unsigned>(L.total_tiles), kTile, 0, stream>>>(
      s, e, offsets_dev, meta, G, one, iou_threshold, mask);
  check(cudaGetLastError(), "mask_kernel");
  const bool use_shared = L.max_nb <= kSharedRemovedMax;
  const std::size_t shared = use_shared ? sizeof(uint64_t) * L.max_nb : 0;
  scan_kernel<<<static_cast<unsigned>(G), kScanThreads, shared, stream>>>(
      offsets_dev, meta, G, mask, removed, use_shared, decay, keep_flag);
  check(cudaGetLastError(), "scan_kernel");
  if (!decay) return;
  const int64_t warps_per_block = 8;
  const unsigned blocks = static_cast<unsigned>((n + warps_per_block - 1) / warps_per_block);
  count_kernel<<<blocks, 32 * warps_per_block, 0, stream>>>(offsets_dev, meta, G, n, mask,
                                                            keep_flag, cnt);
  check(cudaGetLastError(), "count_kernel");
  assemble_kernel<<<static_cast<unsigned>(G), kScanThreads, 0, stream>>>(
      offsets_dev, G, score, order, keep_flag, cnt, base, out_keep, out_score);
  check(cudaGetLastError(), "assemble_kernel");
  decay_kernel<<<blocks, 32 * warps_per_block, 0, stream>>>(
      s, e, score, order, offsets_dev, meta, G, n, mask, keep_flag, base, one, alpha, out_keep,
      out_score);
  check(cudaGetLastError(), "decay_kernel");
}

void nms_cuda_soft_launch(const double* s, const double* e, const double* score,
                          const int64_t* order, const int64_t* offsets_host,
                          const int64_t* offsets_dev, int64_t num_groups, int64_t n, int method,
                          double iou_threshold, double alpha, double min_score, bool plus_one,
                          double* work, uint8_t* out_flag, int64_t* out_keep, double* out_score,
                          void* stream_ptr) {
  if (method != kSoftGaussian && method != kSoftLinear)
    throw std::runtime_error("temporal_nms CUDA: nms_cuda_soft_launch runs soft_gaussian and "
                             "soft_linear only");
  if (n == 0 || num_groups == 0) return;
  if (num_groups > 0x7fffffffLL) throw std::runtime_error("temporal_nms CUDA: too many groups");
  int64_t max_ng = 0;
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t ng = offsets_host[g + 1] - offsets_host[g];
    max_ng = ng > max_ng ? ng : max_ng;
  }
  if (max_ng > INT_MAX) throw std::runtime_error("temporal_nms CUDA: group too large");
  if (max_ng == 0) return;
  // block size: the largest group rounded up to whole warps, at most kSoftMaxThreads
  const int threads = static_cast<int>(imin(kSoftMaxThreads, (max_ng + 31) / 32 * 32));
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const double one = plus_one ? 1.0 : 0.0;
  const unsigned blocks = static_cast<unsigned>(num_groups);
  if (method == kSoftLinear)
    soft_kernel<true><<<blocks, threads, 0, stream>>>(s, e, score, order, offsets_dev, one,
                                                      iou_threshold, alpha, min_score, work,
                                                      out_flag, out_keep, out_score);
  else
    soft_kernel<false><<<blocks, threads, 0, stream>>>(s, e, score, order, offsets_dev, one,
                                                       iou_threshold, alpha, min_score, work,
                                                       out_flag, out_keep, out_score);
  check(cudaGetLastError(), "soft_kernel");
}

}  // namespace case_fast
