"""The engine seam: Runtime runs any object that implements ``Engine``, not only ONNX Runtime."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime import Engine, Runtime, shape_results


class RecordingEngine:
    """Another engine: delegates to ORT but is not OrtEngine, and counts its calls."""

    engine = "recording"

    def __init__(self, inner):
        self.inner = inner
        self.device = inner.device
        self.input_names, self.output_names, self.input_types = inner.input_names, inner.output_names, inner.input_types
        self.calls = 0

    def run(self, feeds, outputs=None):
        self.calls += 1
        return self.inner.run(feeds, outputs)

    def describe(self):
        return {"engine": self.engine, "device": self.device, "providers": ["recording"]}


def test_runtime_over_another_engine(tiny_runtime):
    engine = RecordingEngine(tiny_runtime.engine)
    assert isinstance(engine, Engine) and isinstance(tiny_runtime.engine, Engine)
    rt = Runtime(artifact=tiny_runtime.artifact, variant=tiny_runtime.variant, path=tiny_runtime.path, engine=engine,
                 tokenizer=tiny_runtime.tokenizer, max_length=tiny_runtime.max_length,
                 input_dtypes=tiny_runtime.input_dtypes, checks=tiny_runtime.checks)
    texts = ["a short text", "a somewhat longer text about packages"]
    np.testing.assert_array_equal(rt.embed(texts), tiny_runtime.embed(texts))
    assert engine.calls == 1
    assert rt.describe()["engine"] == "recording" and rt.providers == ["recording"] and not rt.io_binding


def test_shaped_embeddings_match_embed(tiny_runtime):
    texts = ["one", "two words", "three little words"]
    enc = tiny_runtime.encode_batch(texts)
    shaped = shape_results(tiny_runtime.spec, enc, tiny_runtime.run(enc.feeds), token_vectors=True)
    np.testing.assert_array_equal(shaped.columns["embedding"], tiny_runtime.embed(texts))
    rows = [shaped.row(j) for j in range(len(texts))]
    assert [r["tokens"] for r in rows] == enc.lengths.tolist()
    assert [r["token_embeddings"].shape[0] for r in rows] == enc.lengths.tolist()
