// Torch binding of the CUDA temporal NMS (built only when torch has CUDA). Every method runs on
// the GPU (csrc/cuda/nms_cuda.cu): one_pass_decay and hard through the bitmask walk, the two
// Soft-NMS variants through one thread block per group. No mask or score array visits the host;
// hard and Soft-NMS return a data-dependent number of rows, so their final at::nonzero (the
// compaction of the flagged slots) copies that one count to the host (a stream sync); the group
// offsets are found on the device and copied to the host (and a given order checked there).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../nms.h"

namespace case_fast {

// The walk (see temporal_nms_cpu): the given order, checked, or the default one (a stable sort by
// descending score, NaN first, then a stable sort by group id); and the group offsets in it, on
// the host (the launchers size their work from them): one device-to-host copy.
static std::tuple<at::Tensor, at::Tensor> cuda_walk(const at::Tensor& score, const at::Tensor& gr,
                                                    const std::optional<at::Tensor>& order) {
  const int64_t n = score.size(0);
  at::Tensor ord;
  if (order) {
    ord = order->to(at::kLong).contiguous();
    const auto in_range = (ord.min() >= 0).logical_and(ord.max() < n);
    const auto safe = ord.clamp(0, n - 1);
    const auto perm = (at::bincount(safe, {}, n) == 1).all();
    const auto g = gr.index_select(0, safe);
    const auto asc = (g.slice(0, 1) >= g.slice(0, 0, n - 1)).all();
    const auto ok = at::stack({in_range, perm, asc}).cpu();
    const bool* f = ok.data_ptr<bool>();
    TORCH_CHECK(f[0] && f[1], "temporal_nms: order must be a permutation of 0..n-1");
    TORCH_CHECK(f[2], "temporal_nms: order must list the groups by ascending id");
  } else {
    const auto by_score = at::argsort(score, /*stable=*/true, 0, /*descending=*/true);
    ord = by_score.index_select(0, at::argsort(gr.index_select(0, by_score), true, 0, false));
  }
  const auto counts = std::get<2>(at::unique_consecutive(gr.index_select(0, ord), false, true));
  const auto off = at::cat({counts.new_zeros({1}), counts.cumsum(0)}).cpu().contiguous();
  return {ord.contiguous(), off};
}

std::tuple<at::Tensor, at::Tensor> temporal_nms_cuda(
    const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& groups,
    const std::string& method, double iou_threshold, double alpha, double min_score,
    std::optional<bool> plus_one_opt, const std::optional<at::Tensor>& order) {
  const int m_id = check_nms_args(segments, scores, groups, order, method, alpha);
  TORCH_CHECK(segments.is_cuda(), "temporal_nms_cuda: CUDA tensors expected");
  c10::cuda::CUDAGuard guard(segments.device());
  const bool plus_one = nms_plus_one(m_id, plus_one_opt);
  const int64_t n = segments.size(0);
  auto opts = segments.options().dtype(at::kDouble);
  if (n == 0) return {at::empty({0}, opts.dtype(at::kLong)), at::empty({0}, opts)};
  const auto score = scores.to(at::kDouble);
  const auto gr = groups ? groups->to(at::kLong) : at::zeros({n}, opts.dtype(at::kLong));
  const auto [ord, off] = cuda_walk(score, gr, order);
  auto seg = segments.to(at::kDouble).index_select(0, ord);  // walk order
  auto s = seg.select(1, 0).contiguous();
  auto e = seg.select(1, 1).contiguous();
  auto sc = score.index_select(0, ord).contiguous();
  const int64_t G = off.size(0) - 1;
  auto off_dev = off.to(segments.device());
  if (m_id == kSoftGaussian || m_id == kSoftLinear) {
    // pick k of group g lands in slot off[g] + k, flagged; the flagged slots, in slot order, are
    // the groups ascending, each in pick order
    auto work = at::empty({n}, opts);  // current scores
    auto flag = at::empty({n}, opts.dtype(at::kByte));
    auto out_keep = at::empty({n}, opts.dtype(at::kLong));
    auto out_score = at::empty({n}, opts);
    nms_cuda_soft_launch(s.data_ptr<double>(), e.data_ptr<double>(), sc.data_ptr<double>(),
                         ord.data_ptr<int64_t>(), off.data_ptr<int64_t>(),
                         off_dev.data_ptr<int64_t>(), G, n, m_id, iou_threshold, alpha,
                         min_score, plus_one, work.data_ptr<double>(), flag.data_ptr<uint8_t>(),
                         out_keep.data_ptr<int64_t>(), out_score.data_ptr<double>(),
                         c10::cuda::getCurrentCUDAStream().stream());
    auto slot = at::nonzero(flag).squeeze(1);  // a device-to-host copy: the row count
    return {out_keep.index_select(0, slot), out_score.index_select(0, slot)};
  }
  const std::size_t ws_bytes = nms_cuda_workspace_bytes(off.data_ptr<int64_t>(), G);
  auto ws = at::empty({static_cast<int64_t>(ws_bytes)}, opts.dtype(at::kByte));
  auto keep_flag = at::empty({n}, opts.dtype(at::kByte));
  auto out_keep = at::empty({n}, opts.dtype(at::kLong));
  auto out_score = at::empty({n}, opts);
  nms_cuda_launch(s.data_ptr<double>(), e.data_ptr<double>(), sc.data_ptr<double>(),
                  ord.data_ptr<int64_t>(), off.data_ptr<int64_t>(), off_dev.data_ptr<int64_t>(),
                  G, n, m_id, iou_threshold, alpha, plus_one, ws.data_ptr(),
                  keep_flag.data_ptr<uint8_t>(), out_keep.data_ptr<int64_t>(),
                  out_score.data_ptr<double>(), c10::cuda::getCurrentCUDAStream().stream());
  if (m_id == kOnePassDecay) return {out_keep, out_score};
  auto pos = at::nonzero(keep_flag).squeeze(1);  // kept positions: group by group, walk order
  return {ord.index_select(0, pos), sc.index_select(0, pos)};
}

TORCH_LIBRARY_IMPL(case_fast, CUDA, m) {
  m.impl("temporal_nms", &temporal_nms_cuda);
}

}  // namespace case_fast
