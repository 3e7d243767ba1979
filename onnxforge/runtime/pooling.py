"""Pooling and result kinds: which output is a sentence embedding, and what serve and batch return."""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError
from ..spec import SEQUENCE_AXIS, ModelSpec


# Sentence-level outputs that already are an embedding (sentence-transformers' names).
SENTENCE_OUTPUT_NAMES = ("sentence_embedding", "sentence_embeddings", "embeddings", "text_embeds")
# Token-level outputs to mean-pool, in order of preference.
TOKEN_OUTPUT_NAMES = ("last_hidden_state", "token_embeddings")


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the real-token vectors (sentence-transformers' mean pooling)."""
    m = mask.astype(hidden.dtype)[:, :, None]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def embedding_plan(spec: ModelSpec) -> tuple[str, bool] | None:
    """Which output gives a sentence embedding, and whether it must be mean-pooled.

    A sentence-level output with an embedding name wins; else the token-level hidden
    states (last_hidden_state first) are mean-pooled over real tokens. BERT's
    ``pooler_output`` is not used: it is a classification-head input, not an embedding.
    """
    for o in spec.outputs:
        if o.name in SENTENCE_OUTPUT_NAMES and len(o.axes) == 2 and o.axes[1] != SEQUENCE_AXIS:
            return o.name, False
    token_level = [o for o in spec.outputs if len(o.axes) == 3 and o.axes[1] == SEQUENCE_AXIS and o.axes[2] is None]
    for name in TOKEN_OUTPUT_NAMES:
        if any(o.name == name for o in token_level):
            return name, True
    if token_level and spec.task in ("feature-extraction", "custom"):
        return token_level[0].name, True
    return None


def result_kind(spec: ModelSpec) -> str:
    """``classification``, ``embedding`` or ``raw``: what serve and batch return for this model."""
    if spec.task == "sequence-classification" and "logits" in spec.output_names:
        return "classification"
    if spec.task in ("feature-extraction", "custom") and embedding_plan(spec) is not None:
        return "embedding"
    return "raw"


def token_output(spec: ModelSpec) -> str | None:
    """The token-level output that embeddings are pooled from (what serve's return_tokens gives)."""
    plan = embedding_plan(spec)
    if plan and plan[1]:
        return plan[0]
    # A graph with its own sentence_embedding still has the token-level output beside it.
    token_level = {o.name for o in spec.outputs if len(o.axes) == 3 and o.axes[1] == SEQUENCE_AXIS}
    return next((n for n in TOKEN_OUTPUT_NAMES if n in token_level), None)


def pooled(spec: ModelSpec, outputs: dict[str, np.ndarray], mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Sentence embeddings from a run's outputs (see ``embedding_plan``)."""
    plan = embedding_plan(spec)
    if plan is None:
        raise UserInputError(
            f"this {spec.task} model has no output to build sentence embeddings from "
            f"(outputs: {list(spec.output_names)})",
            hint="embeddings need a last_hidden_state-like (batch, sequence, hidden) or a sentence_embedding output",
        )
    name, pool = plan
    vectors = mean_pool(outputs[name], mask) if pool else outputs[name]
    vectors = vectors.astype(np.float32, copy=False)
    return l2_normalize(vectors) if normalize else vectors


def classes(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(label per text, its probability, all probabilities) from sequence-classification logits."""
    logits = outputs["logits"]
    probs = softmax(logits.astype(np.float64)).astype(np.float32)
    top = probs.argmax(axis=-1)
    labels = list(spec.labels) or [f"LABEL_{i}" for i in range(logits.shape[-1])]
    if len(labels) != logits.shape[-1]:
        labels = [f"LABEL_{i}" for i in range(logits.shape[-1])]
    return [labels[i] for i in top], probs[np.arange(len(top)), top], probs
