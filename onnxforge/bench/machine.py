"""Machine facts for a benchmark report: CPU model and flags, cores, memory, load, GPU."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

# The instruction-set flags that decide which kernels run (fp32 AVX-512, bf16/int8 AMX).
_INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "sve", "sve2", "bf16", "i8mm",
)


def cpu_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("flags", "Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """True where PyTorch's bf16 autocast on CPU has hardware support (AMX or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[dict[str, Any]]:
    """GPUs as nvidia-smi sees them (name, driver, memory); empty without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": _num(parts[2]),
                         "max_sm_clock_mhz": _num(parts[3]) if len(parts) > 3 else None})
    return gpus


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def machine_info() -> dict[str, Any]:
    """Everything a reader needs to judge a number: hardware, load, library versions."""
    from ..env import versions

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_flags": sorted(f for f in _INTERESTING_FLAGS if f in flags),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": None,
        "memory_gib": None,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpus": _gpus(),
        "versions": versions(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # psutil is optional (the bench extra)
        pass
    try:
        import onnxruntime as ort

        info["ort_providers"] = ort.get_available_providers()
    except ImportError:
        info["ort_providers"] = []
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["torch_gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1)}
    except ImportError:
        pass
    return info


def machine_slug(info: dict[str, Any]) -> str:
    """A file-name-safe label: the GPU's name where there is one, else CPU model + cores."""
    import re

    if info.get("gpus"):
        label = info["gpus"][0]["name"]
    else:
        label = f"{info.get('cpu') or platform.machine()}-{info.get('usable_cores')}c"
    label = re.sub(r"\((r|tm|c)\)", "", label, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "machine"
