"""OpenAI's embeddings API (``POST /v1/embeddings``, ``GET /v1/models``) over the same batcher.

The request and response follow https://platform.openai.com/docs/api-reference/embeddings:
``input`` is a string or a list of strings (token-id arrays are refused: the server
tokenizes with the model's own tokenizer), ``encoding_format`` is ``float`` or
``base64`` (little-endian float32, what the official Python client asks for by
default), ``dimensions`` keeps the first N dimensions and renormalizes, ``usage``
counts the tokens the model saw. Errors are OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.

``truncate`` (default true) is onnxforge's extension, sent by the official client with
``extra_body={"truncate": False}``: false answers 413 for a text over the model's
maximum instead of cutting it.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .schemas import RequestProblem
from .vectors import shape_embeddings, to_base64

EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"model": "all-minilm-l6-v2", "input": "Debian is a free operating system."},
        {"model": "all-minilm-l6-v2", "input": ["first text", "second text"], "encoding_format": "base64",
         "dimensions": 256}]})

    input: str | list[str] = Field(description="A text, or a list of texts (one embedding each, in order).")
    model: str = Field(description="The served model's name (GET /v1/models lists it).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: a list of numbers; base64: little-endian float32 bytes, base64-encoded.")
    dimensions: int | None = Field(None, ge=1, description="Keep the first N dimensions, then L2-normalize.")
    user: str | None = Field(None, description="Accepted for compatibility; not used.")
    truncate: bool = Field(True, description="onnxforge: false answers 413 for a text over the model's maximum tokens.")

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str = Field(description="The vector, or its base64 float32 bytes.")
    index: int


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model saw, special tokens included, after truncation.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "object": "list", "model": "all-minilm-l6-v2",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.021, -0.043, 0.118]}],
        "usage": {"prompt_tokens": 9, "total_tokens": 9}}]})

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "onnxforge"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error or server_error")
    param: str | None = None
    code: str | None = Field(None, description="The server's own error kind, e.g. model_not_found, text_too_long.")


class OpenAIError(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": {
        "message": "the model 'text-embedding-3-small' is not served here; this server serves 'all-minilm-l6-v2'",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}]})

    error: OpenAIErrorDetail


def parse_embeddings_request(data: Any, served_model: str) -> EmbeddingsRequest:
    """Validated request from parsed JSON; ``RequestProblem`` (OpenAI-worded) otherwise."""
    try:
        request = EmbeddingsRequest.model_validate(data)
    except ValidationError as e:
        raise _problem(e.errors()) from None
    if request.model != served_model:
        raise RequestProblem(404, "model_not_found",
                             f"the model {request.model!r} is not served here; this server serves {served_model!r}",
                             param="model")
    if isinstance(request.input, list) and not request.input:
        raise RequestProblem(422, "invalid_input", "'input' is an empty list; send at least one text", param="input")
    return request


def _problem(errors: list[dict[str, Any]]) -> RequestProblem:
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"])
    if unknown:
        return RequestProblem(422, "unknown_parameter", f"unrecognized request argument(s) supplied: {', '.join(unknown)}",
                              param=unknown[0])
    error = errors[0]
    loc = tuple(error.get("loc", ()))
    param = str(loc[0]) if loc else None
    if error["type"] == "model_type":
        return RequestProblem(422, "invalid_request", "the body must be a JSON object like "
                              '{"model": "...", "input": "some text"}')
    if error["type"] == "missing":
        return RequestProblem(422, "missing_parameter", f"you must provide '{param}'", param=param)
    if param == "input":
        # pydantic reports both union members; say it once, as OpenAI does.
        if any(isinstance(x, int) and not isinstance(x, bool) for x in _flatten(error.get("input"))):
            return RequestProblem(422, "invalid_input", "'input' holds token ids: this server tokenizes texts itself; "
                                  "send a string or a list of strings", param="input")
        return RequestProblem(422, "invalid_input", "'input' must be a string or a list of strings", param="input")
    return RequestProblem(422, "invalid_value", f"'{param}': {error['msg']}", param=param)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [y for x in value for y in _flatten(x)]
    return [value]


def embeddings_body(vectors: np.ndarray, prompt_tokens: int, request: EmbeddingsRequest) -> bytes:
    """The JSON response for the request's texts, in order (vectors come unnormalized or normalized)."""
    import orjson

    rows = shape_embeddings(vectors, dimensions=request.dimensions, normalize=True)
    if request.encoding_format == "base64":
        data = [{"object": "embedding", "index": i, "embedding": to_base64(row)} for i, row in enumerate(rows)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    payload = {"object": "list", "data": data, "model": request.model,
               "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)}}
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def models_body(served_model: str, created: float | None = None) -> bytes:
    import orjson

    card = {"id": served_model, "object": "model", "created": int(created or time.time()), "owned_by": "onnxforge"}
    return orjson.dumps({"object": "list", "data": [card]})


def openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error_body(status: int, kind: str, message: str, param: str | None = None) -> bytes:
    """OpenAI's error object; ``code`` carries the server's own error kind."""
    import orjson

    return orjson.dumps({"error": {"message": message, "type": openai_type(status), "param": param, "code": kind}})
