"""The HTTP contract of ``onnxforge serve`` as pydantic models: what /openapi.json and /docs show.

Requests are validated with these models in strict mode (``"yes"`` is not a boolean,
``3`` is not a text), after the body has been read under its byte limit and parsed by
orjson, so the 4xx shapes stay what they were: ``validation_problem`` turns pydantic's
error list into one ``(status, type, message)`` in the server's own words.

Responses are documented here but written with orjson from numpy arrays (validating
384 floats per text through pydantic would cost more than the model run).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", strict=True)

TEXTS_EXAMPLE = ["Debian is a free operating system.", "A short second text."]


class TextsRequest(BaseModel):
    """What /embed and /predict share."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"texts": TEXTS_EXAMPLE}]})

    texts: list[str] = Field(min_length=1, description="The texts, one result row each, in order.")
    truncate: bool = Field(
        True, description="Cut texts longer than the model's maximum tokens (reported per text in `truncated`). "
                          "false answers 413 with the text's token count and the limit instead.")
    return_tokens: bool = Field(False, description="Also return each text's token-level vectors (embedding models).")


class EmbedRequest(TextsRequest):
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"texts": TEXTS_EXAMPLE}, {"texts": TEXTS_EXAMPLE, "dimensions": 128, "normalize": True}]})

    normalize: bool = Field(True, description="L2-normalize each embedding (after `dimensions`).")
    dimensions: int | None = Field(None, ge=1, description="Keep the first N dimensions (Matryoshka-style).")
    prompt_name: str | None = Field(None, description="A prompt the model was trained with (see GET /health), "
                                                      "prepended to every text; the model's default prompt, if any, "
                                                      "when left out; \"\" for no prompt.")


class PredictRequest(TextsRequest):
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"texts": TEXTS_EXAMPLE}]})

    normalize: bool = Field(True, description="L2-normalize embeddings (embedding models only).")


class _Rows(BaseModel):
    tokens: list[int] = Field(description="Tokens per text, special tokens included, after truncation.")
    truncated: list[bool] = Field(description="Whether each text was cut to the model's maximum.")


class EmbedResponse(_Rows):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "embeddings": [[0.021, -0.043, 0.118], [0.07, 0.011, -0.05]], "dimension": 3, "normalized": True,
        "tokens": [9, 6], "truncated": [False, False]}]})

    embeddings: list[list[float]]
    dimension: int
    normalized: bool
    token_embeddings: list[list[list[float]]] | None = Field(None, description="With return_tokens.")


class Prediction(BaseModel):
    label: str
    score: float


class PredictResponse(_Rows):
    """One of three shapes, by the model: embeddings (as /embed), a classification, or raw outputs."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "predictions": [{"label": "pos", "score": 0.93}], "probabilities": [[0.02, 0.05, 0.93]],
        "logits": [[-1.9, -1.0, 1.8]], "label_names": ["neg", "neu", "pos"], "tokens": [7], "truncated": [False]}]})

    embeddings: list[list[float]] | None = None
    dimension: int | None = None
    normalized: bool | None = None
    predictions: list[Prediction] | None = None
    probabilities: list[list[float]] | None = None
    logits: list[list[float]] | None = None
    label_names: list[str] | None = None
    outputs: list[dict[str, Any]] | None = Field(None, description="Raw outputs by name, per text (other tasks).")


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "status": "ok", "uptime_s": 12.5, "queue_texts": 0, "requests": 42, "batches": 17, "batched_texts": 42,
        "timeouts": 0, "model": {"variant": "optimized", "device": "cpu", "kind": "embedding"},
        "limits": {"max_batch": 32, "max_batch_tokens": 16384}}]})

    status: Literal["ok"]
    uptime_s: float
    model: dict[str, Any] = Field(description="What is served: artifact, variant, precision, device, providers, ...")
    queue_texts: int = Field(description="Texts waiting for the model now.")
    requests: int
    batches: int
    batched_texts: int
    timeouts: int
    limits: dict[str, Any]


class ReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}]})

    ready: Literal[True]


class ErrorDetail(BaseModel):
    status: int
    type: str = Field(description="A stable machine-readable kind, e.g. invalid_texts, text_too_long, queue_full.")
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": {"status": 422, "type": "invalid_texts", "message": "texts[1] is int, not a string"}}]})

    error: ErrorDetail


# -- OpenAPI helpers --------------------------------------------------------------------
def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body.

    The routes read the body themselves (the byte limit comes before any parsing), so
    FastAPI cannot infer the body from a parameter; this puts the same schema there.
    """
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def error_responses(*statuses: int, model: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for the error statuses a route answers."""
    words = {400: "Not JSON, or an empty body", 401: "Missing or wrong API key", 404: "Not served here",
             408: "The body did not arrive in time", 413: "Over a size limit (bytes, texts, characters, tokens)",
             422: "JSON of the wrong shape", 503: "Queue full, timed out, or not ready (see Retry-After)"}
    return {s: {"model": model, "description": words.get(s, "Error")} for s in statuses}


# -- validation errors in the server's words ---------------------------------------------
class RequestProblem(Exception):
    """A client error found while reading a request: answered ``status`` with the route's error shape."""

    def __init__(self, status: int, kind: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.param, self.headers = status, kind, message, param, headers or {}


def validation_problem(errors: list[dict[str, Any]], allowed: set[str]) -> tuple[int, str, str]:
    """``(status, type, message)`` for the first of pydantic's ``errors()``.

    Problems with the texts are ``invalid_texts``, anything else ``invalid_request``;
    all are 422 (the JSON parsed, its shape is wrong).
    """
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"])
    if unknown:
        return 422, "invalid_request", f"unknown field(s) {unknown}; allowed: {sorted(allowed)}"
    error = errors[0]
    loc = tuple(error.get("loc", ()))
    field = str(loc[0]) if loc else "body"
    if error["type"] == "model_type":
        return 422, "invalid_request", f'the body must be a JSON object like {{"texts": [...]}}, got {_kind(error.get("input"))}'
    if error["type"] == "missing":
        return 422, "invalid_request", f'missing field "{field}"'
    got = _kind(error.get("input"))
    if field == "texts":
        if len(loc) > 1:
            return 422, "invalid_texts", f"texts[{loc[1]}] is {got}, not a string"
        if error["type"] == "too_short":
            return 422, "invalid_texts", '"texts" is empty; send at least one text'
        return 422, "invalid_texts", f'"texts" must be a list of strings, got {got}'
    return 422, "invalid_request", f'"{field}": {error["msg"]} (got {got})'


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
