"""Token-budget batching: model calls never over the budget, every text exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge.runtime.texts import length_groups
from onnxforge.serve.token_budget import BatchBudget, check_budget, padded_tokens, untruncated_tokens


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(1, 512), min_size=1, max_size=200), max_texts=st.integers(1, 64),
       extra=st.integers(0, 20_000))
def test_a_call_is_never_over_the_token_budget(lengths, max_texts, extra):
    max_tokens = max(lengths) + extra  # the server refuses a budget below the model's maximum length
    groups = length_groups(lengths, max_texts, max_tokens=max_tokens)
    seen = np.concatenate(groups)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # nothing dropped, nothing twice
    for g in groups:
        assert 1 <= len(g) <= max_texts
        assert padded_tokens(np.asarray(lengths)[g]) <= max_tokens


def test_one_long_text_does_not_pad_its_short_neighbours():
    lengths = [500] + [12] * 31
    groups = length_groups(lengths, 32, max_tokens=16384)
    assert [sorted(g.tolist()) for g in groups] == [list(range(1, 32)), [0]]
    # A tight budget splits the short ones too, and the long one still gets its own call.
    groups = length_groups(lengths, 32, max_tokens=512)
    assert all(padded_tokens(np.asarray(lengths)[g]) <= 512 for g in groups) and len(groups) == 2
    groups = length_groups(lengths, 32, max_tokens=120)
    assert [len(g) for g in groups[:-1]] == [10, 10, 10, 1] and groups[-1].tolist() == [0]


def test_without_a_token_budget_only_the_text_count_bounds_a_call():
    assert [len(g) for g in length_groups([8] * 70, 32)] == [32, 32, 6]


def test_the_gathering_budget():
    budget = BatchBudget(max_texts=32, max_tokens=1000)
    assert budget.admits(0, 0, 64, 50_000)  # an empty batch takes any request (split later)
    assert budget.admits(10, 900, 1, 100) and not budget.admits(10, 900, 1, 101)
    assert not budget.admits(31, 10, 2, 2)
    assert BatchBudget(max_texts=32).admits(1, 10**9, 1, 10**9)


def test_untruncated_token_count(tokenizer_dir):
    from onnxforge.tokenizer import load_tokenizer

    cut, full = load_tokenizer(tokenizer_dir), load_tokenizer(tokenizer_dir)
    cut.no_padding(), full.no_padding()
    cut.enable_truncation(max_length=16)
    full.no_truncation()
    specials = cut.num_special_tokens_to_add(False)
    texts = ["short", "word " * 40 + "end", "Grüße aus Köln " * 9, "x" * 300]
    for fast in (False, True):
        encode = cut.encode_batch_fast if fast else cut.encode_batch
        for text, enc in zip(texts, encode(texts)):
            assert len(enc.ids) <= 16
            assert untruncated_tokens(enc, specials) == len(full.encode(text).ids), text


def test_budget_below_the_model_maximum_is_refused():
    from onnxforge.errors import UserInputError

    check_budget(None, 512)
    check_budget(512, 512)
    with pytest.raises(UserInputError, match="less than the model's maximum length"):
        check_budget(256, 512)
