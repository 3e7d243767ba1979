"""The machine's dense matmul peak, measured in the same run as the model timings.

An efficiency figure (model FLOP/s over GEMM FLOP/s) is only honest against a peak
taken on the same machine, under the same load, at the same time: a shared or
throttled CPU lowers both. CPU: fp32 GEMM of large square matrices through both
PyTorch (oneDNN/MKL) and numpy (its BLAS), the better of the two; where the CPU has
AMX or AVX512-BF16 a bf16 GEMM is measured too, and an int8 GEMM (``torch._int_mm``): the
ceilings that bf16 and int8 variants are measured against. GPU: fp16 GEMM on the
tensor cores (PyTorch, timed with CUDA events).
"""

from __future__ import annotations

import time
from typing import Any


def _time_calls(fn, seconds: float, min_calls: int = 3, sync=None) -> list[float]:
    fn()  # warm-up: allocations, kernel selection, thread-pool start
    if sync:
        sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return times


def _cpu_gemm(dtype_name: str, n: int, seconds: float) -> dict[str, Any]:
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(0)
    if dtype_name == "int8":
        # s8 x s8 -> s32 through oneDNN (VNNI / AMX-INT8 where the CPU has them): the
        # ceiling for int8 variants, whose MatMuls run the same kind of kernel.
        a = torch.randint(-127, 128, (n, n), generator=gen, dtype=torch.int8)
        b = torch.randint(-127, 128, (n, n), generator=gen, dtype=torch.int8)
        times = _time_calls(lambda: torch._int_mm(a, b), seconds)
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        times = _time_calls(lambda: torch.matmul(a, b, out=out), seconds)
    flops = 2.0 * n**3
    result = {"device": "cpu", "dtype": dtype_name, "n": n, "calls": len(times),
              "gflops": flops / min(times) / 1e9, "median_gflops": flops / float(np.median(times)) / 1e9,
              "library": f"torch {torch.__version__}"}
    if dtype_name == "fp32":
        an, bn = a.numpy(), b.numpy()
        on = np.empty((n, n), dtype=np.float32)
        ntimes = _time_calls(lambda: np.matmul(an, bn, out=on), seconds)
        np_best = flops / min(ntimes) / 1e9
        result["numpy_gflops"] = np_best
        result["torch_gflops"] = result["gflops"]
        if np_best > result["gflops"]:
            result.update(gflops=np_best, median_gflops=flops / float(np.median(ntimes)) / 1e9, library=f"numpy {np.__version__}")
    return result


def _cuda_gemm(n: int, seconds: float) -> dict[str, Any]:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    out = torch.empty(n, n, device="cuda", dtype=torch.float16)
    torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 200):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        torch.matmul(a, b, out=out)
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    times.sort()
    flops = 2.0 * n**3
    return {"device": "cuda", "dtype": "fp16", "n": n, "calls": len(times), "gflops": flops / times[0] / 1e9,
            "median_gflops": flops / times[len(times) // 2] / 1e9, "library": f"torch {torch.__version__} (cuBLAS)",
            "gpu": torch.cuda.get_device_name(0)}


def measure_gemm_peak(device: str = "cpu", dtype: str | None = None, *, n: int | None = None, seconds: float = 1.0) -> dict[str, Any]:
    """Best dense-GEMM rate seen in ``seconds`` of square ``n`` x ``n`` matmuls.

    The best call, not the median, is the peak: on a shared machine the best call is
    the one least disturbed by other work. The median is reported beside it.
    """
    if device == "cuda":
        return _cuda_gemm(n or 8192, seconds)
    return _cpu_gemm(dtype or "fp32", n or 2048, seconds)
