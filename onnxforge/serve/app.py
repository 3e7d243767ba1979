"""``onnxforge serve``: an HTTP JSON API over a ``Runtime`` with dynamic micro-batching.

Concurrent requests are gathered into one ONNX Runtime call: an asyncio queue takes
requests, one batcher task collects what is waiting (up to ``max_batch`` texts, or
``max_wait_ms`` once several clients are active) and hands the batch to one inference
thread, so the event loop keeps accepting requests while the model runs, and requests
that arrive during a run form the next batch. Inside a batch, texts are grouped by
token length so short texts are not padded to the longest one.

The pieces: ``options`` (limits), ``protocol`` (errors, body, parsing), ``schemas``
(the typed contract /openapi.json shows), ``intake`` (validation and tokenizing),
``batcher`` (the micro-batcher), ``openai_api`` (POST /v1/embeddings), ``metrics``
(GET /metrics) and ``auth`` (API keys); this module wires them into the FastAPI app
and runs uvicorn.
"""

from __future__ import annotations

import contextlib
import time

# Module level, not inside create_app: FastAPI resolves the endpoints' string
# annotations (from __future__ import annotations) in this module's globals.
from starlette.requests import Request

from ..errors import UserInputError
from .batcher import MicroBatcher, _Item
from .options import ServeOptions
from .protocol import HTTPError, dumps, parse_request, read_body
from .schemas import RequestProblem


def create_app(runtime, options: ServeOptions = ServeOptions()):
    """The FastAPI app over ``runtime``; its lifespan starts and drains the batcher."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.responses import Response

    import numpy as np

    from . import intake, openai_api
    from .auth import ApiKeyMiddleware, HiddenKey
    from .metrics import METRICS_PATH, MetricsMiddleware, ServeMetrics, model_info
    from .schemas import (EmbedRequest, EmbedResponse, HealthResponse, PredictRequest, PredictResponse, ReadyResponse,
                          error_responses, request_body)
    from .token_budget import check_budget

    check_budget(options.max_batch_tokens, runtime.max_length)
    check_budget(options.stream_batch_tokens, runtime.max_length, "--stream-batch-tokens")
    served_name = options.model_name or runtime.artifact.root.name
    batcher = MicroBatcher(runtime, options)
    metrics = ServeMetrics(model_info(runtime, served_name), lambda: batcher.pending_texts)
    batcher.metrics = metrics
    started = time.time()
    prompts, default_prompt, prompt_pooled = intake.model_prompts(runtime)

    def error_body(path: str, status: int, kind: str, message: str, param: str | None = None) -> bytes:
        if path.startswith("/v1/"):
            return openai_api.openai_error_body(status, kind, message, param)
        return dumps({"error": {"status": status, "type": kind, "message": message}})

    def error_response(path: str, status: int, kind: str, message: str, headers: dict[str, str] | None = None,
                       param: str | None = None) -> Response:
        return Response(error_body(path, status, kind, message, param), status_code=status,
                        media_type="application/json", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="onnxforge", version=_version(), lifespan=lifespan,
                  summary=f"{runtime.spec.task} model {runtime.variant} on {runtime.device}")
    app.state.batcher = batcher
    app.state.runtime = runtime
    app.state.metrics = metrics

    @app.exception_handler(RequestProblem)
    async def _http_error(request, exc: RequestProblem):
        return error_response(request.url.path, exc.status, exc.kind, exc.message, exc.headers, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request.url.path, exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request, exc):
        # A bug or a runtime failure, never bad input (that is answered 4xx above).
        return error_response(request.url.path, 500, "internal_error", f"{type(exc).__name__}: {str(exc)[:300]}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error_response(request.url.path, 422, "invalid_request", str(exc.errors())[:500])

    async def handle(request: Request, want: str) -> Response:
        if want == "embed" and batcher.kind != "embedding":
            raise HTTPError(404, "not_an_embedding_model",
                            f"this {runtime.spec.task} model gives no sentence embeddings; use POST /predict")
        body = await read_body(request, options.max_body_bytes, options.body_timeout_s)
        req = parse_request(body, options, EmbedRequest if want == "embed" else PredictRequest)
        texts = intake.with_prompt(req.texts, getattr(req, "prompt_name", None), prompts, default_prompt, prompt_pooled)
        encodings = await intake.tokenize(runtime, texts, truncate=req.truncate)
        payload = await batcher.submit(texts, req.normalize, req.return_tokens, encodings=encodings,
                                       dimensions=getattr(req, "dimensions", None))
        return Response(payload, media_type="application/json")

    errors = error_responses(400, 401, 408, 413, 422, 503)

    @app.post("/embed", summary="Sentence embeddings (the model's own pooling; L2-normalized unless normalize=false)",
              response_model=EmbedResponse, responses={**errors, **error_responses(404)},
              openapi_extra=request_body(EmbedRequest))
    async def embed(request: Request):
        return await handle(request, "embed")

    @app.post("/predict", summary="The model's task output: embeddings, labels and scores, or raw outputs",
              response_model=PredictResponse, responses=errors, openapi_extra=request_body(PredictRequest))
    async def predict(request: Request):
        return await handle(request, "predict")

    def render_openai(req):
        def render(item: _Item, rows: list[dict]) -> bytes:
            vectors = np.stack([r["embedding"] for r in rows])
            return openai_api.embeddings_body(vectors, sum(r["tokens"] for r in rows), req)
        return render

    @app.post(openai_api.EMBEDDINGS_PATH, summary="OpenAI-compatible embeddings (the official client works as is)",
              response_model=openai_api.EmbeddingsResponse,
              responses=error_responses(400, 401, 404, 408, 413, 422, 503, model=openai_api.OpenAIError),
              openapi_extra=request_body(openai_api.EmbeddingsRequest))
    async def openai_embeddings(request: Request):
        if batcher.kind != "embedding":
            raise HTTPError(404, "not_an_embedding_model",
                            f"this {runtime.spec.task} model gives no sentence embeddings")
        body = await read_body(request, options.max_body_bytes, options.body_timeout_s)
        req = openai_api.parse_embeddings_request(intake.load_json(body, '{"model": "...", "input": "text"}'),
                                                  served_name)
        intake.check_sizes(req.texts, options.max_texts_per_request, options.max_chars_per_text, field="input")
        texts = intake.with_prompt(req.texts, None, prompts, default_prompt, prompt_pooled,
                                   hint='this route always applies the default prompt: use POST /embed with "prompt_name": ""')
        encodings = await intake.tokenize(runtime, texts, truncate=req.truncate, field="input")
        payload = await batcher.submit(texts, True, False, encodings=encodings, render=render_openai(req))
        return Response(payload, media_type="application/json")

    @app.get(openai_api.MODELS_PATH, summary="The served model, OpenAI-style", response_model=openai_api.ModelList)
    async def openai_models():
        return Response(openai_api.models_body(served_name, started), media_type="application/json")

    @app.get(METRICS_PATH, summary="Prometheus metrics (text format)", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}})
    async def prometheus_metrics():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/health", summary="Liveness, and what is being served", response_model=HealthResponse)
    async def health():
        return Response(dumps({
            "status": "ok",
            "uptime_s": round(time.time() - started, 1),
            "model": {**runtime.describe(), "served_name": served_name, "prompts": prompts,
                      "default_prompt_name": default_prompt},
            "queue_texts": batcher.pending_texts,
            "requests": batcher.requests,
            "batches": batcher.batches,
            "batched_texts": batcher.batched_texts,
            "timeouts": batcher.timeouts,
            "limits": {"max_batch": options.max_batch, "max_batch_tokens": options.max_batch_tokens,
                       "max_texts_per_request": options.max_texts_per_request,
                       "max_chars_per_text": options.max_chars_per_text, "max_queue_texts": options.max_queue_texts,
                       "request_timeout_s": options.request_timeout_s, "body_timeout_s": options.body_timeout_s,
                       "max_connections": options.max_connections},
            "auth": options.api_key is not None,
        }), media_type="application/json")

    @app.get("/ready", summary="200 when requests are accepted, 503 while starting or draining",
             response_model=ReadyResponse, responses=error_responses(503))
    async def ready():
        if not batcher.accepting:
            return error_response("/ready", 503, "not_ready", "the model is not accepting requests (starting or shutting down)",
                                  {"Retry-After": str(options.retry_after_s)})
        return Response(dumps({"ready": True}), media_type="application/json")

    if options.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=HiddenKey(options.api_key), error_body=error_body)
    # Outermost: counts every answer, 401s included.
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=frozenset(r.path for r in app.routes))
    return app


def _version() -> str:
    from .. import __version__

    return __version__


def bind_socket(host: str, port: int):
    """Bind before starting uvicorn: a port in use is a clear exit 2, and port 0 resolves."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserInputError(f"--host {host} does not resolve ({e.strerror})", hint="use an address like 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it Nagle's algorithm and delayed ACKs
    # hold every small JSON response ~40 ms (measured: 52 ms -> 7.6 ms at concurrency 1).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserInputError(f"cannot listen on {host}:{port} ({e.strerror})",
                             hint="choose another --port (0 picks a free one)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(app, options: ServeOptions):
    import uvicorn

    config = uvicorn.Config(
        app, log_level=options.log_level, access_log=options.access_log, lifespan="on",
        timeout_graceful_shutdown=options.graceful_timeout_s, server_header=False,
        limit_concurrency=options.max_connections,
    )
    return uvicorn.Server(config)


def serve(runtime, options: ServeOptions = ServeOptions(), *, announce=print) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, finishes requests in
    flight (up to graceful_timeout_s), and the lifespan drains the batcher."""
    from .auth import exposure_warning

    app = create_app(runtime, options)  # before binding: a bad option is exit 2 with no socket open
    warning = exposure_warning(options.host, options.api_key)
    if warning:
        announce(warning)
    sock = bind_socket(options.host, options.port)
    host, port = sock.getsockname()[:2]
    server = make_server(app, options)
    announce(f"serving {runtime.spec.task} model '{runtime.variant}' ({runtime.precision}) on {runtime.device} "
             f"via {runtime.engine.engine} at http://{host}:{port} "
             f"(POST /embed, /predict, /v1/embeddings; GET /health, /ready, /metrics, /docs)"
             + (" with API-key auth" if options.api_key else ""))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
