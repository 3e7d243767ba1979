"""The model-source fields as a user gives them (CLI flags or TOML keys).

``SourceArgs`` is what was typed: MODEL plus the ``SourceFields`` that qualify it;
``resolve()`` classifies it into the ``SourceRef`` the manifest records. The export
CLI, the build CLI, ``BuildOptions`` and the TOML config schema all take their
source fields from here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .ref import BUILTIN_NAME, SourceFields, SourceRef


@dataclass(frozen=True)
class SourceArgs(SourceFields):
    """MODEL and the flags that qualify it; None means "not given"."""

    # A Hugging Face folder, package.module:function, or None for the built-in MiniLM.
    model: str | None = None

    def __post_init__(self) -> None:
        # The CLI hands over Path objects; the manifest and the keys hold strings.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, f.name, os.fspath(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolve(self) -> SourceRef:
        """The ``SourceRef`` these arguments name (no heavy imports; bad input raises UserInputError)."""
        model, task, weights, tokenizer = self.model, self.task, self.weights, self.tokenizer
        if model is None or model in ("builtin", BUILTIN_NAME):
            if weights:
                raise UserInputError("--weights applies to a module:function model, not the built-in default")
            return SourceRef(kind="builtin", location=BUILTIN_NAME, task=task, tokenizer=tokenizer)
        path = Path(model)
        if path.exists():
            if not path.is_dir():
                raise UserInputError(
                    f"MODEL {model} is a file; expected a Hugging Face model folder or package.module:function",
                    hint="pass the folder that holds config.json and the weights",
                )
            if weights:
                raise UserInputError("--weights applies to a module:function model; a Hugging Face folder holds its own weights")
            return SourceRef(kind="hf", location=str(path.resolve()), task=task, tokenizer=tokenizer)
        if ":" in model and not model.startswith((".", "/")):
            module_name, _, func = model.partition(":")
            if module_name and func.isidentifier():
                if weights and not Path(weights).is_file():
                    raise UserInputError(f"--weights {weights} does not exist", hint="pass the path of a saved state_dict")
                return SourceRef(
                    kind="factory",
                    location=model,
                    task=task or "custom",
                    weights=str(Path(weights).resolve()) if weights else None,
                    tokenizer=tokenizer,
                    app_dir=str(Path(self.app_dir or ".").resolve()),
                    num_heads=self.num_heads,
                    hidden_size=self.hidden_size,
                    num_layers=self.num_layers,
                )
        raise UserInputError(
            f"MODEL {model!r} is neither an existing folder nor a package.module:function reference",
            hint="pass a Hugging Face model folder, a factory like mypkg.models:build_bert, or nothing for the built-in MiniLM",
        )


SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(SourceArgs))


def field_schema() -> dict[str, tuple[type, bool]]:
    """name -> (value type, is a path), MODEL first: the TOML config checks source keys with this."""
    types = {"str | None": str, "int | None": int}
    fields = sorted(dataclasses.fields(SourceArgs), key=lambda f: f.name != "model")
    return {f.name: (types[f.type], bool(f.metadata.get("path"))) for f in fields}
