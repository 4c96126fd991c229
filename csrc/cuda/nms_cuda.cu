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
#include <cuda_runtime.h>

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
      out_score[at] = score[q] * exp(-(v * v) / alpha);
      ++at;
    }
    slot += __shfl_sync(0xffffffffu, incl, 31);
  }
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

}  // namespace case_fast
