// Detection AP (SPEC §6), CPU: the greedy matching and the interpolated AP of
// case_fast.evaluation (bitwise the reference backend's APs), and the ambiguous-segment filter.
#pragma once

#include <ATen/core/Tensor.h>

namespace case_fast {

// seg (n, 2) float64 and video (n,) int64 (index into the split's videos, < n_vid) of the
// predictions; order (n,) int64: class c's predictions in processing order at positions
// [class_offsets[c], class_offsets[c+1]) (classes without ground truth are not read);
// gt_seg (n_gt, 2) float64 sorted by group c * n_vid + v, GroundTruth order inside a group, with
// gt_offsets (n_cls * n_vid + 1,) int64; thresholds (n_thr <= 64,) float64 in (0, 1].
// Returns ap (n_thr, n_cls) float64.
at::Tensor ap_greedy_cpu(const at::Tensor& seg, const at::Tensor& video, const at::Tensor& order,
                         const at::Tensor& class_offsets, const at::Tensor& gt_seg,
                         const at::Tensor& gt_offsets, const at::Tensor& thresholds);

// keep (n,) bool: false where the prediction overlaps (intersection > 0) one of its video's
// ambiguous segments amb_seg[amb_offsets[v] : amb_offsets[v+1]].
at::Tensor ambiguous_keep_cpu(const at::Tensor& seg, const at::Tensor& video,
                              const at::Tensor& amb_seg, const at::Tensor& amb_offsets);

}  // namespace case_fast
