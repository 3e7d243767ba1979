"""batch stage: ``onnxforge batch``, a CSV column through the model, streamed, in input order.

API: ``batch_file(dir, input, out, BatchOptions()) -> BatchReport`` (this process);
``ray_batch(dir, input, out, BatchOptions(), RayOptions()) -> RayBatchReport`` (a Ray
cluster, ``pip install 'onnxforge[ray]'``). Both report ``counts()``: rows read =
written + reported.
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

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


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(name)
