"""The micro-batcher: concurrent requests gathered into model calls on the inference thread(s).

An asyncio queue takes requests, one batcher task collects what is waiting (up to
``max_batch`` texts and ``max_batch_tokens`` tokens, or ``max_wait_ms`` once several
clients are active) and hands the batch to one inference thread, so the event loop
keeps accepting requests while the model runs, and requests that arrive during a run
form the next batch. An engine that runs calls side by side (OpenVINO under a
throughput hint: one stream per core group) gets that many batches in flight. Inside a batch, texts are grouped by token length so short texts
are not padded to the longest one, and no model call exceeds the token budget
(padding included). A full queue answers 503 with ``Retry-After``.

Routes tokenize a request before it queues (``intake.tokenize``), so its token count
is known when the batch is gathered; a request that comes without encodings is
tokenized here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..runtime.engine import parallel_calls
from ..runtime.results import needed_outputs, shape_results
from ..runtime.texts import length_groups
from .options import ServeOptions
from .protocol import HTTPError, dumps
from .token_budget import BatchBudget, call_token_budget, padded_tokens
from .vectors import shape_embeddings


@dataclass
class _Item:
    texts: list[str]
    normalize: bool
    return_tokens: bool
    future: asyncio.Future | None
    # The texts' encodings, tokenized by the route (None: the batcher tokenizes them).
    encodings: list | None = None
    dimensions: int | None = None
    # Writes the response from the item and its rows (None: the /embed and /predict payload).
    render: Callable[["_Item", list[dict[str, Any]]], bytes] | None = None
    tokens: int = 0  # real tokens of the encodings, for the gathering budget


_STOP = object()


class MicroBatcher:
    """Gathers concurrent requests into batches for one inference thread."""

    def __init__(self, runtime, options: ServeOptions, metrics=None):
        self.runtime = runtime
        self.options = options
        self.metrics = metrics  # a ServeMetrics, told each model call's size
        # Batches run at once: one per OpenVINO stream under a throughput hint, else one.
        self.parallel_calls = parallel_calls(runtime.engine)
        self.call_tokens = call_token_budget(options, self.parallel_calls, runtime.max_length)
        self.budget = BatchBudget(options.max_batch, self.call_tokens)
        self.kind = runtime.kind
        self.pending_texts = 0
        self.requests = 0
        self.batches = 0
        self.batched_texts = 0
        self.timeouts = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._held: _Item | None = None
        self._last_requests = 0
        self._count_lock = threading.Lock()
        self._busy = 0  # batches in flight (the batcher task's own count; the event loop is its only writer)
        self.accepting = False

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=self.parallel_calls, thread_name_prefix="onnxforge-infer")
        self._task = asyncio.create_task(self._run(), name="onnxforge-batcher")
        self.accepting = True

    async def stop(self) -> None:
        """Finish every queued request, then stop the batcher and its thread."""
        self.accepting = False
        if self._task is not None and self._queue is not None:
            self._queue.put_nowait(_STOP)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, texts: list[str], normalize: bool, return_tokens: bool, *, encodings: list | None = None,
                     dimensions: int | None = None, render=None) -> bytes:
        if not self.accepting or self._queue is None:
            raise HTTPError(503, "shutting_down", "the server is not accepting requests (starting or shutting down)",
                            {"Retry-After": str(self.options.retry_after_s)})
        if self.pending_texts + len(texts) > self.options.max_queue_texts:
            raise HTTPError(503, "queue_full",
                            f"{self.pending_texts} texts are waiting for the model (limit {self.options.max_queue_texts}); retry shortly",
                            {"Retry-After": str(self.options.retry_after_s)})
        future = asyncio.get_running_loop().create_future()
        self.requests += 1
        self.pending_texts += len(texts)
        tokens = sum(len(e.ids) for e in encodings) if encodings is not None else 0
        self._queue.put_nowait(_Item(texts, normalize, return_tokens, future, encodings, dimensions, render, tokens))
        try:
            # On timeout wait_for cancels the future: the batcher then skips the request.
            return await asyncio.wait_for(future, self.options.request_timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise HTTPError(503, "timeout",
                            f"no result within {self.options.request_timeout_s:g}s: the model is overloaded; retry shortly",
                            {"Retry-After": str(self.options.retry_after_s)}) from None

    # -- the batcher task ----------------------------------------------------------
    async def _next(self, timeout: float | None):
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _gather(self, first: _Item, free_slots: int = 1) -> tuple[list[_Item], bool]:
        items, count, tokens, stop = [first], len(first.texts), first.tokens, False
        # With several calls free (OpenVINO streams), share what is waiting between them
        # instead of giving it all to one stream while the others idle.
        limit = self.options.max_batch
        if free_slots > 1:
            limit = min(limit, max(1, -(-self.pending_texts // free_slots)))
        loop = asyncio.get_running_loop()
        # Wait for stragglers only when clients are evidently concurrent (the last batch
        # held several requests, or more are queued): a lone client never waits.
        concurrent = self._last_requests > 1 or not self._queue.empty()
        deadline = loop.time() + self.options.max_wait_ms / 1e3 if concurrent else 0.0
        while count < limit:
            try:
                item = await self._next(max(deadline - loop.time(), 0.0))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if item is _STOP:
                stop = True
                break
            if not self.budget.admits(count, tokens, len(item.texts), item.tokens):
                self._held = item
                break
            items.append(item)
            count += len(item.texts)
            tokens += item.tokens
        return items, stop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        in_flight: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(self.parallel_calls)
        try:
            while True:
                if stopping and self._held is None and self._queue.empty():
                    break
                # A free slot first, then gather: requests that arrive while every slot is
                # busy form the next batch (with one slot: run, gather, run, ...).
                await slots.acquire()
                self._busy += 1
                # Once stopping, nothing new arrives (submit refuses): take what is left without blocking.
                first = await self._next(0.0 if stopping else None)
                if first is _STOP:
                    self._release(slots)
                    stopping = True
                    continue
                items, saw_stop = await self._gather(first, self.parallel_calls - self._busy + 1)
                stopping = stopping or saw_stop
                self.pending_texts -= sum(len(i.texts) for i in items)
                self._last_requests = len(items)
                live = [i for i in items if not i.future.done()]  # clients that went away cost nothing
                if not live:
                    self._release(slots)
                    continue
                task = asyncio.create_task(self._dispatch(loop, live))
                in_flight.add(task)
                task.add_done_callback(lambda t: (in_flight.discard(t), self._release(slots)))
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._busy -= 1
        slots.release()

    async def _dispatch(self, loop, live: list[_Item]) -> None:
        # Each request is answered as soon as its own texts have run (see _process).
        deliver = lambda item, result: loop.call_soon_threadsafe(self._resolve, item, result)  # noqa: E731
        results = await loop.run_in_executor(self._executor, self._process, live, deliver)
        for item, result in zip(live, results):
            self._resolve(item, result)

    @staticmethod
    def _resolve(item: _Item, result: bytes | BaseException) -> None:
        if item.future is None or item.future.done():
            return
        if isinstance(result, BaseException):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)

    # -- inference (the worker thread) -------------------------------------------
    def _process(self, items: list[_Item], deliver=None) -> list[bytes | BaseException]:
        """Run the batch's texts in length-sorted model calls; one result per request.

        ``deliver(item, result)``, when given, is called (from this thread) as soon as a
        request's last text has run, so short requests do not wait for the call that
        holds a long neighbour (calls run shortest first).
        """
        texts = [t for item in items for t in item.texts]
        results: list[bytes | BaseException | None] = [None] * len(items)
        try:
            encodings = [e for item in items
                         for e in (item.encodings if item.encodings is not None else self.runtime.tokenize(item.texts))]
            lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
            counts = [len(item.texts) for item in items]
            starts = np.concatenate([[0], np.cumsum(counts)])
            owner = np.repeat(np.arange(len(items)), counts)  # text -> its request
            remaining = list(counts)
            rows: list[dict[str, Any]] = [{} for _ in texts]
            tokens = any(item.return_tokens for item in items)
            fetch = needed_outputs(self.runtime.spec, token_vectors=tokens)
            for group in length_groups(lengths, self.options.max_batch, max_tokens=self.call_tokens):
                enc = self.runtime.pad([encodings[i] for i in group])
                outputs = self.runtime.run(enc.feeds, fetch)
                if self.metrics is not None:
                    self.metrics.observe_batch(len(group), padded_tokens(enc.lengths))
                # Unnormalized: each request chooses normalize for itself (see _payload).
                shaped = shape_results(self.runtime.spec, enc, outputs, normalize=False, token_vectors=tokens)
                for j, i in enumerate(group):
                    rows[i] = shaped.row(j)
                    k = int(owner[i])
                    remaining[k] -= 1
                    if remaining[k] == 0:
                        results[k] = self._render(items[k], rows[starts[k]:starts[k + 1]])
                        if deliver is not None:
                            deliver(items[k], results[k])
            with self._count_lock:
                self.batches += 1
                self.batched_texts += len(texts)
        except Exception as e:  # a bug or a runtime failure: every request not yet answered gets 500
            return [e if r is None else r for r in results]
        return results

    def _render(self, item: _Item, rows: list[dict[str, Any]]) -> bytes | BaseException:
        try:  # one request's bad option (dimensions over the model's size) is its own error
            return item.render(item, rows) if item.render is not None else dumps(self._payload(item, rows))
        except Exception as e:
            return e

    def _payload(self, item: _Item, rows: list[dict[str, Any]]) -> dict[str, Any]:
        common = {"tokens": [r["tokens"] for r in rows], "truncated": [r["truncated"] for r in rows]}
        if self.kind == "embedding":
            vectors = shape_embeddings(np.stack([r["embedding"] for r in rows]), dimensions=item.dimensions,
                                       normalize=item.normalize)
            payload = {"embeddings": vectors, "dimension": int(vectors.shape[1]),
                       "normalized": item.normalize, **common}
            if item.return_tokens:
                payload["token_embeddings"] = [r.get("token_embeddings") for r in rows]
            return payload
        if self.kind == "classification":
            return {
                "predictions": [{"label": r["label"], "score": r["score"]} for r in rows],
                "probabilities": np.stack([r["scores"] for r in rows]),
                "logits": np.stack([r["logits"] for r in rows]),
                "label_names": list(self.runtime.spec.labels),
                **common,
            }
        return {"outputs": [r["outputs"] for r in rows], **common}
