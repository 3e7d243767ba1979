"""batch stage: ``onnxforge batch``, a CSV column through the model, streamed, in input order.

API: ``batch_file(dir, input, out, BatchOptions()) -> BatchReport`` (this process);
``ray_batch(dir, input, out, BatchOptions(), RayOptions()) -> RayBatchReport`` (a Ray
cluster, ``pip install 'onnxforge[ray]'``). Both report ``counts()``: rows read =
written + reported.
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

from ..lazy import lazy_getattr

_MODULES = {
    "BatchOptions": "options",
    "BatchReport": "report",
    "batch_file": "job",
    "RayOptions": "ray_job",
    "RayBatchReport": "ray_job",
    "ray_batch": "ray_job",
    "BadRowPolicy": "bad_rows",
}

__all__ = sorted(_MODULES)


__getattr__ = lazy_getattr(__name__, _MODULES)
