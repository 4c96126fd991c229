#!/usr/bin/env bash
# Compile-only check of the CUDA NMS kernels (no torch needed): nvcc -c -arch=sm_90.
set -u
cd "$(dirname "$0")/.."
NVCC="$(command -v nvcc || true)"
if [ -z "$NVCC" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
fi
if [ -z "$NVCC" ]; then
  echo "nvcc not found: skipping the CUDA compile check"
  exit 0
fi
OUT="$(mktemp -d /tmp/case_fast_nvcc.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
echo "$NVCC -c -arch=sm_90 csrc/cuda/nms_cuda.cu"
"$NVCC" -c -arch=sm_90 -O3 --fmad=false -std=c++17 -Icsrc -Xcompiler -Wall \
  -o "$OUT/nms_cuda.o" csrc/cuda/nms_cuda.cu || { echo "CUDA compile FAILED"; exit 1; }
echo "CUDA compile OK"
