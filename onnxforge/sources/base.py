"""Classify what the user typed as MODEL (``resolve_source``) and load it (``load_source``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .args import SourceArgs
from .ref import LoadedModel, SourceRef


def resolve_source(model: str | None = None, **fields: Any) -> SourceRef:
    """Classify what the user typed as MODEL into a ``SourceRef`` (no heavy imports).

    ``fields``: the other ``SourceArgs`` fields (task, weights, tokenizer, app_dir, ...).
    """
    return SourceArgs(model=model, **fields).resolve()


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
