// One registration of the case_fast ops (torch.ops.case_fast.*), torchvision style. The CUDA
// kernels are registered in csrc/cuda/nms_cuda_binding.cpp (built only with a CUDA torch).
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
  m.def(
      "temporal_nms(Tensor segments, Tensor scores, Tensor order, Tensor offsets, str method, "
      "float iou_threshold, float alpha, float min_score, bool plus_one) -> (Tensor, Tensor)");
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
      "Tensor thresholds, Tensor? tie_pos=None, Tensor? tie_offsets=None, Tensor? tie_gt=None) "
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
