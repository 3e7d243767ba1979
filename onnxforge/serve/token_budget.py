"""Token-budget micro-batching: model calls bounded by tokens, not only by text count.

A batch of 32 texts costs 32 x 9 tokens when they are short and 32 x 512 when one of
them is long and the rest are padded to it. text-embeddings-inference bounds each
batch by tokens (``--max-batch-tokens``); so does this server:

- ``runtime.texts.length_groups(..., max_tokens=)`` cuts the texts of one gathered batch
  into model calls whose padded size (texts x longest) never exceeds the budget, sorted
  by length so short texts are not padded to long ones;
- ``BatchBudget.admits`` lets the batcher stop gathering requests once the real tokens
  waiting would fill the budget, so one long request does not gather 31 short
  neighbours that then wait for it.

``untruncated_tokens`` gives a text's full token count from a truncated encoding, for
``truncate: false`` (413 with the count and the limit).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BATCH_TOKENS = 16384  # text-embeddings-inference's default


def padded_tokens(lengths) -> int:
    """What one model call over these texts costs: count x longest."""
    import numpy as np

    lengths = np.asarray(lengths)
    return int(len(lengths) * max(int(lengths.max()), 1)) if len(lengths) else 0


@dataclass(frozen=True)
class BatchBudget:
    """How much the batcher gathers before it hands a batch to the model."""

    max_texts: int
    max_tokens: int | None = None

    def admits(self, texts: int, tokens: int, more_texts: int, more_tokens: int) -> bool:
        """Whether a request of ``more_texts``/``more_tokens`` joins a batch holding ``texts``/``tokens``.

        An empty batch admits anything (a request larger than the budget is split into
        several model calls by ``length_groups``, never refused here).
        """
        if texts == 0:
            return True
        if texts + more_texts > self.max_texts:
            return False
        return self.max_tokens is None or tokens + more_tokens <= self.max_tokens


def call_token_budget(options, parallel_calls: int, max_length: int) -> int | None:
    """The token budget of one model call.

    One call at a time: ``--max-batch-tokens``. Calls side by side (OpenVINO streams):
    ``--stream-batch-tokens``, by default the model's maximum length, so every free
    stream takes a small piece of the queue in arrival order instead of one stream taking
    all that waits while the others finish. Measured on MiniLM (2-core Sapphire Rapids,
    16 clients, one real text each): p99 106-114 ms with 16384-token calls, 78-80 with
    256-token (= max length) calls at the same requests/s
    (benchmarks/results/serve-peers-spr-quiet-2c.md).
    """
    if parallel_calls <= 1:
        return options.max_batch_tokens
    per_call = options.stream_batch_tokens or max_length
    return per_call if options.max_batch_tokens is None else min(per_call, options.max_batch_tokens)


def untruncated_tokens(encoding, special_tokens: int) -> int:
    """A text's token count before truncation (special tokens counted once).

    The Rust tokenizer keeps what it cut in ``overflowing``: each piece carries its
    own special tokens, which are not the text's.
    """
    return len(encoding.ids) + sum(len(o.ids) - special_tokens for o in encoding.overflowing)


def check_budget(max_batch_tokens: int | None, max_length: int, flag: str = "--max-batch-tokens") -> None:
    """A budget that cannot hold one text at the model's maximum would starve long texts."""
    from ..errors import UserInputError

    if max_batch_tokens is not None and max_batch_tokens < max_length:
        raise UserInputError(
            f"{flag} {max_batch_tokens} is less than the model's maximum length ({max_length} tokens)",
            hint=f"use at least {max_length}, or lower --max-length")
