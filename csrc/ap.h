// Detection AP (method.md §6), CPU: the greedy matching and the interpolated AP of
// case_fast.evaluation.metric (bitwise the reference backend's APs), and the ambiguous-segment filter.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace case_fast {

// Groups predictions by class: label (n,) int64, score (n,) float64, seg (n, 2) float64.
// Returns (status, class_offsets, class_order, class_score): status () int64 is 0, or 1 when a
// label is outside [0, n_cls), or 2 when a score or segment is not finite (then the other
// outputs are not filled); class c's predictions, in input order, are
// class_order[class_offsets[c] : class_offsets[c + 1]] (n,) int64, their scores class_score (n,)
// (the array to rank with np.argsort).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ap_group_cpu(const at::Tensor& label,
                                                                        const at::Tensor& score,
                                                                        const at::Tensor& seg,
                                                                        int64_t n_cls);

// APs of some classes: seg (n, 2) float64 and video (n,) int64 codes of the predictions,
// video_lut (n_lut,) int64: prediction i's video is video_lut[video[i]] (< n_vid); class_order,
// class_offsets (n_cls + 1,) from ap_group; classes (k,) int64: the classes to compute; rank
// (n,) int64: for each of them, rank[a:b] (a, b its class offsets) = np.argsort of its scores
// (positions in the class, ascending; walked reversed), other entries are not read; gt_seg
// (n_gt, 2) float64 sorted by group c * n_vid + v, GroundTruth order inside a group, with
// gt_offsets (n_cls * n_vid + 1,) int64; thresholds (1 <= n_thr <= 64,) float64 in (0, 1].
// A prediction's candidates are visited by tIoU descending; among equal tIoUs in numpy's order
// (method.md §6: numpy.argsort(tiou)[::-1] over the video's GT of the class): tie_pos (t,) int64
// increasing class-major positions (a + position in the class) with tie_offsets (t + 1,) and
// tie_gt (GT indices in the class, numpy's order) give that order for those predictions; any
// other prediction whose candidates tie is listed in `tied`, and its class's APs are NaN (not
// computed: the caller calls again for that class with the tie orders).
// variant 1 (W-TALC, case_fast/evaluation/protocols.py): the candidates are visited in GT order (first fit, the
// tIoU only decides which thresholds each reaches; no ties to report) and the AP is the sum of the
// precisions at the TP ranks over n_gt, not interpolated.
// Returns (ap (k, n_thr) float64 (0 for a class without ground truth or without predictions),
// tied (class-major positions, int64)).
std::tuple<at::Tensor, at::Tensor> ap_classes_cpu(
    const at::Tensor& seg, const at::Tensor& video, const at::Tensor& video_lut,
    const at::Tensor& class_order, const at::Tensor& class_offsets, const at::Tensor& classes,
    const at::Tensor& rank, const at::Tensor& gt_seg, const at::Tensor& gt_offsets,
    const at::Tensor& thresholds, const std::optional<at::Tensor>& tie_pos,
    const std::optional<at::Tensor>& tie_offsets, const std::optional<at::Tensor>& tie_gt,
    int64_t variant);

// keep (n,) bool: false where the prediction overlaps (intersection > 0) one of its video's
// ambiguous segments amb_seg[amb_offsets[v] : amb_offsets[v+1]].
at::Tensor ambiguous_keep_cpu(const at::Tensor& seg, const at::Tensor& video,
                              const at::Tensor& amb_seg, const at::Tensor& amb_offsets);

}  // namespace case_fast
