// OIC proposal generation (method.md §5), CPU: bitwise case_fast.ops.proposals.generate_proposals_reference.
#pragma once

#include <ATen/core/Tensor.h>
#include <tuple>

namespace case_fast {

// cas (T, p) float32/float64, T >= 2, C-contiguous; class_ids (p,) int64 (negative ids index
// from the end, like numpy); video_scores (n_classes,) float64; thresholds (n_thr,) float64.
// Returns (proposals (m, 4) float64 rows [class, score, start_s, end_s] in the reference's order,
// counts (n_thr,) int64 rows per threshold).
std::tuple<at::Tensor, at::Tensor> oic_proposals_cpu(
    const at::Tensor& cas, const at::Tensor& class_ids, const at::Tensor& video_scores,
    const at::Tensor& thresholds, int64_t scale, double t_factor, double oic_lambda,
    double oic_gamma, bool drop_zero_run);

}  // namespace case_fast
