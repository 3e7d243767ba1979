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
from ..vocab import DEFAULT_ENGINE, ENGINE_OF_VARIANT, ENGINES


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
    # Optional: ``parallel_calls``, how many calls can usefully run at once from separate
    # threads (OpenVINO's streams under a throughput hint). Callers read it with
    # ``parallel_calls(engine)``; an engine without it gets one call at a time.

    def run(self, feeds: dict[str, Any], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Feeds by input name -> arrays by output name (``outputs``: these only, in order)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for reports: at least ``engine``, ``device`` and ``providers``."""
        ...


def open_engine(path: Path, device: str, *, engine: str = DEFAULT_ENGINE, **options: Any) -> Engine:
    """The engine named ``engine`` on ``path`` for ``device`` (cpu, cuda or auto).

    ``options`` are the engine's own (ORT: threads, optimization, config, io_binding;
    OpenVINO: precision, performance, streams, threads).
    A CUDA request that cannot be met raises ``CheckFailed``, never a silent CPU run.
    """
    if engine not in ENGINES:
        raise UserInputError(f"--engine {engine} is not known", hint=f"choose one of {', '.join(ENGINES)}")
    if Path(path).suffix == ".xml" and engine != "openvino":
        raise UserInputError(f"{Path(path).name} is an OpenVINO IR: the {engine} engine cannot run it",
                             hint="run it on the openvino engine (--engine openvino; for batch: --runtime-engine openvino), or pick another variant")
    if engine == "ort":
        from .ort import OrtEngine

        return OrtEngine.open(path, device, **options)
    from .openvino import OpenVINOEngine

    return OpenVINOEngine.open(path, device, **options)


def variant_engine(entry: dict[str, Any], variant: str, requested: str | None = None) -> str:
    """The engine a variant runs on: ``requested`` (--engine) if given, else the one its
    manifest entry records, else the vocabulary's default for that variant."""
    if requested is not None:
        if requested not in ENGINES:
            raise UserInputError(f"--engine {requested} is not known", hint=f"choose one of {', '.join(ENGINES)}")
        return requested
    return str(entry.get("engine") or ENGINE_OF_VARIANT.get(variant, DEFAULT_ENGINE))


def openvino_precision(entry: dict[str, Any]) -> str | None:
    """The inference precision an OpenVINO run of this variant uses: the one it was built
    and checked for (bf16, ov-int8), f32 for fp32 graphs (an fp32 variant stays fp32 even
    where OpenVINO's CPU default would be bf16), else OpenVINO's default."""
    if entry.get("inference_precision"):
        return str(entry["inference_precision"])
    return "f32" if entry.get("precision", "fp32") == "fp32" else None


def parallel_calls(engine: Engine) -> int:
    """How many calls to keep in flight on ``engine`` (1 unless it says more)."""
    return max(1, int(getattr(engine, "parallel_calls", 1)))
