"""The OpenAI request/response models and the vector shaping they share with /embed (no server)."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from onnxforge.serve.openai_api import (EmbeddingsRequest, EmbeddingsResponse, OpenAIError, embeddings_body, models_body,
                                        openai_error_body, parse_embeddings_request)
from onnxforge.serve.schemas import RequestProblem
from onnxforge.serve.vectors import from_base64, shape_embeddings, to_base64

RNG = np.random.default_rng(0)


def test_dimensions_truncate_then_renormalize():
    v = RNG.normal(size=(3, 384)).astype(np.float32)
    out = shape_embeddings(v, dimensions=64)
    assert out.shape == (3, 64) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, v[:, :64] / np.linalg.norm(v[:, :64], axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(shape_embeddings(v, normalize=False), v)
    with pytest.raises(RequestProblem) as info:
        shape_embeddings(v, dimensions=385)  # more than the model gives: said, not silently ignored
    assert info.value.status == 422 and info.value.param == "dimensions" and "1-384" in info.value.message


def test_base64_is_what_the_official_client_decodes():
    v = RNG.normal(size=384).astype(np.float32)
    text = to_base64(v)
    # openai-python's decoding (types/create_embedding_response + resources/embeddings.py)
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(text), dtype="float32"), v)
    np.testing.assert_array_equal(from_base64(text), v)


@pytest.mark.parametrize("data, status, code, param", [
    ({"input": "a"}, 422, "missing_parameter", "model"),
    ({"model": "m"}, 422, "missing_parameter", "input"),
    ({"model": "m", "input": [1, 2, 3]}, 422, "invalid_input", "input"),
    ({"model": "m", "input": [[1, 2]]}, 422, "invalid_input", "input"),
    ({"model": "m", "input": 3}, 422, "invalid_input", "input"),
    ({"model": "m", "input": []}, 422, "invalid_input", "input"),
    ({"model": "m", "input": "a", "encoding_format": "int8"}, 422, "invalid_value", "encoding_format"),
    ({"model": "m", "input": "a", "dimensions": 0}, 422, "invalid_value", "dimensions"),
    ({"model": "m", "input": "a", "dimensions": "8"}, 422, "invalid_value", "dimensions"),
    ({"model": "m", "input": "a", "temperature": 1}, 422, "unknown_parameter", "temperature"),
    ({"model": "other", "input": "a"}, 404, "model_not_found", "model"),
    (["a"], 422, "invalid_request", None),
])
def test_bad_requests_are_named(data, status, code, param):
    with pytest.raises(RequestProblem) as info:
        parse_embeddings_request(data, "m")
    p = info.value
    assert (p.status, p.kind, p.param) == (status, code, param), p.message
    if code == "invalid_input" and isinstance(data["input"], list) and data["input"]:
        assert "token ids" in p.message
    body = orjson.loads(openai_error_body(p.status, p.kind, p.message, p.param))
    assert OpenAIError.model_validate(body).error.type == "invalid_request_error"


def test_good_request_and_response_shape():
    req = parse_embeddings_request({"model": "m", "input": "hello", "encoding_format": "base64", "dimensions": 8}, "m")
    assert req.texts == ["hello"] and req.truncate is True
    req_list = parse_embeddings_request({"model": "m", "input": ["a", "b"], "user": "u", "truncate": False}, "m")
    assert req_list.texts == ["a", "b"] and not req_list.truncate
    v = RNG.normal(size=(2, 32)).astype(np.float32)
    for request, decode in ((req_list, np.asarray), (EmbeddingsRequest(model="m", input=["a", "b"], encoding_format="base64",
                                                                        dimensions=8), from_base64)):
        body = EmbeddingsResponse.model_validate_json(embeddings_body(v, 11, request))
        assert body.model == "m" and body.usage.prompt_tokens == body.usage.total_tokens == 11
        assert [d.index for d in body.data] == [0, 1]
        got = np.stack([decode(d.embedding) for d in body.data])
        np.testing.assert_allclose(got, shape_embeddings(v, dimensions=request.dimensions), atol=1e-7)
    assert orjson.loads(models_body("m", 5)) == {"object": "list", "data": [
        {"id": "m", "object": "model", "created": 5, "owned_by": "onnxforge"}]}
    assert orjson.loads(openai_error_body(503, "queue_full", "x"))["error"]["type"] == "server_error"
    assert orjson.loads(openai_error_body(401, "invalid_api_key", "x"))["error"]["type"] == "authentication_error"
