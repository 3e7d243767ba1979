"""Texts before the tokenizer: checked strings, and length-sorted groups for model calls."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UserInputError


def length_groups(lengths: np.ndarray, max_batch: int, *, slack: float = 1.5,
                  max_tokens: int | None = None) -> list[np.ndarray]:
    """Split texts into ORT calls by token length, so short texts are not padded to long ones.

    Indices are sorted by length and cut into runs of at most ``max_batch``; a run also
    ends before a text that would make its padded size (count x longest) exceed
    ``slack`` times its real tokens. Every call then wastes at most a third of its work
    on padding (slack 1.5), and since each such cut raises the length by that factor,
    it adds at most log_1.5(max length), about 16, calls. With ``max_tokens`` a run
    also ends before its padded size would exceed that budget (the server's
    ``--max-batch-tokens``); a single text over the budget still gets a call of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    groups: list[np.ndarray] = []
    start, real = 0, 0
    for k, index in enumerate(order):
        length = max(int(lengths[index]), 1)
        size = k - start
        padded = (size + 1) * length  # sorted ascending: this text is the run's longest
        if size and (size >= max_batch or padded > slack * (real + length)
                     or (max_tokens is not None and padded > max_tokens)):
            groups.append(order[start:k])
            start, real = k, 0
        real += length
    if len(order):
        groups.append(order[start:])
    return groups


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """A list of str; lone surrogates (undecodable bytes) would break the Rust tokenizer."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UserInputError(f"text {i} is {type(t).__name__}, not str")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise UserInputError(f"text {i} holds characters that are not valid Unicode (lone surrogates)",
                                 hint="decode the input as UTF-8 before passing it") from None
    return texts
