"""The HTTP server under abuse and load: fuzzed JSON with zero 5xx, a full queue, slow
models, stalled and oversized bodies, too many connections, and a scaled-down soak.

Everything runs on 127.0.0.1 with real uvicorn (in a thread here, in a subprocess for
the soak); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxforge.serve import ServeOptions

from tests.server_helpers import SlowRuntime, live_server

from .conftest import ROOT, cli_env

LIMITS = dict(max_texts_per_request=8, max_chars_per_text=2000)


@pytest.fixture(scope="module")
def server(hard_runtime):
    with live_server(hard_runtime, ServeOptions(port=0, **LIMITS)) as (url, _server, app):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, app


# -- fuzzing -------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                               max_size=4), max_leaves=12)
# Mostly request-shaped, so the fuzzer gets past the first checks and into the model.
texts = st.lists(st.text(max_size=300) | json_values, min_size=0, max_size=10)
requests = st.fixed_dictionaries(
    {"texts": texts | json_values},
    optional={"normalize": st.booleans() | json_values, "return_tokens": st.booleans() | json_values,
              "extra": json_values},
) | json_values


def _check_response(r: httpx.Response, sent) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500], sent)
    body = r.json()  # every answer, error or not, is JSON
    if r.status_code == 200:
        assert isinstance(sent, dict) and len(body["embeddings"]) == len(sent["texts"])
        assert body["dimension"] == 64 and all(len(v) == 64 for v in body["embeddings"])
    else:
        assert body["error"]["status"] == r.status_code and body["error"]["message"], body


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=requests, path=st.sampled_from(["/embed", "/predict"]))
def test_fuzzed_json_payloads_never_get_a_5xx(server, payload, path):
    client, _ = server
    r = client.post(path, content=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    _check_response(r, payload)


@settings(max_examples=80, deadline=None)
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: ('{"texts": ["' + t + '"]}').encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_never_get_a_5xx(server, raw):
    client, _ = server
    r = client.post("/embed", content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300], raw[:200])
    body = r.json()
    assert r.status_code == 200 or body["error"]["status"] == r.status_code


def test_server_is_still_healthy_after_the_fuzzing(server):
    client, app = server
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/embed", json={"texts": ["still here"]}).status_code == 200


# -- overload --------------------------------------------------------------------------
async def _burst(url: str, n: int, texts_for=lambda i: [f"text number {i}"]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post("/embed", json={"texts": texts_for(i)}) for i in range(n)))


def test_full_queue_answers_503_with_retry_after_then_recovers(hard_runtime):
    slow = SlowRuntime(hard_runtime, 0.3)
    options = ServeOptions(port=0, max_batch=1, max_texts_per_request=1, max_queue_texts=2, retry_after_s=2)
    with live_server(slow, options) as (url, _server, app):
        responses = asyncio.run(_burst(url, 12))
        codes = [r.status_code for r in responses]
        assert set(codes) == {200, 503}, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "2" and r.json()["error"]["type"] == "queue_full"
        assert app.state.batcher.pending_texts == 0
        slow.delay = 0
        assert httpx.post(f"{url}/embed", json={"texts": ["after the burst"]}, timeout=30).status_code == 200


def test_a_request_that_waits_too_long_gets_503_and_the_server_goes_on(hard_runtime):
    slow = SlowRuntime(hard_runtime, 1.5)
    options = ServeOptions(port=0, request_timeout_s=0.3, retry_after_s=4)
    with live_server(slow, options) as (url, _server, app):
        started = time.monotonic()
        r = httpx.post(f"{url}/embed", json={"texts": ["the model is stuck"]}, timeout=30)
        assert time.monotonic() - started < 1.4, "the timeout did not cut the wait short"
        assert r.status_code == 503 and r.headers["retry-after"] == "4"
        assert r.json()["error"]["type"] == "timeout"
        slow.delay = 0
        deadline = time.monotonic() + 10  # the stuck call finishes, then the server answers again
        while httpx.post(f"{url}/embed", json={"texts": ["back"]}, timeout=30).status_code != 200:
            assert time.monotonic() < deadline
        health = httpx.get(f"{url}/health").json()
        # The retries above also waited behind the stuck call: each was cut short the same way.
        assert health["timeouts"] >= 1 and health["queue_texts"] == 0


def test_too_many_connections_get_503_not_a_hang(hard_runtime):
    """Past --max-connections uvicorn answers 503 at once (it counts open connections, so
    a burst wider than the cap is refused as a whole); under the cap all are served."""
    slow = SlowRuntime(hard_runtime, 0.3)
    with live_server(slow, ServeOptions(port=0, max_connections=4, log_level="error")) as (url, _server, _app):
        started = time.monotonic()
        codes = [r.status_code for r in asyncio.run(_burst(url, 10))]
        assert 503 in codes and set(codes) <= {200, 503}, codes
        assert time.monotonic() - started < 10
        codes = [r.status_code for r in asyncio.run(_burst(url, 3))]
        assert codes == [200] * 3, codes


# -- bodies ------------------------------------------------------------------------------
def _raw_request(url: str, head: bytes, body_parts: list[bytes], pause: float, read_timeout: float) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
            time.sleep(pause)
        answer = b""
        try:
            while data := s.recv(65536):
                answer += data
                head, sep, body = answer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), None)
                if sep and length is not None and len(body) >= length:
                    break  # one whole response: do not wait for the server to close
        except socket.timeout:
            pass
        return answer


def test_a_stalled_upload_gets_408_and_frees_the_connection(hard_runtime):
    with live_server(hard_runtime, ServeOptions(port=0, body_timeout_s=0.5)) as (url, _server, _app):
        head = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        started = time.monotonic()
        answer = _raw_request(url, head, [b'{"texts": ["'], pause=0, read_timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"body_timeout"' in answer
        assert time.monotonic() - started < 5
        assert httpx.post(f"{url}/embed", json={"texts": ["next client"]}, timeout=30).status_code == 200


def test_oversized_bodies_are_refused_before_they_are_read(server):
    client, app = server
    limit = ServeOptions(port=0, **LIMITS).max_body_bytes
    # A declared length over the limit: 413 at once, without sending the body.
    head = (f"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n").encode()
    answer = _raw_request(str(client.base_url).rstrip("/"), head, [], pause=0, read_timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # A chunked body (no length) that grows past the limit.
    def chunks():
        yield b'{"texts": ["'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"]}'

    r = client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "body_too_large"
    assert client.post("/embed", json={"texts": ["fine"]}).status_code == 200


# -- a scaled-down soak --------------------------------------------------------------------
def test_soak_500_requests_at_concurrency_16(hard_artifact, tmp_path):
    """benchmarks/soak_server.py as CI runs it: a real `onnxforge serve` process, every
    response checked, zero errors, memory steady after warm-up, a clean shutdown."""
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak_server.py"), "--artifact", str(hard_artifact),
         "--requests", "500", "--concurrency", "16", "--sample-every", "0.2", "--max-seconds", "120",
         "--json", str(out)],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["served"] == report["sent"] == 500 and report["errors"] == 0
    assert report["statuses"] == {"200": 500}
    assert report["rss_mb"]["steady"] and report["server"]["exit_code"] == 0 and not report["server"]["traceback"]
    assert report["server"]["batched_texts"] == 500 and report["server"]["batches"] < 500  # micro-batching happened
