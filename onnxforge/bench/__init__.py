"""Bench stage: latency, throughput and efficiency of every variant and provider.

API: ``run_bench(artifact_dir, BenchOptions(...)) -> BenchReport`` (``to_dict()``,
``markdown()``). PyTorch eager fp32, rebuilt from the manifest's source, is the
reference row. Names are loaded lazily so that importing ``onnxforge.bench.cli``
(for --help) stays light.
"""

from ..lazy import lazy_getattr

__all__ = [
    "BenchOptions",
    "BenchReport",
    "BenchRow",
    "bert_flops",
    "machine_info",
    "measure_gemm_peak",
    "run_bench",
    "write_plot",
]

_HOMES = {
    "BenchOptions": "options",
    "BenchReport": "report",
    "BenchRow": "report",
    "bert_flops": "flops",
    "machine_info": "machine",
    "measure_gemm_peak": "peak",
    "run_bench": "runner",
    "write_plot": "plot",
}


__getattr__ = lazy_getattr(__name__, _HOMES)
