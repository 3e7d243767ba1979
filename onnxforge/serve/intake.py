"""From request bytes to tokenized texts, the same way for /embed, /predict and /v1/embeddings.

Order matters for abuse resistance: the body is read under a byte limit before anything
parses it (the routes do that), then orjson parses it (400 for bytes that are not
JSON), the pydantic model validates its shape in strict mode (422), the size limits are
checked (413), and only then does the tokenizer see the texts. Tokenizing here, before
the queue, gives the batcher each request's token count (token-budget batching) and
lets ``truncate: false`` answer 413 with the count and the limit.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from .schemas import RequestProblem, validation_problem
from .token_budget import untruncated_tokens

# Requests with more characters than this are tokenized in a worker thread, so a
# large request does not hold the event loop (short ones are cheaper inline).
INLINE_TOKENIZE_CHARS = 8192


def load_json(body: bytes, example: str = '{"texts": ["some text"]}') -> Any:
    import orjson

    if not body.strip():
        raise RequestProblem(400, "empty_body", f"the request has no body; send JSON like {example}")
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as e:
        raise RequestProblem(400, "invalid_json", f"the body is not valid UTF-8 JSON: {e}") from None


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    """``data`` as ``model`` (strict: no coercion), or a 422 in the server's words."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        status, kind, message = validation_problem(e.errors(), set(model.model_fields))
        raise RequestProblem(status, kind, message) from None


def check_sizes(texts: Sequence[str], max_texts: int, max_chars: int, *, field: str = "texts") -> None:
    """413 for too many or too long texts; 422 for lone surrogates the tokenizer would choke on."""
    from ..errors import UserInputError
    from ..runtime.texts import check_texts

    if len(texts) > max_texts:
        raise RequestProblem(413, "too_many_texts",
                             f"{len(texts)} texts in one request; the limit is {max_texts} (split the request)", param=field)
    for i, t in enumerate(texts):
        if len(t) > max_chars:
            raise RequestProblem(413, "text_too_long", f"{field}[{i}] has {len(t)} characters; the limit is {max_chars}",
                                 param=field)
    try:
        check_texts(list(texts))
    except UserInputError as e:
        raise RequestProblem(422, "invalid_texts", e.message, param=field) from None


def model_prompts(runtime) -> tuple[dict[str, str], str | None, bool]:
    """The model's own prompts, default prompt name, and whether its pooling keeps the
    prompt's tokens (see runtime.prompts)."""
    from ..runtime.prompts import model_prompts as recorded, pools_prompt

    artifact = getattr(runtime, "artifact", None)
    return (*recorded(artifact), pools_prompt(artifact))


def with_prompt(texts: list[str], prompt_name: str | None, prompts: dict[str, str],
                default: str | None = None, prompt_pooled: bool = True, hint: str | None = None) -> list[str]:
    """Texts with the model's named prompt in front (sentence-transformers' ``prompt_name``;
    without one, the model's ``default_prompt_name`` as ``SentenceTransformer.encode`` does;
    an empty name: no prompt). A prompt that cannot be applied is a 422 (``hint``: the
    route's own way out, where the usual one does not apply)."""
    from ..runtime.prompts import PromptProblem, choose_prefix

    try:
        prefix = choose_prefix(prompts, default, prompt_name, prompt_pooled=prompt_pooled)
    except PromptProblem as e:
        raise RequestProblem(422, e.kind, f"{e.message}; {hint or e.hint}", param="prompt_name") from None
    return [prefix + t for t in texts] if prefix else texts


async def tokenize(runtime, texts: list[str], *, truncate: bool, field: str = "texts", executor=None) -> list:
    """The runtime's truncated encodings; with ``truncate=False`` a text over the limit is a 413."""
    if sum(len(t) for t in texts) > INLINE_TOKENIZE_CHARS:
        encodings = await asyncio.get_running_loop().run_in_executor(executor, runtime.tokenize, texts)
    else:
        encodings = runtime.tokenize(texts)
    if not truncate:
        specials = None
        for i, enc in enumerate(encodings):
            if enc.overflowing:
                if specials is None:
                    specials = runtime.tokenizer.num_special_tokens_to_add(False)
                count = untruncated_tokens(enc, specials)
                raise RequestProblem(
                    413, "too_many_tokens",
                    f"{field}[{i}] has {count} tokens; the model's limit is {runtime.max_length} "
                    f"(shorten it, or send truncate=true to cut it)", param=field)
    return encodings
