// One registration of the case_fast ops (torch.ops.case_fast.*), torchvision style. The CUDA
// kernels are registered in csrc/cuda/nms_cuda_binding.cpp (built only with a CUDA torch).
#include <Python.h>
#include <torch/library.h>

#include "nms.h"

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
  m.def("has_cuda() -> bool", &has_cuda);
}

TORCH_LIBRARY_IMPL(case_fast, CPU, m) {
  m.impl("temporal_nms", &temporal_nms_cpu);
}

}  // namespace case_fast

// `import case_fast._C` loads this library, which runs the registrations above.
static PyModuleDef case_fast_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&case_fast_c_module); }
