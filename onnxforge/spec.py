"""The one I/O contract of a model, derived once from its source.

Export, optimize (fusions need heads and hidden size), validate, the runtime and the
server all read a ``ModelSpec`` from the manifest instead of guessing names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"

@dataclass(frozen=True)
class OutputSpec:
    """One graph output: its name and a label per dimension.

    ``axes`` holds ``"batch"``, ``"sequence"`` or ``None`` (a fixed size) per dimension,
    e.g. ``("batch", "sequence", None)`` for ``last_hidden_state``.
    """

    name: str
    axes: tuple[str | None, ...]

    @property
    def is_token_level(self) -> bool:
        return SEQUENCE_AXIS in self.axes


@dataclass(frozen=True)
class ModelSpec:
    input_names: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]
    num_heads: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    max_positions: int
    task: str = "feature-extraction"
    model_type: str = "bert"
    type_vocab_size: int = 0
    pad_token_id: int = 0
    intermediate_size: int | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        bad = [n for n in self.input_names if n not in BERT_INPUTS]
        if bad or "input_ids" not in self.input_names:
            raise ValueError(f"inputs must include input_ids and be a subset of {BERT_INPUTS}, got {self.input_names}")
        if self.num_heads <= 0 or self.hidden_size <= 0 or self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a positive multiple of num_heads {self.num_heads}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def output(self, name: str) -> OutputSpec:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The torch.onnx ``dynamic_axes`` mapping for every input and output."""
        axes: dict[str, dict[int, str]] = {n: {0: BATCH_AXIS, 1: SEQUENCE_AXIS} for n in self.input_names}
        for o in self.outputs:
            named = {i: a for i, a in enumerate(o.axes) if a}
            if named:
                axes[o.name] = named
        return axes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["outputs"] = [{"name": o.name, "axes": list(o.axes)} for o in self.outputs]
        d["input_names"] = list(self.input_names)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["input_names"] = tuple(d["input_names"])
        kw["outputs"] = tuple(OutputSpec(o["name"], tuple(o["axes"])) for o in d["outputs"])
        kw["labels"] = tuple(d.get("labels", ()))
        return cls(**kw)
