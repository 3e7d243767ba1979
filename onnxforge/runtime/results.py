"""The one place that turns a model call's outputs into per-text results (serve and batch).

What a text gets depends on the model's result kind (``pooling.result_kind``):

- ``embedding``: ``embedding`` (the pooled sentence vector, float32), and with
  ``token_vectors`` the real-token rows of the pooled output (``token_embeddings``);
- ``classification``: ``label``, ``score`` (its probability), ``scores`` (all
  probabilities) and ``logits``;
- ``raw``: every output by name, token-level ones cut to the text's real tokens.

Serve lays these rows out as its JSON payload, batch as its output columns; neither
pools, normalizes, softmaxes or trims on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import ModelSpec
from .pooling import classes, embedding_plan, pooled, result_kind, token_output


@dataclass(frozen=True)
class Results:
    """One model call's results: ``columns`` by name, one entry per text of the call."""

    kind: str
    tokens: np.ndarray  # real tokens per text
    truncated: np.ndarray  # bool per text
    columns: dict[str, Any]

    def __len__(self) -> int:
        return len(self.tokens)

    def row(self, j: int) -> dict[str, Any]:
        """Text ``j``'s results as one dict: ``tokens``, ``truncated`` and its kind's fields."""
        row: dict[str, Any] = {"tokens": int(self.tokens[j]), "truncated": bool(self.truncated[j])}
        if self.kind == "raw":
            row["outputs"] = {name: values[j] for name, values in self.columns.items()}
            return row
        for name, values in self.columns.items():
            row[name] = float(values[j]) if name == "score" else values[j]
        return row


def result_columns(spec: ModelSpec) -> list[str]:
    """The result fields batch writes for this model (serve adds logits and token vectors)."""
    kind = result_kind(spec)
    if kind == "embedding":
        return ["embedding"]
    if kind == "classification":
        return ["label", "score", "scores"]
    return list(spec.output_names)


def needed_outputs(spec: ModelSpec, *, token_vectors: bool = False) -> list[str]:
    """The outputs ``shape_results`` reads: an embedding model with its own sentence output
    needs only that one (fetching the token-level output too would copy a batch x
    sequence x hidden array per call for nothing)."""
    if result_kind(spec) == "embedding" and not token_vectors:
        plan = embedding_plan(spec)
        if plan is not None:
            return [plan[0]]
    return list(spec.output_names)


def shape_results(spec: ModelSpec, enc, outputs: dict[str, np.ndarray], *, normalize: bool = True,
                  token_vectors: bool = False) -> Results:
    """Per-text results of one call on the padded batch ``enc`` (an ``Encoded``)."""
    kind = result_kind(spec)
    lengths = enc.lengths
    columns: dict[str, Any]
    if kind == "embedding":
        columns = {"embedding": pooled(spec, outputs, enc.mask, normalize=normalize)}
        name = token_output(spec) if token_vectors else None
        if token_vectors:
            columns["token_embeddings"] = [
                np.ascontiguousarray(outputs[name][j, : int(n)]) if name else None for j, n in enumerate(lengths)
            ]
    elif kind == "classification":
        labels, scores, probs = classes(spec, outputs)
        columns = {"label": labels, "score": scores, "scores": probs, "logits": outputs["logits"]}
    else:
        columns = {}
        for o in spec.outputs:
            token_level = o.is_token_level and o.axes[1] == "sequence"
            columns[o.name] = [np.ascontiguousarray(outputs[o.name][j, : int(n)] if token_level else outputs[o.name][j])
                               for j, n in enumerate(lengths)]
    return Results(kind=kind, tokens=lengths, truncated=enc.truncated, columns=columns)
