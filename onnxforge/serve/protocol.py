"""The HTTP protocol of ``onnxforge serve``: JSON errors, the body read with limits, request parsing.

Every bad input gets a 4xx JSON error ``{"error": {"status", "type", "message"}}``
(OpenAI's error object on /v1/...), never a 500: the body is read with a byte limit
(413) and a time limit (408) before anything parses it, then parsed by orjson (400 for
bytes that are not JSON) and validated by the pydantic models in ``schemas`` in strict
mode (422 for JSON of the wrong shape, 413 over a size limit), and texts are checked
before they reach the tokenizer (``intake``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .options import ServeOptions
from .schemas import RequestProblem


class HTTPError(RequestProblem):
    """A client error answered with ``status``; ``RequestProblem`` with positional headers."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, kind, message, headers=headers)



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


def parse_request(body: bytes, options: ServeOptions, model=None):
    """The body as ``model`` (``EmbedRequest`` by default): 400 not JSON, 422 wrong shape, 413 over a limit."""
    from . import intake
    from .schemas import EmbedRequest

    request = intake.validate(model or EmbedRequest, intake.load_json(body))
    intake.check_sizes(request.texts, options.max_texts_per_request, options.max_chars_per_text)
    return request
