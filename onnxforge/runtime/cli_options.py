"""Typer option aliases shared by the commands that load a ``Runtime`` (smoke, serve, batch)."""

from __future__ import annotations

from typing import Annotated

import typer

MaxLength = Annotated[int | None, typer.Option("--max-length", help="Truncate texts to this many tokens (default: the tokenizer's model_max_length, at most the model's positions).")]
Threads = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime intra-op threads (default: one per physical core).")]
Engine = Annotated[str | None, typer.Option("--engine", help="ort or openvino (default: the engine the variant records: openvino for bf16 and ov-int8, ort otherwise).", show_default=False)]
# batch's --engine chooses the executor (local or Ray); the inference engine is --runtime-engine there.
RuntimeEngine = Annotated[str | None, typer.Option("--runtime-engine", help="Inference engine: ort or openvino (default: the engine the variant records).", show_default=False)]
Performance = Annotated[str, typer.Option(
    "--performance", help="OpenVINO: throughput (one stream per core group, small calls side by side: more "
    "requests/s and a shorter tail under load, single requests slower) or latency (one call on every core: the "
    "fastest single request). ONNX Runtime variants ignore it.")]
