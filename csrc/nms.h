// Temporal NMS (method.md §5) shared declarations: the IoU and the decay exp both devices use, the
// method ids, the raw CUDA launcher (plain pointers, no torch), and the torch-level entry points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CASE_FAST_HD __host__ __device__ __forceinline__
#else
#define CASE_FAST_HD inline
#endif

namespace case_fast {

enum NmsMethod : int { kOnePassDecay = 0, kHard = 1, kSoftGaussian = 2, kSoftLinear = 3 };

// IoU of [s0, e0] (area a0) and [s, e] (area a); one = 1.0 for the "+1" convention, else 0.0.
// Areas are e - s + one. Exactly the float64 operation order of nms_reference (no FMA possible:
// no multiply is involved), so every backend takes the same threshold decisions.
// A union <= 0 gives IoU 0.
// Written without branches on the overlap (they mispredict); same values as the form
// "inter <= 0 -> 0" since 0 / union = 0.
CASE_FAST_HD double seg_iou(double s0, double e0, double a0, double s, double e, double a,
                            double one) {
  const double lo = s0 > s ? s0 : s;
  const double hi = e0 < e ? e0 : e;
  const double x = (hi - lo) + one;
  const double inter = x > 0.0 ? x : 0.0;
  const double uni = (a0 + a) - inter;
  const double q = inter / (uni > 0.0 ? uni : 1.0);
  return uni > 0.0 ? q : 0.0;
}

// The bits of x as a To of the same size (int64_t <-> double), on the host and on the device
// (memcpy is a device function too; both compile it to a register move).
template <typename To, typename From>
CASE_FAST_HD To bit_cast_hd(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast_hd: sizes differ");
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
}

// exp(x) for x <= 0: every decay factor exp(-IoU^2 / alpha) of every backend (one-pass decay
// and Gaussian Soft-NMS; C++, CUDA, and case_fast.ops.nms.exp_nonpos in numpy). The same IEEE
// operations everywhere (no FMA: -ffp-contract=off, nvcc --fmad=false, numpy never fuses), so
// all backends get the same bits and Soft-NMS picks the same proposal even when current scores
// tie. Within 1 ulp of glibc's exp (2M points of [-800, 0]); 0 below -745.5 (and for -inf or
// NaN). Branch-free, so a loop of it vectorises: x = n ln2 + r by rounding with the 1.5 * 2^52
// trick (ln2 split in two, the high part exact in the product), e^r by its Taylor polynomial of
// degree 13 (|r| <= ln2 / 2: error below 1e-17), 2^n as two exact power-of-two factors (so
// results down to the subnormals round once).
CASE_FAST_HD double exp_nonpos(double x) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double xc = x > -745.5 ? x : -745.5;
  const double t = xc * 1.4426950408889634 + magic;
  const double fn = t - magic;
  // fn as an integer, in [-1076, 0]
  const int64_t n = bit_cast_hd<int64_t>(t) - bit_cast_hd<int64_t>(magic);
  const double r = (xc - fn * 6.93147180369123816490e-01) - fn * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t n1 = -static_cast<int64_t>(static_cast<uint64_t>(-n) >> 1);  // ceil(n / 2)
  const int64_t n2 = n - n1;
  return (p * bit_cast_hd<double>((n1 + 1023) << 52)) * bit_cast_hd<double>((n2 + 1023) << 52);
}

// CUDA (csrc/cuda/nms_cuda.cu), methods kOnePassDecay and kHard. Inputs are already in walk
// order (device arrays): group g occupies positions [offsets[g], offsets[g+1]) of s / e / score,
// and order[p] is the input index of position p. Outputs (device): keep_flag[p] = 1 for the
// kept positions; for one-pass decay also out_keep / out_score (n each): from offsets[g] on, the
// group's kept ones in walk order, then its decayed ones (by suppressor, then walk order).
// `workspace` is device memory of nms_cuda_workspace_bytes(...) bytes. Asynchronous on `stream`
// (a cudaStream_t) apart from one small host-to-device copy of per-group offsets.
std::size_t nms_cuda_workspace_bytes(const int64_t* offsets_host, int64_t num_groups);
void nms_cuda_launch(const double* s, const double* e, const double* score, const int64_t* order,
                     const int64_t* offsets_host, const int64_t* offsets_dev, int64_t num_groups,
                     int64_t n, int method, double iou_threshold, double alpha, bool plus_one,
                     void* workspace, uint8_t* keep_flag, int64_t* out_keep, double* out_score,
                     void* stream);

// CUDA (csrc/cuda/nms_cuda.cu), methods kSoftGaussian and kSoftLinear: one thread block per
// group, same picks, order and score arithmetic as the CPU kernel (min_score pruning, first
// maximum in walk order on ties). Same walk-order inputs as nms_cuda_launch; `work` is n doubles
// of device memory (the current scores). Outputs (device, n each): pick k of group g goes to
// out_keep[offsets[g] + k] (input index) / out_score[...] (its score when picked), and
// out_flag[p] = 1 exactly on those slots, 0 on the rest. Asynchronous on `stream`; no copy.
void nms_cuda_soft_launch(const double* s, const double* e, const double* score,
                          const int64_t* order, const int64_t* offsets_host,
                          const int64_t* offsets_dev, int64_t num_groups, int64_t n, int method,
                          double iou_threshold, double alpha, double min_score, bool plus_one,
                          double* work, uint8_t* out_flag, int64_t* out_keep, double* out_score,
                          void* stream);

}  // namespace case_fast

#if !defined(__CUDACC__)
#include <ATen/core/Tensor.h>
#include <optional>
#include <string>
#include <tuple>

namespace case_fast {

// Checks the arguments' shapes, dtypes and devices (no data is read) and alpha; returns the
// method id. Shared by the CPU and CUDA entry points.
int check_nms_args(const at::Tensor& segments, const at::Tensor& scores,
                   const std::optional<at::Tensor>& groups, const std::optional<at::Tensor>& order,
                   const std::string& method, double alpha);

// plus_one, or the method's default when not given: true for one-pass decay and hard NMS.
bool nms_plus_one(int method, std::optional<bool> plus_one);

// torch.ops.case_fast.temporal_nms on CPU tensors (the schema in register.cpp).
std::tuple<at::Tensor, at::Tensor> temporal_nms_cpu(
    const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& groups,
    const std::string& method, double iou_threshold, double alpha, double min_score,
    std::optional<bool> plus_one, const std::optional<at::Tensor>& order);

}  // namespace case_fast
#endif
