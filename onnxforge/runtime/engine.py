"""The engine seam: what ``Runtime`` needs from whatever executes the graph.

``Runtime`` owns the tokenizer, the checks and the result shaping; an engine only
runs feeds through one model file on one device. ONNX Runtime is ``ort.OrtEngine``;
another engine (OpenVINO) implements the same few members and is picked in
``open_engine``, so smoke, serve and batch need no change to use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from ..errors import UserInputError
from ..vocab import DEFAULT_ENGINE, ENGINES


@runtime_checkable
class Engine(Protocol):
    """One loaded model file, ready to run."""

    # Which engine this is (a name from vocab.ENGINES).
    engine: str
    # The device it really runs on ("cpu" or "cuda"), whatever was asked for.
    device: str
    # The graph's input and output names, and each input's ONNX element type
    # ("tensor(int64)"), checked against the manifest's spec at load.
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_types: dict[str, str]

    def run(self, feeds: dict[str, Any], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Feeds by input name -> arrays by output name (``outputs``: these only, in order)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for reports: at least ``engine``, ``device`` and ``providers``."""
        ...


def open_engine(path: Path, device: str, *, engine: str = DEFAULT_ENGINE, **options: Any) -> Engine:
    """The engine named ``engine`` on ``path`` for ``device`` (cpu, cuda or auto).

    ``options`` are the engine's own (ORT: threads, optimization, config, io_binding).
    A CUDA request that cannot be met raises ``CheckFailed``, never a silent CPU run.
    """
    if engine not in ENGINES:
        raise UserInputError(f"--engine {engine} is not known", hint=f"choose one of {', '.join(ENGINES)}")
    if engine == "ort":
        from .ort import OrtEngine

        return OrtEngine.open(path, device, **options)
    raise UserInputError(f"the {engine} engine cannot run variants in this version of onnxforge",
                         hint=f"use --engine {DEFAULT_ENGINE}")
