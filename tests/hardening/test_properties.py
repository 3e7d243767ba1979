"""Properties of the text -> tokens -> model path, for any text hypothesis can think of.

- Any Unicode string (emoji, combining marks, control characters, right-to-left, CJK,
  thousands of characters) gives outputs of the right shape: at least [CLS] [SEP], at
  most the model's positions, finite numbers, unit-length embeddings. Strings holding
  lone surrogates (undecodable bytes) are refused as bad input, never crash the tokenizer.
- Batching does not change results beyond float32 round-off: a text alone and the same
  text in a batch of texts of other lengths (right-padded) give the same embedding and
  the same token vectors, for the export and for the fused variant (whose Attention
  reads the padding from the mask), through Runtime and through the server's batcher.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxforge.errors import UserInputError

from .conftest import TINY_POSITIONS

HIDDEN = 64
# float32 round-off between batch shapes. Measured here (100 batches of 6 real texts,
# both variants): bit-identical; the margin is for CPUs whose GEMM blocking depends on
# the batch shape. Hidden states reach ~3.6 in magnitude.
EMB_ATOL = 1e-5
HIDDEN_ATOL = 2e-5

# Every code point but surrogates, weighted towards the awkward ones.
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=400) | st.lists(
    st.sampled_from(["\u0000", "\u200b", "\ufeff", "\u202e", "\u0301", "e\u0301", "\U0001f680", "東", "\n", "\t",
                     " ", "\u3000", "a", ".", "word "]), max_size=600).map("".join)


@pytest.fixture(scope="module", params=["base", "optimized"])
def runtime(request, hard_optimized):
    from onnxforge.runtime import Runtime

    return Runtime.load(hard_optimized, variant=request.param)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_any_text_gives_outputs_of_the_right_shape(runtime, text):
    enc = runtime.encode_batch([text])
    n = int(enc.lengths[0])
    assert 2 <= n <= TINY_POSITIONS
    assert enc.feeds["input_ids"].shape == (1, n) and enc.mask.sum() == n
    out = runtime.run(enc.feeds)
    assert out["last_hidden_state"].shape == (1, n, HIDDEN) and out["pooler_output"].shape == (1, HIDDEN)
    assert all(np.isfinite(v).all() for v in out.values())
    vector = runtime.pooled(out, enc.mask)
    assert vector.shape == (1, HIDDEN) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=20), surrogate=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
def test_lone_surrogates_are_bad_input_not_a_crash(runtime, text, surrogate):
    with pytest.raises(UserInputError, match="lone surrogates"):
        runtime.embed([text + surrogate + text])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(any_text, min_size=2, max_size=8))
def test_batching_does_not_change_results(runtime, texts):
    enc = runtime.encode_batch(texts)
    together = runtime.run(enc.feeds)
    pooled = runtime.pooled(together, enc.mask)
    for i, text in enumerate(texts):
        alone_enc = runtime.encode_batch([text])
        alone = runtime.run(alone_enc.feeds)
        n = int(enc.lengths[i])
        assert n == int(alone_enc.lengths[0])
        np.testing.assert_allclose(together["last_hidden_state"][i, :n], alone["last_hidden_state"][0], atol=HIDDEN_ATOL)
        np.testing.assert_allclose(pooled[i], runtime.pooled(alone, alone_enc.mask)[0], atol=EMB_ATOL)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.lists(any_text, min_size=1, max_size=4), min_size=1, max_size=6))
def test_the_servers_batcher_answers_each_request_as_if_alone(runtime, requests):
    """The micro-batcher merges requests, regroups their texts by length and splits the
    results back: every request must get exactly its own texts' embeddings."""
    from onnxforge.serve.batcher import MicroBatcher, _Item
    from onnxforge.serve.options import ServeOptions

    batcher = MicroBatcher(runtime, ServeOptions(max_batch=5))
    items = [_Item(texts, True, False, None) for texts in requests]
    payloads = batcher._process(items)
    for texts, payload in zip(requests, payloads):
        assert not isinstance(payload, BaseException), payload
        body = orjson.loads(payload)
        np.testing.assert_allclose(np.array(body["embeddings"], dtype=np.float32), runtime.embed(texts), atol=EMB_ATOL)
        assert body["tokens"] == [int(n) for n in runtime.encode_batch(texts).lengths]
