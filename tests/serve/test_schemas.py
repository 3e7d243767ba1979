"""The request models validate in strict mode and their errors read like the server's own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onnxforge.serve.schemas import EmbedRequest, PredictRequest, request_body, validation_problem

ALLOWED = set(EmbedRequest.model_fields)


@pytest.mark.parametrize("data, kind, words", [
    ({"texts": "a"}, "invalid_texts", '"texts" must be a list of strings, got a string'),
    ({"texts": None}, "invalid_texts", "got null"),
    ({"texts": []}, "invalid_texts", "is empty"),
    ({"texts": ["a", 3]}, "invalid_texts", "texts[1] is a number, not a string"),
    ({"texts": [["a"]]}, "invalid_texts", "texts[0] is a list"),
    ({"normalize": True}, "invalid_request", 'missing field "texts"'),
    ({"texts": ["a"], "text": "b"}, "invalid_request", "unknown field(s) ['text']"),
    ({"texts": ["a"], "normalize": "yes"}, "invalid_request", '"normalize"'),
    ({"texts": ["a"], "normalize": 1}, "invalid_request", '"normalize"'),
    ({"texts": ["a"], "dimensions": 0}, "invalid_request", '"dimensions"'),
    (["a"], "invalid_request", "must be a JSON object"),
])
def test_errors_in_the_servers_words(data, kind, words):
    with pytest.raises(ValidationError) as info:
        EmbedRequest.model_validate(data)
    status, got_kind, message = validation_problem(info.value.errors(), ALLOWED)
    assert (status, got_kind) == (422, kind) and words in message, message


def test_defaults_and_openapi_body():
    r = EmbedRequest.model_validate({"texts": ["a"]})
    assert (r.normalize, r.return_tokens, r.truncate, r.dimensions, r.prompt_name) == (True, False, True, None, None)
    assert set(PredictRequest.model_fields) == {"texts", "normalize", "return_tokens", "truncate"}
    schema = request_body(EmbedRequest)["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["texts"] and schema["additionalProperties"] is False and schema["examples"]
