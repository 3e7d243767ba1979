"""The micro-batcher's token budget and early answers, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from onnxforge.serve import MicroBatcher, ServeOptions


class LongCallsAreSlow:
    """A real runtime whose calls on long inputs (width >= 100 tokens) take 0.6 s more."""

    def __init__(self, runtime):
        self._rt = runtime

    def run(self, feeds, outputs=None):
        if feeds["input_ids"].shape[1] >= 100:
            time.sleep(0.6)
        return self._rt.run(feeds, outputs)

    def __getattr__(self, name):
        return getattr(self._rt, name)


def submit_each(batcher: MicroBatcher, runtime, texts: list[str]) -> list[bytes]:
    """Each text as its own request, all at once; the bodies in text order."""

    async def main():
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([t], True, False, encodings=runtime.tokenize([t]))
                                          for t in texts))
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_a_short_request_is_answered_before_its_long_neighbours_call(tiny_runtime):
    batcher = MicroBatcher(LongCallsAreSlow(tiny_runtime), ServeOptions(max_wait_ms=20))
    done: dict[str, float] = {}

    async def main():
        await batcher.start()
        t0 = time.perf_counter()

        async def one(name, texts):
            body = await batcher.submit(texts, True, False, encodings=tiny_runtime.tokenize(texts))
            done[name] = time.perf_counter() - t0
            return body

        try:
            return await asyncio.gather(one("long", ["word " * 300]), one("short", ["a short text"]))
        finally:
            await batcher.stop()

    long_body, short_body = asyncio.run(main())
    assert batcher.batches == 1, "the two requests were not gathered into one batch"
    # The long call sleeps 0.6 s after the short one's answer went out (calls run shortest first).
    assert done["long"] - done["short"] >= 0.3, done
    import orjson

    np.testing.assert_allclose(orjson.loads(short_body)["embeddings"], tiny_runtime.embed(["a short text"]), atol=1e-5)
    np.testing.assert_allclose(orjson.loads(long_body)["embeddings"], tiny_runtime.embed(["word " * 300]), atol=1e-5)


def test_gathering_stops_at_the_token_budget(tiny_runtime):
    """Requests queued together: each gathered batch holds at most max_batch_tokens real tokens
    (a single request larger than the budget is gathered alone)."""
    from onnxforge.data import sample_texts

    texts = sample_texts(30, offset=300)
    options = ServeOptions(max_batch=64, max_batch_tokens=200, max_wait_ms=50)
    batcher = MicroBatcher(tiny_runtime, options)
    gathered: list[int] = []
    real_process = batcher._process

    def process(items, deliver=None):
        gathered.append(sum(i.tokens for i in items))
        return real_process(items, deliver)

    batcher._process = process

    bodies = submit_each(batcher, tiny_runtime, texts)
    assert len(bodies) == 30 and len(gathered) >= 2
    assert all(tokens <= 200 for tokens in gathered), gathered
    assert sum(gathered) == sum(len(e.ids) for e in tiny_runtime.tokenize(texts))


class TwoAtOnce:
    """A real runtime whose engine claims two parallel calls; each call takes 0.3 s more,
    and the most calls seen running at once is recorded."""

    def __init__(self, runtime):
        import threading

        self._rt = runtime
        self.engine = type("E", (), {"parallel_calls": 2})()
        self.running = self.most = 0
        self._lock = threading.Lock()

    def run(self, feeds, outputs=None):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.3)
            return self._rt.run(feeds, outputs)
        finally:
            with self._lock:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self._rt, name)


def test_an_engine_with_two_streams_gets_two_batches_in_flight(tiny_runtime):
    from onnxforge.data import sample_texts

    runtime = TwoAtOnce(tiny_runtime)
    batcher = MicroBatcher(runtime, ServeOptions(max_batch=4, max_wait_ms=1))
    texts = sample_texts(16, offset=20)

    import orjson

    bodies = submit_each(batcher, runtime, texts)
    assert runtime.most == 2, f"at most {runtime.most} call(s) ran at once"
    assert batcher.batches >= 4 and batcher.batched_texts == 16
    got = np.asarray([orjson.loads(b)["embeddings"][0] for b in bodies])
    np.testing.assert_allclose(got, tiny_runtime.embed(texts), atol=1e-5)


def test_waiting_requests_are_shared_between_free_streams(tiny_runtime):
    """16 requests waiting and two free calls: each call gets half, not one call all 16
    while the other stream idles."""
    from onnxforge.data import sample_texts

    runtime = TwoAtOnce(tiny_runtime)
    # A stream budget large enough for all 16: the sharing is what is tested here.
    batcher = MicroBatcher(runtime, ServeOptions(max_batch=32, max_wait_ms=1, stream_batch_tokens=16384))
    sizes: list[int] = []
    real_process = batcher._process

    def process(items, deliver=None):
        sizes.append(sum(len(i.texts) for i in items))
        return real_process(items, deliver)

    batcher._process = process
    bodies = submit_each(batcher, tiny_runtime, sample_texts(16, offset=40))
    assert len(bodies) == 16 and sorted(sizes) == [8, 8], sizes
    assert runtime.most == 2


def test_calls_side_by_side_take_small_pieces_of_the_queue(tiny_runtime):
    """With streams, each call holds at most the model's maximum length in tokens (by default),
    so no stream takes the whole queue while the other finishes."""
    import orjson

    from onnxforge.data import sample_texts
    from onnxforge.serve.token_budget import padded_tokens

    runtime = TwoAtOnce(tiny_runtime)
    batcher = MicroBatcher(runtime, ServeOptions(max_batch=32, max_wait_ms=1))
    assert batcher.call_tokens == tiny_runtime.max_length
    calls: list[int] = []
    real_run = runtime.run

    def run(feeds, outputs=None):
        calls.append(padded_tokens(feeds["attention_mask"].sum(1)))
        return real_run(feeds, outputs)

    runtime.run = run
    texts = sample_texts(16, offset=40)
    bodies = submit_each(batcher, tiny_runtime, texts)
    assert len(bodies) == 16 and len(calls) > 2
    assert max(calls) <= tiny_runtime.max_length, calls
    got = np.asarray([orjson.loads(b)["embeddings"][0] for b in bodies])
    np.testing.assert_allclose(got, tiny_runtime.embed(texts), atol=1e-5)


def test_the_call_budget_per_engine_kind():
    from onnxforge.serve.token_budget import call_token_budget

    assert call_token_budget(ServeOptions(), 1, 256) == 16384  # one call at a time: --max-batch-tokens
    assert call_token_budget(ServeOptions(), 2, 256) == 256  # streams: the model's maximum length
    assert call_token_budget(ServeOptions(stream_batch_tokens=1024), 2, 256) == 1024
    assert call_token_budget(ServeOptions(max_batch_tokens=512, stream_batch_tokens=1024), 2, 256) == 512
    assert call_token_budget(ServeOptions(max_batch_tokens=None), 2, 256) == 256
