"""``GET /metrics``: Prometheus text format from prometheus-client, one registry per app.

A registry of its own (not the process-wide default) so two apps in one process (tests,
or a user embedding the server) never share or double-register counters.

What is exported (names prefixed ``onnxforge_``):
- ``requests_total{endpoint, status}``: every answered request, by route template
  (unknown paths are counted as ``other``, so a scanner cannot grow the label set);
- ``request_duration_seconds{endpoint}``: latency histogram, body read to last byte;
- ``batch_texts`` and ``batch_tokens``: histograms per model call (tokens include padding);
- ``queue_texts``: texts waiting for the model now (the autoscaling signal);
- ``model_info{model, variant, engine, precision, device}``: what is served.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "onnxforge"
METRICS_PATH = "/metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServeMetrics:
    """The server's metrics; ``observe_batch`` is thread-safe (called from the inference thread)."""

    def __init__(self, info: dict[str, str], queue_texts: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests answered, by endpoint and status code.",
                                ("endpoint", "status"), registry=r)
        self.latency = Histogram(f"{PREFIX}_request_duration_seconds", "Time from request to response, by endpoint.",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=r)
        self.batch_texts = Histogram(f"{PREFIX}_batch_texts", "Texts per model call.", buckets=TEXT_BUCKETS, registry=r)
        self.batch_tokens = Histogram(f"{PREFIX}_batch_tokens", "Tokens per model call, padding included.",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.queue = Gauge(f"{PREFIX}_queue_texts", "Texts waiting for the model.", registry=r)
        self.queue.set_function(queue_texts)
        self.info = Info(f"{PREFIX}_model", "The model being served.", registry=r)
        self.info.info({k: str(v) for k, v in info.items()})

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, texts: int, padded_tokens: int) -> None:
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(padded_tokens)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def model_info(runtime: Any, served_name: str) -> dict[str, str]:
    """The info labels from a runtime's ``describe()``."""
    d = runtime.describe()
    return {"model": served_name, "variant": str(d.get("variant")), "engine": str(d.get("engine", "ort")),
            "precision": str(d.get("precision")), "device": str(d.get("device"))}


def route_template(scope: dict[str, Any], known_paths: frozenset[str] = frozenset()) -> str:
    """The matched route's path (``/embed``), the path when it is one of the app's routes
    (answered before routing, e.g. a 401), or ``other``: bounded label values."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return scope.get("path") if scope.get("path") in known_paths else "other"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP answer, including 4xx/5xx written by handlers.

    Pure ASGI (not BaseHTTPMiddleware) so it adds no task or body copy per request.
    """

    def __init__(self, app, metrics: ServeMetrics, known_paths: frozenset[str] = frozenset()):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(route_template(scope, self.known_paths), status, time.perf_counter() - start)
