"""Seeded model inputs: random token ids with right-padded masks.

Shared by the export check and the validate stage so both feed the same kind of
batch: row 0 is full length, the other rows are right-padded to different lengths
(fused Attention assumes right-side padding).
"""

from __future__ import annotations

import numpy as np

from .spec import ModelSpec


def random_inputs(spec: ModelSpec, batch: int, seq: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Avoid the lowest ids (pad/special tokens in most vocabularies) for real positions.
    low = min(1000, max(spec.vocab_size // 4, 1))
    ids = rng.integers(low, spec.vocab_size, size=(batch, seq), dtype=np.int64)
    lengths = np.full(batch, seq, dtype=np.int64)
    if batch > 1:
        lengths[1:] = rng.integers(1, seq + 1, size=batch - 1)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, spec.pad_token_id).astype(np.int64)
    feeds: dict[str, np.ndarray] = {}
    for name in spec.input_names:
        if name == "input_ids":
            feeds[name] = ids
        elif name == "attention_mask":
            feeds[name] = mask
        elif name == "token_type_ids":
            tt = np.zeros_like(ids)
            if spec.type_vocab_size > 1:
                # Second "segment" on the second half of the real tokens.
                half = (lengths // 2)[:, None]
                tt = ((np.arange(seq)[None, :] >= half) & (mask == 1)).astype(np.int64)
            feeds[name] = tt
    return feeds
