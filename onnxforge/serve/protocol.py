"""The HTTP protocol of ``onnxforge serve``: JSON errors, the body read with limits, request parsing.

Every bad input gets a 4xx JSON error ``{"error": {"status", "type", "message"}}``,
never a 500: the body is read with a byte limit (413) and a time limit (408), parsed
by hand (400 for bytes that are not JSON, 422 for JSON of the wrong shape), and texts
are checked before they reach the tokenizer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import UserInputError
from ..runtime.texts import check_texts
from .options import ServeOptions

REQUEST_KEYS = {"texts", "normalize", "return_tokens"}


class HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}



def dumps(payload: Any) -> bytes:
    import orjson

    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)



async def read_body(request, limit: int, timeout: float | None = None) -> bytes:
    """The body, at most ``limit`` bytes (413), arriving within ``timeout`` seconds (408)."""
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, "body_timeout", f"the request body did not arrive within {timeout:g}s",
                        {"Connection": "close"}) from None


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPError(413, "body_too_large", f"the request body is {declared} bytes; the limit is {limit}")
        except ValueError:
            raise HTTPError(400, "bad_content_length", f"Content-Length {declared!r} is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "body_too_large", f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes, options: ServeOptions) -> tuple[list[str], bool, bool]:
    """``{"texts": [...], "normalize": true, "return_tokens": false}`` -> checked values."""
    import orjson

    if not body.strip():
        raise HTTPError(400, "empty_body", 'the request has no body; send JSON like {"texts": ["some text"]}')
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as e:
        raise HTTPError(400, "invalid_json", f"the body is not valid UTF-8 JSON: {e}") from None
    if not isinstance(data, dict):
        raise HTTPError(422, "invalid_request", f'the body must be a JSON object like {{"texts": [...]}}, got {type(data).__name__}')
    unknown = sorted(set(data) - REQUEST_KEYS)
    if unknown:
        raise HTTPError(422, "invalid_request", f"unknown field(s) {unknown}; allowed: {sorted(REQUEST_KEYS)}")
    if "texts" not in data:
        raise HTTPError(422, "invalid_request", 'missing field "texts" (a list of strings)')
    texts = data["texts"]
    if not isinstance(texts, list):
        raise HTTPError(422, "invalid_texts", f'"texts" must be a list of strings, got {type(texts).__name__}')
    if not texts:
        raise HTTPError(422, "invalid_texts", '"texts" is empty; send at least one text')
    if len(texts) > options.max_texts_per_request:
        raise HTTPError(413, "too_many_texts",
                        f"{len(texts)} texts in one request; the limit is {options.max_texts_per_request} (split the request)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise HTTPError(422, "invalid_texts", f"texts[{i}] is {type(t).__name__}, not a string")
        if len(t) > options.max_chars_per_text:
            raise HTTPError(413, "text_too_long",
                            f"texts[{i}] has {len(t)} characters; the limit is {options.max_chars_per_text}")
    try:
        check_texts(texts)
    except UserInputError as e:
        raise HTTPError(422, "invalid_texts", e.message) from None
    flags = []
    for key, default in (("normalize", True), ("return_tokens", False)):
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise HTTPError(422, "invalid_request", f'"{key}" must be true or false, got {type(value).__name__}')
        flags.append(value)
    return texts, flags[0], flags[1]
