"""Texts -> model inputs with the artifact's own tokenizer.

Truncation to the model's maximum positions, right padding (fused Attention assumes
it), and only the inputs the graph takes (token_type_ids only when it has them).
"""

from __future__ import annotations

import unicodedata

import numpy as np

from .spec import ModelSpec


def configure_tokenizer(tokenizer, spec: ModelSpec, max_length: int | None = None):
    """Set truncation and right padding on a ``tokenizers.Tokenizer`` (in place)."""
    limit = min(max_length or spec.max_positions, spec.max_positions)
    tokenizer.enable_truncation(max_length=limit)
    pad_token = tokenizer.id_to_token(spec.pad_token_id) or "[PAD]"
    tokenizer.enable_padding(direction="right", pad_id=spec.pad_token_id, pad_token=pad_token)
    return tokenizer


def encode_texts(tokenizer, texts: list[str], spec: ModelSpec, max_length: int | None = None) -> dict[str, np.ndarray]:
    configure_tokenizer(tokenizer, spec, max_length)
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids}
    if "attention_mask" in spec.input_names:
        feeds["attention_mask"] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    if "token_type_ids" in spec.input_names:
        feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    return feeds


def pipeline_max_length(manifest: dict) -> int | None:
    """The truncation the model's own pipeline uses (sentence-transformers' max_seq_length), if it says."""
    value = (manifest.get("pipeline") or {}).get("max_seq_length")
    return int(value) if isinstance(value, int) and value > 0 else None


def pipeline_texts(texts, manifest: dict) -> list[str]:
    """Texts as the model's own pipeline feeds them to the tokenizer (lower-cased when it says so)."""
    if (manifest.get("pipeline") or {}).get("do_lower_case"):
        return [t.lower() for t in texts]
    return list(texts)


def is_blank(text: str) -> bool:
    """True for text with nothing to read: empty, whitespace, control or format characters only.

    BERT tokenizers drop those characters, so such a text becomes [CLS] [SEP]: a vector
    that looks like a result but says nothing about the input.
    """
    stripped = text.strip()
    if not stripped:
        return True
    if stripped[0].isprintable():  # the common case, without a per-character loop
        return False
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in stripped)
