"""Build script: the pure-Python package plus the optional compiled extension case_fast._C.

Install with ``pip install --no-build-isolation -e .`` so the build uses the torch already
installed (build isolation would download a CUDA torch). The extension (the ops
torch.ops.case_fast.temporal_nms, oic_proposals, ap_group, ap_classes, ambiguous_keep) is built
from csrc/: the CPU kernels always, the CUDA kernel of temporal_nms when torch has CUDA and nvcc
is found (CUDA_HOME). Without torch, or when the compiler fails, the package installs without it
and every op's backend='auto' runs its reference (case_fast.ops._extension warns once).
Metadata lives in pyproject.toml.
"""
import glob
import os
import warnings

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _extension():
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception as exc:  # no torch at build time: pure-Python install
        warnings.warn(f"case_fast._C not built (torch unavailable: {exc})")
        return [], {}

    csrc = os.path.join("csrc")
    sources = [os.path.join(csrc, "register.cpp")] + sorted(glob.glob(os.path.join(csrc, "cpu", "*.cpp")))
    cxx = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
    define_macros = []
    ext_cls = cpp_extension.CppExtension
    extra = {"cxx": cxx}
    with_cuda = (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
                 and os.environ.get("CASE_FAST_NO_CUDA", "0") != "1")
    if with_cuda:
        ext_cls = cpp_extension.CUDAExtension
        sources += sorted(glob.glob(os.path.join(csrc, "cuda", "*.cpp")))
        sources += sorted(glob.glob(os.path.join(csrc, "cuda", "*.cu")))
        define_macros.append(("CASE_FAST_WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "--fmad=false"]
    ext = ext_cls("case_fast._C", sources, include_dirs=[os.path.join(ROOT, csrc)],
                  define_macros=define_macros, extra_compile_args=extra)

    class BuildExt(cpp_extension.BuildExtension):
        """Build the extension, but never fail the install over it."""

        def run(self):
            try:
                super().run()
            except Exception as exc:
                print(f"WARNING: case_fast._C not built ({exc}); using the Python reference")

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:
                print(f"WARNING: case_fast._C not built ({exc}); using the Python reference")

    return [ext], {"build_ext": BuildExt.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
