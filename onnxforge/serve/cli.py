"""`onnxforge serve` (thin: parse, call the API, report)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UserInputError
from ..cli_common import ArtifactDir, Device, Variant, err_console, handle_errors
from ..runtime.cli_options import Engine, MaxLength, Performance, Threads


@handle_errors
def serve_command(
    artifact_dir: ArtifactDir,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port, printed at start).")] = 8000,
    device: Device = "cpu",
    variant: Variant = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most texts per ONNX Runtime call (concurrent requests are batched).")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Under load, how long to wait for more requests to fill a batch.")] = 2.0,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Most texts per request (more: 413).")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Most characters per text (more: 413).")] = 20_000,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Texts waiting for the model before requests get 503 + Retry-After.")] = 4096,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Seconds a request waits for its result before a 503 + Retry-After.")] = 60.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", help="Seconds a client may take to send its body (then 408).")] = 30.0,
    max_connections: Annotated[int, typer.Option("--max-connections", help="Connections served at once; more get 503.")] = 1024,
    max_batch_tokens: Annotated[int, typer.Option("--max-batch-tokens", help="Most tokens per ONNX Runtime call, padding included (0: no token bound).")] = 16384,
    stream_batch_tokens: Annotated[int | None, typer.Option("--stream-batch-tokens", help="With OpenVINO streams (--performance throughput): most tokens per call, so every free stream takes a small piece of the queue (default: the model's maximum length).", show_default=False)] = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="The model name /v1/embeddings answers to (default: the artifact folder's name).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Require 'Authorization: Bearer KEY' on every endpoint but /health and /ready (default: $ONNXFORGE_API_KEY).", show_default=False)] = None,
    max_length: MaxLength = None,
    threads: Threads = None,
    engine: Engine = None,
    performance: Performance = "throughput",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the model over HTTP: POST /embed, /predict (JSON {"texts": [...]}) and /v1/embeddings (OpenAI's API); GET /health, /ready, /metrics."""
    from ..runtime import Runtime
    from .app import serve
    from .auth import resolve_api_key
    from .options import ServeOptions

    options = ServeOptions(host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, max_texts_per_request=max_texts,
                           max_chars_per_text=max_chars, max_queue_texts=max_queue, log_level=log_level,
                           request_timeout_s=request_timeout, body_timeout_s=body_timeout, max_connections=max_connections,
                           max_batch_tokens=max_batch_tokens or None, stream_batch_tokens=stream_batch_tokens,
                           model_name=model_name,
                           api_key=resolve_api_key(api_key))
    if performance not in ("latency", "throughput"):
        raise UserInputError(f"--performance {performance} is not known", hint="choose latency or throughput")
    runtime = Runtime.load(artifact_dir, variant, device, max_length=max_length, threads=threads, engine=engine,
                           throughput=performance == "throughput")
    try:
        serve(runtime, options, announce=lambda line: err_console().print(line, markup=False))
    except KeyboardInterrupt:
        pass  # uvicorn already finished the requests in flight
    err_console().print("server stopped")

COMMANDS = {"serve": serve_command}
