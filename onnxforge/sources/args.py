"""The model-source fields as a user gives them (CLI flags or TOML keys), declared once.

``SourceArgs`` is what was typed; ``resolve()`` classifies it into the ``SourceRef``
the manifest records. The export CLI, the build CLI, ``BuildOptions`` and the TOML
config schema all read their source fields from this one dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .ref import SourceRef

# Field metadata: the value is a path (TOML values are taken relative to the file).
PATH = {"path": True}


@dataclass(frozen=True)
class SourceArgs:
    """MODEL and the flags that qualify it; None means "not given"."""

    # A Hugging Face folder, package.module:function, or None for the built-in MiniLM.
    model: str | None = None
    task: str | None = None
    weights: str | None = field(default=None, metadata=PATH)
    tokenizer: str | None = field(default=None, metadata=PATH)
    app_dir: str | None = field(default=None, metadata=PATH)
    num_heads: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None

    def __post_init__(self) -> None:
        # The CLI hands over Path objects; the manifest and the keys hold strings.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, f.name, os.fspath(value))

    def resolve(self) -> SourceRef:
        """The ``SourceRef`` these arguments name (bad input raises UserInputError)."""
        from .base import resolve_source

        values = self.to_dict()
        return resolve_source(values.pop("model"), **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(SourceArgs))


def field_schema() -> dict[str, tuple[type, bool]]:
    """name -> (value type, is a path): the TOML config checks source keys with this."""
    types = {"str | None": str, "int | None": int}
    return {f.name: (types[f.type], bool(f.metadata.get("path"))) for f in dataclasses.fields(SourceArgs)}
