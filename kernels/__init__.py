"""Triton kernels behind case_fast.ops (fused Sinkhorn, top-k MIL pooling); see each module."""
