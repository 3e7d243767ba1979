"""What a model source is: ``SourceRef`` (recorded in the manifest) and ``LoadedModel``.

Kept apart from ``base`` (which dispatches to the loaders) so that the loaders
(builtin, hf, factory) import these names without importing ``base`` back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec import ModelSpec

BUILTIN_NAME = "all-MiniLM-L6-v2"


# Field metadata: the value is a path (the TOML config takes it relative to its file).
PATH = {"path": True}


@dataclass(frozen=True)
class SourceFields:
    """The flags that qualify a model source, declared once: ``SourceArgs`` (what was
    typed) and ``SourceRef`` (what the manifest records) both carry them."""

    task: str | None = None
    # A state_dict for a package.module:function model.
    weights: str | None = field(default=None, metadata=PATH)
    tokenizer: str | None = field(default=None, metadata=PATH)
    # Where a package.module:function model is imported from.
    app_dir: str | None = field(default=None, metadata=PATH)
    # For a model without a transformers config.
    num_heads: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None


@dataclass(frozen=True)
class SourceRef(SourceFields):
    """How to rebuild a model: recorded in the manifest, read back by validate.

    kind: ``builtin`` (the packaged MiniLM), ``hf`` (a Hugging Face model folder) or
    ``factory`` (``package.module:function`` returning an ``nn.Module``).
    """

    kind: str = field(kw_only=True)
    location: str = field(kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "location": self.location} | dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceRef":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class LoadedModel:
    """A model ready to trace: ``module(*inputs in spec order)`` returns a tuple of
    tensors in ``spec.output_names`` order."""

    module: Any
    spec: ModelSpec
    source: SourceRef
    tokenizer_files: dict[str, Path] = field(default_factory=dict)
    config_path: Path | None = None
    attn_implementation: str | None = None
    # How text becomes a sentence embedding (pooling, truncation, prompts): the manifest's "pipeline".
    pipeline: dict[str, Any] | None = None
    # Other files the artifact keeps, by relative name (e.g. sentence-transformers' 1_Pooling/config.json).
    extra_files: dict[str, Path] = field(default_factory=dict)
