"""The HTTP server under real uvicorn on a loopback port: outputs vs PyTorch, concurrency, bad input, limits, shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from onnxforge.serve import ServeOptions

from tests.server_helpers import SlowRuntime, live_server

from tests.runtime_helpers import TINY_MAX_LENGTH, assert_close_rows
from tests.server_helpers import wait_until_ready

TEXTS = [
    "Debian is a free operating system.",
    "Grüße aus Köln — naïve café, 東京, emoji 🚀",
    "",
    "word " * 700,  # longer than the model's 512 positions: truncated
    "short",
]


@pytest.fixture(scope="module")
def minilm_server(minilm_runtime):
    with live_server(minilm_runtime, ServeOptions(port=0, max_texts_per_request=8, max_chars_per_text=5000)) as (url, server, app):
        yield url, app


def test_health_and_ready(minilm_server):
    url, _ = minilm_server
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"]["kind"] == "embedding"
    assert health["model"]["providers"] == ["CPUExecutionProvider"]
    assert httpx.get(f"{url}/ready").json() == {"ready": True}


def test_embeddings_match_pytorch(minilm_server, minilm_reference):
    url, _ = minilm_server
    r = httpx.post(f"{url}/embed", json={"texts": TEXTS}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dimension"] == 384 and body["normalized"] is True
    assert body["truncated"] == [False, False, False, True, False]
    assert body["tokens"][3] == 256  # MiniLM's own max_seq_length
    assert_close_rows(np.array(body["embeddings"]), minilm_reference.embeddings(TEXTS))
    # /predict of a feature-extraction model gives the same embeddings.
    same = httpx.post(f"{url}/predict", json={"texts": TEXTS[:2]}, timeout=60).json()
    np.testing.assert_allclose(same["embeddings"], body["embeddings"][:2], atol=1e-6)


def test_token_outputs_and_unnormalized(minilm_server, minilm_reference):
    url, _ = minilm_server
    texts = ["hello world", "a longer sentence with more tokens in it"]
    body = httpx.post(f"{url}/embed", json={"texts": texts, "normalize": False, "return_tokens": True}, timeout=60).json()
    expected, mask = minilm_reference.outputs(texts)
    for i, tokens in enumerate(body["token_embeddings"]):
        n = int(mask[i].sum())
        assert body["tokens"][i] == n and np.array(tokens).shape == (n, 384)
        np.testing.assert_allclose(tokens, expected["last_hidden_state"][i, :n], atol=1e-4)
    # normalize=false gives the model's own sentence embedding: MiniLM's pipeline is mean pooling, then Normalize.
    pooled = (expected["last_hidden_state"] * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(body["embeddings"], pooled, atol=1e-4)


def test_100_concurrent_requests(minilm_server, minilm_runtime):
    """Every response carries its own text's embedding, and the requests were batched."""
    from onnxforge.data import sample_texts

    url, app = minilm_server
    texts = sample_texts(100, offset=500)
    expected = minilm_runtime.embed(texts)
    before = app.state.batcher.batches

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=100)) as client:
            return await asyncio.gather(*(client.post("/embed", json={"texts": [t]}) for t in texts))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 100
    got = np.array([r.json()["embeddings"][0] for r in responses])
    assert_close_rows(got, expected, atol=1e-5)
    batches = app.state.batcher.batches - before
    assert 1 <= batches < 100, f"{batches} ORT batches for 100 concurrent requests: no micro-batching happened"


MALFORMED = {
    "empty body": (b"", 400),
    "not json": (b"{texts: [oops", 400),
    "invalid utf-8": (b'{"texts": ["\xff\xfe"]}', 400),
    "lone surrogate escape": (b'{"texts": ["\\ud800"]}', 400),
    "NaN literal": (b'{"texts": [NaN]}', 400),
    "deeply nested": (b'{"texts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 422),
    "json array": (b'["a", "b"]', 422),
    "json string": (b'"just text"', 422),
    "missing texts": (b'{"normalize": true}', 422),
    "unknown field": (b'{"texts": ["a"], "text": "b"}', 422),
    "texts is a string": (b'{"texts": "a"}', 422),
    "texts is null": (b'{"texts": null}', 422),
    "texts empty": (b'{"texts": []}', 422),
    "number in texts": (b'{"texts": ["a", 3]}', 422),
    "null in texts": (b'{"texts": [null]}', 422),
    "nested list in texts": (b'{"texts": [["a"]]}', 422),
    "normalize not bool": (b'{"texts": ["a"], "normalize": "yes"}', 422),
    "too many texts": (b'{"texts": [' + b",".join([b'"a"'] * 9) + b"]}", 413),
    "text too long": (b'{"texts": ["' + b"x" * 5001 + b'"]}', 413),
    "body too large": (b'{"texts": ["' + b"x" * 200_000 + b'"]}', 413),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_payloads_get_4xx_json(minilm_server, name):
    url, _ = minilm_server
    body, status = MALFORMED[name]
    r = httpx.post(f"{url}/embed", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["status"] == status and error["message"] and error["type"]


def test_wrong_method_path_and_content_type(minilm_server):
    url, _ = minilm_server
    assert httpx.get(f"{url}/embed").status_code == 405
    r = httpx.get(f"{url}/nowhere")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = httpx.post(f"{url}/embed", data={"texts": "a"})  # a form, not JSON
    assert r.status_code == 400 and "error" in r.json()
    # Still serving after all the bad input.
    assert httpx.post(f"{url}/embed", json={"texts": ["still fine"]}).status_code == 200


def test_classifier_predict(tiny_cls_runtime, cls_reference):
    texts = ["great stuff", "terrible", "it is fine I guess"]
    with live_server(tiny_cls_runtime) as (url, _, _):
        r = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        expected, _ = cls_reference.outputs(texts)
        np.testing.assert_allclose(body["logits"], expected["logits"], atol=1e-4)
        assert body["label_names"] == ["neg", "neu", "pos"]
        assert [p["label"] for p in body["predictions"]] == [["neg", "neu", "pos"][i] for i in expected["logits"].argmax(1)]
        np.testing.assert_allclose(np.array(body["probabilities"]).sum(1), 1.0, atol=1e-5)
        r = httpx.post(f"{url}/embed", json={"texts": texts})
        assert r.status_code == 404 and "use POST /predict" in r.json()["error"]["message"]


def test_full_queue_answers_503_with_retry_after(tiny_runtime):
    slow = SlowRuntime(tiny_runtime, delay=0.4)
    options = ServeOptions(port=0, max_batch=1, max_texts_per_request=1, max_queue_texts=2, retry_after_s=3)
    with live_server(slow, options) as (url, _, _):
        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(client.post("/embed", json={"texts": [f"text {i}"]}) for i in range(8)))

        responses = asyncio.run(main())
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, codes
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "3" and r.json()["error"]["type"] == "queue_full" for r in refused)


def test_graceful_shutdown_finishes_requests_in_flight(tiny_runtime):
    slow = SlowRuntime(tiny_runtime, delay=0.5)
    results: list[int] = []

    def client(url: str, i: int) -> None:
        results.append(httpx.post(f"{url}/embed", json={"texts": [f"in flight {i}"]}, timeout=30).status_code)

    with live_server(slow, ServeOptions(port=0, max_batch=2)) as (url, server, app):
        threads = [threading.Thread(target=client, args=(url, i)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        # All four requests are in the server and the first batch is running.
        while (app.state.batcher.requests < 4 or slow.calls == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.batcher.requests == 4 and slow.calls >= 1
        server.should_exit = True  # what SIGTERM does
        for t in threads:
            t.join(timeout=30)
    assert results == [200] * 4
    assert not app.state.batcher.accepting


def test_serve_command_in_a_subprocess(tiny_artifact):
    """`onnxforge serve --port 0` announces its port, answers, and exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxforge.cli", "serve", str(tiny_artifact), "--port", "0", "--max-length", str(TINY_MAX_LENGTH)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read()
        url = f"http://127.0.0.1:{match.group(1)}"
        wait_until_ready(url)
        assert httpx.post(f"{url}/embed", json={"texts": ["hi"]}).json()["dimension"] == 64
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "server stopped" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_bad_port_exit_2(tiny_artifact, cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, stderr = cli("serve", tiny_artifact, "--port", port, "--max-length", TINY_MAX_LENGTH)
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in stderr
    code, _, stderr = cli("serve", tiny_artifact, "--port", "70000")
    assert code == 2 and "out of range" in stderr


class _BrokenRuntime(SlowRuntime):
    def run(self, feeds, outputs=None):
        raise RuntimeError("the GPU fell off the bus")


def test_runtime_failure_is_a_json_500_and_the_server_survives(tiny_runtime):
    with live_server(_BrokenRuntime(tiny_runtime, 0.0)) as (url, _, _):
        r = httpx.post(f"{url}/embed", json={"texts": ["x"]}, timeout=30)
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "internal_error" and "fell off the bus" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200
