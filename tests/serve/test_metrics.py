"""The metrics registry: parsed back with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from onnxforge.serve.metrics import MetricsMiddleware, ServeMetrics


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counts_latency_batches_queue_and_info():
    queue = [7]
    metrics = ServeMetrics({"model": "m", "variant": "optimized", "engine": "ort", "precision": "fp32", "device": "cpu"},
                           lambda: queue[0])

    async def ok(request):
        return JSONResponse({"ok": True})

    async def bad(request):
        return JSONResponse({"error": 1}, status_code=422)

    async def scrape(request):
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    app = MetricsMiddleware(Starlette(routes=[Route("/embed", ok, methods=["POST"]), Route("/bad", bad),
                                              Route("/metrics", scrape)]), metrics, frozenset({"/embed"}))
    with TestClient(app) as client:
        for _ in range(3):
            client.post("/embed")
        client.get("/bad")
        client.get("/x/1")
        client.get("/x/2")
        metrics.observe_batch(3, 30)
        queue[0] = 2
        s = samples(client.get("/metrics").text)
    assert s[("onnxforge_requests_total", (("endpoint", "/embed"), ("status", "200")))] == 3
    assert s[("onnxforge_requests_total", (("endpoint", "/bad"), ("status", "422")))] == 1
    assert s[("onnxforge_requests_total", (("endpoint", "other"), ("status", "404")))] == 2  # bounded labels
    assert s[("onnxforge_request_duration_seconds_count", (("endpoint", "/embed"),))] == 3
    assert s[("onnxforge_batch_texts_sum", ())] == 3 and s[("onnxforge_batch_tokens_sum", ())] == 30
    assert s[("onnxforge_queue_texts", ())] == 2
    info = [k for k in s if k[0] == "onnxforge_model_info"][0]
    assert dict(info[1]) == {"model": "m", "variant": "optimized", "engine": "ort", "precision": "fp32", "device": "cpu"}


def test_two_apps_in_one_process_do_not_share_counters():
    a = ServeMetrics({"model": "a"}, lambda: 0)
    b = ServeMetrics({"model": "b"}, lambda: 0)
    a.observe_request("/embed", 200, 0.01)
    sa, sb = samples(a.render()[0].decode()), samples(b.render()[0].decode())
    assert sa[("onnxforge_requests_total", (("endpoint", "/embed"), ("status", "200")))] == 1
    assert not any(k[0] == "onnxforge_requests_total" for k in sb)
