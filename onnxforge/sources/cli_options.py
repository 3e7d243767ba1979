"""Typer option aliases for the ``SourceArgs`` fields, shared by `export` and `build`.

Light on purpose (typer only): every stage CLI is imported for `onnxforge --help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="Hugging Face model folder, package.module:function returning an nn.Module, "
        "or nothing for the built-in MiniLM-L6.",
        show_default=False,
    ),
]
Task = Annotated[str | None, typer.Option("--task", help="feature-extraction, sequence-classification, token-classification, question-answering (default: from config.json).")]
Weights = Annotated[Path | None, typer.Option("--weights", help="state_dict file for a module:function model.")]
TokenizerPath = Annotated[Path | None, typer.Option("--tokenizer", help="tokenizer.json or a folder holding it.")]
AppDir = Annotated[Path | None, typer.Option("--app-dir", help="Folder to import a module:function model from (default: the working directory).")]
NumHeads = Annotated[int | None, typer.Option("--num-heads", help="Attention heads, when the model has no transformers config.")]
HiddenSize = Annotated[int | None, typer.Option("--hidden-size", help="Hidden size, when the model has no transformers config.")]
NumLayers = Annotated[int | None, typer.Option("--num-layers", help="Encoder layers, when the model has no transformers config.")]
