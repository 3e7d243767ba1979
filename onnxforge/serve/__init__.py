"""serve stage: ``onnxforge serve``, an HTTP JSON API over a ``Runtime`` with micro-batching.

API: ``create_app(runtime, ServeOptions())``, ``serve(runtime, ServeOptions())``,
``bind_socket(host, port)`` and ``make_server(app, options)`` (uvicorn on that socket).
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

from ..lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _MODULES)
