"""Classify what the user typed as MODEL (``resolve_source``) and load it (``load_source``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .ref import BUILTIN_NAME, LoadedModel, SourceRef


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

        loaded = load_factory(ref)
    else:
        raise UserInputError(f"unknown model source kind {ref.kind!r} in the manifest", hint="re-run `onnxforge export`")
    if ref.tokenizer:
        from ..tokenizer import collect_tokenizer_files

        loaded.tokenizer_files = collect_tokenizer_files(Path(ref.tokenizer))
    return loaded
