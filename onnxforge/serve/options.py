"""Options of ``onnxforge serve``: where to listen, batching, and the limits that keep it up."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserInputError
from .token_budget import DEFAULT_MAX_BATCH_TOKENS


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    # Texts per ONNX Runtime call.
    max_batch: int = 32
    # Tokens per ONNX Runtime call, padding included (None: bounded by max_batch only).
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS
    # Tokens per call when calls run side by side (OpenVINO streams; None: the model's
    # maximum length; see token_budget.call_token_budget).
    stream_batch_tokens: int | None = None
    # Under load, how long the batcher waits for more requests once one is in hand.
    max_wait_ms: float = 2.0
    max_texts_per_request: int = 64
    max_chars_per_text: int = 20_000
    # Texts waiting for the model before new requests get 503.
    max_queue_texts: int = 4096
    retry_after_s: int = 1
    # Seconds a request waits for its result before it is answered 503 + Retry-After
    # (the model is overloaded or stuck; the client should back off, not hang).
    request_timeout_s: float = 60.0
    # Seconds a client may take to send its body; a stalled upload gets 408 and frees its slot.
    body_timeout_s: float = 30.0
    # Open connections uvicorn serves at once; more are answered 503 at once.
    max_connections: int = 1024
    # Seconds uvicorn waits for requests in flight at shutdown.
    graceful_timeout_s: float = 30.0
    log_level: str = "warning"
    access_log: bool = False
    # The name /v1/embeddings answers to (None: the artifact folder's name).
    model_name: str | None = None
    # Bearer key for every endpoint but /health and /ready; never printed (repr=False).
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise UserInputError("--host must be a host name or address", hint="e.g. --host 127.0.0.1")
        if not 0 <= int(self.port) <= 65535:
            raise UserInputError(f"--port {self.port} is out of range", hint="use 1-65535, or 0 for any free port")
        for name in ("max_batch", "max_texts_per_request", "max_chars_per_text", "max_queue_texts", "retry_after_s",
                     "max_connections"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_batch_tokens", "stream_batch_tokens"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.model_name is not None and not self.model_name.strip():
            raise UserInputError("--model-name is empty", hint="e.g. --model-name minilm")
        if self.max_wait_ms < 0 or self.graceful_timeout_s < 0:
            raise UserInputError("--max-wait-ms and the graceful timeout must be >= 0")
        if not (self.request_timeout_s > 0 and self.body_timeout_s > 0):
            raise UserInputError(f"the request and body timeouts must be positive, got {self.request_timeout_s} "
                                 f"and {self.body_timeout_s}")
        if self.max_queue_texts < self.max_texts_per_request:
            raise UserInputError(
                f"the queue ({self.max_queue_texts} texts) must hold at least one full request "
                f"({self.max_texts_per_request} texts)")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise UserInputError(f"--log-level {self.log_level} is not known", hint="use warning, info or debug")

    @property
    def max_body_bytes(self) -> int:
        # Worst case: every text at the limit, 4 bytes per character once JSON-escaped
        # (\uXXXX is 6 bytes, but only for control characters), plus the envelope.
        return self.max_texts_per_request * (self.max_chars_per_text * 4 + 16) + 4096
