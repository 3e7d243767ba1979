from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..spec import ModelSpec

BUILTIN_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class SourceRef:
    """How to rebuild a model: recorded in the manifest, read back by validate.

    kind: ``builtin`` (the packaged MiniLM), ``hf`` (a Hugging Face model folder) or
    ``factory`` (``package.module:function`` returning an ``nn.Module``).
    """

    kind: str
    location: str
    task: str | None = None
    weights: str | None = None
    tokenizer: str | None = None
    app_dir: str | None = None
    num_heads: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

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


def resolve_source(
    model: str | None,
    *,
    task: str | None = None,
    weights: str | None = None,
    tokenizer: str | None = None,
    app_dir: str | None = None,
    num_heads: int | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
) -> SourceRef:
    """Classify what the user typed as MODEL into a ``SourceRef`` (no heavy imports)."""
    overrides = dict(num_heads=num_heads, hidden_size=hidden_size, num_layers=num_layers)
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
                app_dir=str(Path(app_dir or ".").resolve()),
                **overrides,
            )
    raise UserInputError(
        f"MODEL {model!r} is neither an existing folder nor a package.module:function reference",
        hint="pass a Hugging Face model folder, a factory like mypkg.models:build_bert, or nothing for the built-in MiniLM",
    )


def load_source(ref: SourceRef, *, attn_implementation: str | None = None) -> LoadedModel:
    """Build the PyTorch model a ``SourceRef`` names (imports torch)."""
    if ref.kind == "builtin":
        from .builtin import load_builtin

        loaded = load_builtin(ref, attn_implementation)
    elif ref.kind == "hf":
        from .hf import load_hf_folder

        loaded = load_hf_folder(ref, attn_implementation)
    elif ref.kind == "factory":
        from .factory import load_factory

        loaded = load_factory(ref, attn_implementation)
    else:
        raise UserInputError(f"unknown model source kind {ref.kind!r} in the manifest", hint="re-run `onnxforge export`")
    if ref.tokenizer:
        from ..tokenizer import collect_tokenizer_files

        loaded.tokenizer_files = collect_tokenizer_files(Path(ref.tokenizer))
    return loaded
