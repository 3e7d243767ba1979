"""The new surfaces against a live server on loopback: the official OpenAI client,
/metrics read by prometheus-client's parser, the OpenAPI schema, token-budget batching,
truncate=false, and API keys."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from onnxforge.serve.vectors import from_base64, shape_embeddings
from onnxforge.serve import ServeOptions

from tests.server_helpers import live_server

from .conftest import RecordingRuntime

TEXTS = ["Debian is a free operating system.", "Grüße aus Köln — naïve café, 東京 🚀", "", "short",
         "a somewhat longer sentence about package managers and their dependency solvers"]
NAME = "tiny-test-model"
KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tiny_runtime):
    with live_server(tiny_runtime, ServeOptions(port=0, model_name=NAME)) as (url, _server, app):
        yield url, app


def _embed(url, texts, **extra):
    r = httpx.post(f"{url}/embed", json={"texts": texts, **extra}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_official_openai_client_round_trip_equals_embed(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed-here", max_retries=0)
    reference = _embed(url, TEXTS)
    expected = np.array(reference["embeddings"], dtype=np.float32)

    listed = client.embeddings.create(model=NAME, input=TEXTS)  # the client asks for base64 by default
    assert [d.index for d in listed.data] == list(range(len(TEXTS))) and listed.model == NAME
    np.testing.assert_allclose(np.array([d.embedding for d in listed.data]), expected, atol=1e-6)
    assert listed.usage.prompt_tokens == listed.usage.total_tokens == sum(reference["tokens"])

    single = client.embeddings.create(model=NAME, input=TEXTS[0], encoding_format="float")
    assert len(single.data) == 1
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-6)
    assert single.usage.prompt_tokens == reference["tokens"][0]

    # Asked for explicitly, base64 comes back as the string (the client decodes only its own default).
    short = client.embeddings.create(model=NAME, input=TEXTS, dimensions=16, encoding_format="base64")
    got = np.array([from_base64(d.embedding) for d in short.data])
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, shape_embeddings(expected, dimensions=16), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # /embed gives the same truncated vectors
    np.testing.assert_allclose(_embed(url, TEXTS, dimensions=16)["embeddings"], got, atol=1e-6)
    assert [m.id for m in client.models.list()] == [NAME]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(model=NAME, input=TEXTS, dimensions=65)
    assert info.value.body["code"] == "invalid_dimensions" and "1-64" in info.value.body["message"]


def test_openai_errors_reach_the_client_as_openai_errors(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert info.value.body["code"] == "model_not_found" and NAME in info.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(model=NAME, input=[[101, 2023, 102]])
    assert info.value.body["param"] == "input" and info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model=NAME, input="word " * 400, extra_body={"truncate": False})
    assert info.value.status_code == 413 and info.value.body["code"] == "too_many_tokens"
    r = httpx.post(f"{url}/v1/embeddings", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_embed_dimensions_normalize_and_truncate(server):
    url, _ = server
    raw = np.array(_embed(url, TEXTS, normalize=False)["embeddings"])
    cut = _embed(url, TEXTS, normalize=False, dimensions=10)
    assert cut["dimension"] == 10 and cut["normalized"] is False
    np.testing.assert_allclose(cut["embeddings"], raw[:, :10], atol=1e-6)
    long_text = "word " * 400
    body = _embed(url, [long_text])
    assert body["truncated"] == [True] and body["tokens"] == [128]
    r = httpx.post(f"{url}/embed", json={"texts": ["fine", long_text], "truncate": False})
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_many_tokens"
    assert "texts[1] has 402 tokens; the model's limit is 128" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/embed", json={"texts": ["x"], "prompt_name": "query"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "unknown_prompt"


def test_every_post_declares_its_request_and_response_schema(server):
    url, _ = server
    spec = httpx.get(f"{url}/openapi.json").json()
    posts = {path: ops["post"] for path, ops in spec["paths"].items() if "post" in ops}
    assert set(posts) == {"/embed", "/predict", "/v1/embeddings"}
    for path, op in posts.items():
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["properties"] and schema["required"] and schema["examples"], path
        assert "schema" in op["responses"]["200"]["content"]["application/json"], path
        assert {"413", "422"} <= set(op["responses"]), path
    assert "input" in posts["/v1/embeddings"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    for path in ("/health", "/ready"):
        assert "schema" in spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"], path


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_the_requests_sent(tiny_runtime):
    with live_server(tiny_runtime, ServeOptions(port=0, model_name=NAME)) as (url, _, _app):
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(5):
                assert c.post("/embed", json={"texts": [f"text {i}", "two"]}).status_code == 200
            for i in range(3):
                assert c.post("/v1/embeddings", json={"model": NAME, "input": f"t {i}"}).status_code == 200
            assert c.post("/embed", json={"texts": 3}).status_code == 422
            assert c.get("/nowhere/1").status_code == 404
            s = _samples(c.get("/metrics").text)
    count = lambda endpoint, status: s.get(("onnxforge_requests_total", (("endpoint", endpoint), ("status", status))), 0)
    assert (count("/embed", "200"), count("/v1/embeddings", "200"), count("/embed", "422"), count("other", "404")) == (5, 3, 1, 1)
    assert s[("onnxforge_request_duration_seconds_count", (("endpoint", "/embed"),))] == 6
    assert s[("onnxforge_batch_texts_sum", ())] == 5 * 2 + 3  # every text that reached the model, once
    assert s[("onnxforge_batch_tokens_sum", ())] >= 13 and s[("onnxforge_queue_texts", ())] == 0
    info = dict(next(k for k in s if k[0] == "onnxforge_model_info")[1])
    assert info["model"] == NAME and info["variant"] == "base" and info["device"] == "cpu" and info["engine"]


def test_a_model_call_never_exceeds_the_token_budget(tiny_runtime):
    """Concurrent requests of mixed lengths, budget = the model's maximum (128 tokens)."""
    from onnxforge.data import sample_texts

    recorder = RecordingRuntime(tiny_runtime)
    texts = sample_texts(40, offset=100) + ["word " * n for n in (30, 60, 130, 200)]
    expected = tiny_runtime.embed(texts)
    options = ServeOptions(port=0, max_batch=32, max_batch_tokens=128, max_wait_ms=20)
    with live_server(recorder, options) as (url, _, _app):
        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(*(client.post("/embed", json={"texts": [t]}) for t in texts))

        responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * len(texts)
    np.testing.assert_allclose([r.json()["embeddings"][0] for r in responses], expected, atol=1e-5)
    assert recorder.calls and all(n * width <= 128 for n, width in recorder.calls), recorder.calls
    assert any(n > 1 for n, _ in recorder.calls), "no call held more than one text: nothing was batched"


def test_api_key_401_without_200_with(tiny_runtime):
    with live_server(tiny_runtime, ServeOptions(port=0, model_name=NAME, api_key=KEY)) as (url, _, app):
        assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/ready").status_code == 200
        for method, path, body in (("POST", "/embed", {"texts": ["a"]}), ("POST", "/v1/embeddings", {"model": NAME, "input": "a"}),
                                   ("GET", "/metrics", None), ("GET", "/openapi.json", None)):
            r = httpx.request(method, f"{url}{path}", json=body)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
            r = httpx.request(method, f"{url}{path}", json=body, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401, path
            r = httpx.request(method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 200, (path, r.text[:200])
        assert httpx.post(f"{url}/v1/embeddings", json={}).json()["error"]["code"] == "missing_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).embeddings.create(model=NAME, input="a")
        ok = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0).embeddings.create(model=NAME, input="a")
        assert len(ok.data[0].embedding) == 64
        assert KEY not in httpx.get(f"{url}/health").text and KEY not in repr(app.state.batcher.options)
        assert KEY not in repr(app.user_middleware) and KEY not in str(app.user_middleware)
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert KEY not in metrics and 'endpoint="/embed",status="401"' in metrics


def test_fuzzed_openai_requests_never_get_a_5xx(server):
    """Request-shaped JSON with wrong types, sizes and values: 2xx or a 4xx OpenAI error, never 5xx."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, _ = server
    scalars = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=30)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                                max_size=3), max_leaves=8)
    payloads = st.fixed_dictionaries(
        {"model": st.just(NAME) | values, "input": st.text(max_size=200) | st.lists(st.text(max_size=80), max_size=5) | values},
        optional={"encoding_format": st.sampled_from(["float", "base64"]) | values,
                  "dimensions": st.integers(-2, 100) | values, "user": values, "truncate": st.booleans() | values,
                  "extra": values}) | values

    with httpx.Client(base_url=url, timeout=30) as client:
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
        @given(payload=payloads)
        def check(payload):
            # json.dumps writes inf as Infinity, not JSON: the server must answer 400 for that too
            r = client.post("/v1/embeddings", content=json.dumps(payload).encode(),
                            headers={"content-type": "application/json"})
            assert r.status_code < 500, (r.status_code, r.text[:300], payload)
            body = r.json()
            if r.status_code == 200:
                assert len(body["data"]) == (1 if isinstance(payload["input"], str) else len(payload["input"]))
            else:
                assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"], body

        check()


def test_the_models_own_prompts(tiny_artifact, copy_artifact):
    """Prompts recorded in the manifest's pipeline (from config_sentence_transformers.json):
    prompt_name prepends one, the default prompt applies when none is named."""
    import json

    from onnxforge.runtime import Runtime

    from tests.runtime_helpers import TINY_MAX_LENGTH

    art = copy_artifact(tiny_artifact)
    manifest = json.loads((art / "onnxforge.json").read_text())
    manifest["pipeline"] = {"kind": "sentence-transformers", "prompts": {"query": "query: ", "passage": "passage: "},
                            "default_prompt_name": "passage"}
    (art / "onnxforge.json").write_text(json.dumps(manifest))
    runtime = Runtime.load(art, max_length=TINY_MAX_LENGTH)
    texts = ["what is debian", "a free operating system"]
    with live_server(runtime, ServeOptions(port=0, model_name=NAME)) as (url, _, _app):
        health = httpx.get(f"{url}/health").json()["model"]
        assert health["prompts"] == {"query": "query: ", "passage": "passage: "} and health["default_prompt_name"] == "passage"
        query = _embed(url, texts, prompt_name="query")
        np.testing.assert_allclose(query["embeddings"], runtime.embed([f"query: {t}" for t in texts]), atol=1e-5)
        default = _embed(url, texts)
        np.testing.assert_allclose(default["embeddings"], runtime.embed([f"passage: {t}" for t in texts]), atol=1e-5)
        openai_rows = httpx.post(f"{url}/v1/embeddings", json={"model": NAME, "input": texts}).json()["data"]
        np.testing.assert_allclose([d["embedding"] for d in openai_rows], default["embeddings"], atol=1e-6)
        r = httpx.post(f"{url}/embed", json={"texts": texts, "prompt_name": "nope"})
        assert r.status_code == 422 and "query" in r.json()["error"]["message"]
        # An empty name: no prompt at all, the default one included.
        bare = _embed(url, texts, prompt_name="")
        np.testing.assert_allclose(bare["embeddings"], runtime.embed(texts), atol=1e-5)


def test_a_prompt_the_pooling_leaves_out_is_refused(tiny_artifact, copy_artifact):
    """include_prompt: false (the prompt's tokens are not pooled) is not what the graph does:
    a prompt, named or default, is a 422 saying so; an empty name embeds without one."""
    import json

    from onnxforge.runtime import Runtime

    from tests.runtime_helpers import TINY_MAX_LENGTH

    art = copy_artifact(tiny_artifact)
    manifest = json.loads((art / "onnxforge.json").read_text())
    manifest["pipeline"] = {"kind": "sentence-transformers", "prompts": {"query": "query: "},
                            "default_prompt_name": "query", "include_prompt": False}
    (art / "onnxforge.json").write_text(json.dumps(manifest))
    runtime = Runtime.load(art, max_length=TINY_MAX_LENGTH)
    texts = ["what is debian"]
    with live_server(runtime, ServeOptions(port=0, model_name=NAME)) as (url, _, _app):
        for body in ({"texts": texts}, {"texts": texts, "prompt_name": "query"}):
            r = httpx.post(f"{url}/embed", json=body)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["type"] == "prompt_not_pooled" and "include_prompt: false" in error["message"]
        r = httpx.post(f"{url}/v1/embeddings", json={"model": NAME, "input": texts})
        assert r.status_code == 422 and r.json()["error"]["code"] == "prompt_not_pooled", r.text
        assert "POST /embed" in r.json()["error"]["message"]
        bare = _embed(url, texts, prompt_name="")
        np.testing.assert_allclose(bare["embeddings"], runtime.embed(texts), atol=1e-5)
