"""Embedding rows as the client asked for them: fewer dimensions, normalized, base64.

Shared by /embed and /v1/embeddings so both give the same numbers for the same text.
"""

from __future__ import annotations

import base64

import numpy as np


def shape_embeddings(vectors: np.ndarray, *, dimensions: int | None = None, normalize: bool = True) -> np.ndarray:
    """Keep the first ``dimensions`` columns, then L2-normalize each row if asked.

    Truncating before normalizing is what OpenAI's ``dimensions`` and
    sentence-transformers' ``truncate_dim`` do: the kept prefix of a Matryoshka-trained
    embedding, rescaled to unit length so cosine and dot product agree again.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None:
        if not 1 <= dimensions <= vectors.shape[1]:
            from .schemas import RequestProblem

            raise RequestProblem(422, "invalid_dimensions",
                                 f"dimensions {dimensions} is not within 1-{vectors.shape[1]}, the model's embedding size",
                                 param="dimensions")
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def to_base64(vector: np.ndarray) -> str:
    """One row as OpenAI's base64 encoding: little-endian float32 bytes.

    The official client decodes it with ``np.frombuffer(base64.b64decode(s), dtype="float32")``.
    """
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def from_base64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")
