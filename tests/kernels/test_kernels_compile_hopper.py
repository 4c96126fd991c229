"""Every Triton kernel compiles for Hopper (sm_90) without a GPU: Triton IR -> PTX -> cubin.

The interpreter (TRITON_INTERPRET=1, set by conftest) replaces the JIT functions, so the compile
runs in a subprocess without it (this file is the child's script too). Shown with -s: registers,
spills and shared memory from ptxas -v for each configuration.
"""
import os
import pathlib
import subprocess
import sys


REPO = pathlib.Path(__file__).resolve().parents[2]

_SK_COMMON = {"L": "*fp32", "PR": "*fp32", "R": "*fp32", "FG": "*fp32", "BETA": "*fp32",
              "OUT": "*fp32", "WS": "*fp32", "M": "i32", "C": "i32", "stride_lm": "i32",
              "stride_lc": "i32", "stride_pm": "i32", "stride_pc": "i32", "scale": "fp32",
              "two_s2": "fp32", "n_iters": "i32", "nprog": "i32"}


def _configs():
    from case_fast.kernels import sinkhorn as sk
    from case_fast.kernels import topk_pool as tp
    single = {k: v for k, v in _SK_COMMON.items() if k not in ("WS", "nprog")}
    step = dict(_SK_COMMON, step="i32")
    cfgs = [
        # (name, fn, signature, constexprs, num_warps)
        ("sinkhorn single 16x2 beta", sk._sinkhorn_single_kernel, single,
         dict(PRIOR=0, HAS_BETA=True, BLOCK_M=16, BLOCK_C=2), 1),
        ("sinkhorn single 512x16 rank prior bf16", sk._sinkhorn_single_kernel,
         dict(single, L="*bf16"), dict(PRIOR=2, HAS_BETA=False, BLOCK_M=512, BLOCK_C=16), 16),
        ("sinkhorn step 12000x16 rank prior", sk._sinkhorn_step_kernel, step,
         dict(PRIOR=2, HAS_BETA=False, BLOCK_M=256, BLOCK_C=16, BLOCK_PC=256), 8),
        ("sinkhorn step 200000x256 rank prior", sk._sinkhorn_step_kernel, step,
         dict(PRIOR=2, HAS_BETA=True, BLOCK_M=16, BLOCK_C=256, BLOCK_PC=16), 8),
        ("sinkhorn step fp16 prior", sk._sinkhorn_step_kernel, dict(step, L="*fp16", PR="*fp16"),
         dict(PRIOR=1, HAS_BETA=False, BLOCK_M=256, BLOCK_C=16, BLOCK_PC=256), 8),
        ("topk pool fwd T=750 two streams", tp._topk_pool_fwd_kernel,
         {"S": "*fp32", "V1": "*fp32", "V2": "*fp32", "P1": "*fp32", "P2": "*fp32",
          "IDX": "*i64", "MASK": "*i1", "T": "i32", "G": "i32", "k": "i32"},
         dict(TWO=True, WRITE_SEL=True, KEY64=False, ACC64_1=False, ACC64_2=False,
              BLOCK_T=1024), 4),
        ("topk pool fwd fp64 one stream", tp._topk_pool_fwd_kernel,
         {"S": "*fp64", "V1": "*fp64", "V2": "*fp64", "P1": "*fp64", "P2": "*fp64",
          "IDX": "*i64", "MASK": "*i1", "T": "i32", "G": "i32", "k": "i32"},
         dict(TWO=False, WRITE_SEL=True, KEY64=True, ACC64_1=True, ACC64_2=True,
              BLOCK_T=256), 1),
        ("topk pool bwd two streams", tp._topk_pool_bwd_kernel,
         {"MASK": "*i1", "GO1": "*fp32", "GO2": "*bf16", "GV1": "*fp32", "GV2": "*bf16",
          "N": "i32", "TG": "i32", "G": "i32", "k": "i32", "s1b": "i32", "s1g": "i32",
          "s2b": "i32", "s2g": "i32"},
         dict(TWO=True, BLOCK=1024), 4),
    ]
    return cfgs


def _ptxas_info(ptx: str) -> str:
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        ptxas = get_ptxas(90).path
    except Exception:  # pragma: no cover - layout of the triton wheel
        return "(ptxas -v unavailable)"
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "k.ptx"
        p.write_text(ptx)
        r = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", str(p), "-o",
                            str(pathlib.Path(d) / "k.cubin")], capture_output=True, text=True)
    lines = [ln.split("info    : ")[-1] for ln in r.stderr.splitlines() if "Used" in ln
             or "spill" in ln]
    return " | ".join(lines)


def _child() -> int:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    target = GPUTarget("cuda", 90, 32)
    failed = 0
    for name, fn, sig, consts, warps in _configs():
        assert not hasattr(fn, "_interpreter_patched"), "interpreter is active"
        try:
            src = ASTSource(fn=fn, signature=sig, constexprs=consts)
            ck = triton.compile(src, target=target, options={"num_warps": warps})
            assert len(ck.asm["cubin"]) > 0
            print(f"OK   {name}: {_ptxas_info(ck.asm['ptx'])}")
        except Exception as e:  # report every failure, then fail
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    return failed


def test_compile_all_kernels_for_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr


if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)
    sys.exit(min(_child(), 1))
