// Torch binding of the CUDA temporal NMS (built only when torch has CUDA). Every method runs on
// the GPU (csrc/cuda/nms_cuda.cu): one_pass_decay and hard through the bitmask walk, the two
// Soft-NMS variants through one thread block per group. No mask or score array visits the host;
// hard and Soft-NMS return a data-dependent number of rows, so their final at::nonzero (the
// compaction of the flagged slots) copies that one count to the host (a stream sync), and the
// offsets (a CPU tensor, num_groups + 1) are copied to the device.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../nms.h"

namespace case_fast {

std::tuple<at::Tensor, at::Tensor> temporal_nms_cuda(
    const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& order,
    const at::Tensor& offsets, const std::string& method, double iou_threshold, double alpha,
    double min_score, bool plus_one) {
  const int m_id = check_nms_args(segments, scores, order, offsets, method);
  TORCH_CHECK(segments.is_cuda(), "temporal_nms_cuda: CUDA tensors expected");
  c10::cuda::CUDAGuard guard(segments.device());
  const int64_t n = segments.size(0);
  auto opts = segments.options();
  if (n == 0) return {at::empty({0}, opts.dtype(at::kLong)), at::empty({0}, opts)};
  auto ord = order.contiguous();
  auto seg = segments.index_select(0, ord);  // walk order
  auto s = seg.select(1, 0).contiguous();
  auto e = seg.select(1, 1).contiguous();
  auto sc = scores.index_select(0, ord).contiguous();
  auto off = offsets.contiguous();
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
    auto slot = at::nonzero(flag).squeeze(1);  // the one device-to-host copy: the row count
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
