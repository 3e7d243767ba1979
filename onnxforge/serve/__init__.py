"""serve stage: ``onnxforge serve``, an HTTP JSON API over a ``Runtime`` with micro-batching.

API: ``create_app(runtime, ServeOptions())``, ``serve(runtime, ServeOptions())``,
``bind_socket(host, port)`` and ``make_server(app, options)`` (uvicorn on that socket).
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

_MODULES = {
    "ServeOptions": "options",
    "HTTPError": "protocol",
    "parse_request": "protocol",
    "MicroBatcher": "batcher",
    "create_app": "app",
    "serve": "app",
    "bind_socket": "app",
    "make_server": "app",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(name)
