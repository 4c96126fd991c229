// One registration of the case_fast ops (torch.ops.case_fast.*), torchvision style: the schemas
// here, the CPU kernels below, the CUDA kernel of temporal_nms in csrc/cuda/nms_cuda_binding.cpp
// (built only with a CUDA torch), the fake (meta) kernels in case_fast/ops/_extension.py.
#include <Python.h>
#include <torch/library.h>

#include "ap.h"
#include "nms.h"
#include "oic.h"

namespace case_fast {

bool has_cuda() {
#ifdef CASE_FAST_WITH_CUDA
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(case_fast, m) {
  // segments (n, 2) [start, end], scores (n,): floating point; groups (n,) integer ids (None: one
  // group). Returns (keep (k,) int64 input indices, new_scores (k,) float64): group by group (ids
  // ascending), each in the method's output order. plus_one None: the method's default (True for
  // one_pass_decay and hard). order (n,): the walk, input indices group by group (ids ascending);
  // None: each group by descending score (NaN first), equal scores in input order (a stable
  // sort). case_fast.ops.temporal_nms passes numpy's order (the released tie rule).
  m.def(
      "temporal_nms(Tensor segments, Tensor scores, Tensor? groups=None, "
      "str method='one_pass_decay', float iou_threshold=0.4, float alpha=0.35, "
      "float min_score=0.001, bool? plus_one=None, Tensor? order=None) -> (Tensor, Tensor)");
  m.def(
      "oic_proposals(Tensor cas, Tensor class_ids, Tensor video_scores, Tensor thresholds, "
      "int scale, float t_factor, float oic_lambda, float oic_gamma, bool drop_zero_run) "
      "-> (Tensor, Tensor)");
  m.def(
      "ap_group(Tensor label, Tensor score, Tensor seg, int n_cls) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "ap_classes(Tensor seg, Tensor video, Tensor video_lut, Tensor class_order, "
      "Tensor class_offsets, Tensor classes, Tensor rank, Tensor gt_seg, Tensor gt_offsets, "
      "Tensor thresholds, Tensor? tie_pos=None, Tensor? tie_offsets=None, Tensor? tie_gt=None, "
      "int variant=0) "
      "-> (Tensor, Tensor)");
  m.def("ambiguous_keep(Tensor seg, Tensor video, Tensor amb_seg, Tensor amb_offsets) -> Tensor");
  m.def("has_cuda() -> bool", &has_cuda);
}

TORCH_LIBRARY_IMPL(case_fast, CPU, m) {
  m.impl("temporal_nms", &temporal_nms_cpu);
  m.impl("oic_proposals", &oic_proposals_cpu);
  m.impl("ap_group", &ap_group_cpu);
  m.impl("ap_classes", &ap_classes_cpu);
  m.impl("ambiguous_keep", &ambiguous_keep_cpu);
}

}  // namespace case_fast

// `import case_fast._C` loads this library, which runs the registrations above.
static PyModuleDef case_fast_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&case_fast_c_module); }
