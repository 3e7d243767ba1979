"""`onnxforge build`: the whole pipeline as one command (export, then the later stages)."""

from __future__ import annotations

from pathlib import Path

from .cli_common import (
    AppDir, Force, HiddenSize, ModelArg, NumHeads, NumLayers, OutDir, Task, TokenizerPath, Weights, handle_errors,
)


@handle_errors
def build_command(
    model: ModelArg = None,
    out: OutDir = Path("artifacts/minilm"),
    task: Task = None,
    weights: Weights = None,
    tokenizer: TokenizerPath = None,
    app_dir: AppDir = None,
    num_heads: NumHeads = None,
    hidden_size: HiddenSize = None,
    num_layers: NumLayers = None,
    force: Force = False,
) -> None:
    """Run the pipeline on MODEL (the built-in MiniLM by default): export and check."""
    from .export.cli import export_command

    export_command.__wrapped__(
        model=model, out=out, task=task, weights=weights, tokenizer=tokenizer, app_dir=app_dir,
        num_heads=num_heads, hidden_size=hidden_size, num_layers=num_layers, force=force,
    )


COMMANDS = {"build": build_command}
