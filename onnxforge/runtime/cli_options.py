"""Typer option aliases shared by the commands that load a ``Runtime`` (smoke, serve, batch)."""

from __future__ import annotations

from typing import Annotated

import typer

MaxLength = Annotated[int | None, typer.Option("--max-length", help="Truncate texts to this many tokens (default: the tokenizer's model_max_length, at most the model's positions).")]
Threads = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime intra-op threads (default: one per physical core).")]
