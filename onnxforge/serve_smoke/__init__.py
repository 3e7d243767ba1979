"""serve_smoke stage: the runtime (artifact + tokenizer), smoke test, HTTP server, CSV batch.

API: ``Runtime.load(dir, variant=None, device="cpu")``, ``smoke_artifact(dir, SmokeOptions())``,
``create_app(runtime, ServeOptions())``, ``batch_file(dir, input, out, BatchOptions())``.
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

_MODULES = {
    "Runtime": "runtime",
    "Encoded": "runtime",
    "choose_variant": "runtime",
    "embedding_plan": "runtime",
    "mean_pool": "runtime",
    "SmokeOptions": "smoke",
    "SmokeReport": "smoke",
    "smoke_artifact": "smoke",
    "ServeOptions": "server",
    "create_app": "server",
    "serve": "server",
    "BatchOptions": "batch",
    "BatchReport": "batch",
    "batch_file": "batch",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(name)
