"""The OpenVINO engine: an IR (``.xml`` + ``.bin``) or an ONNX file compiled for the CPU.

It implements the same members as the ONNX Runtime engine (``engine``, ``device``,
``input_names``, ``output_names``, ``input_types``, ``run``, ``describe``), so the
runtime, smoke, serve and batch need nothing engine-specific.

Why these knobs: on CPUs with AMX or AVX512-BF16, OpenVINO's own default inference
precision is already bf16; ``precision`` says it explicitly (bf16 or f32) so that a
variant recorded as bf16 runs as bf16 and an fp32 comparison is really fp32.
``performance`` LATENCY (one stream, all cores on one request) suits serving and
per-call batches; THROUGHPUT splits the cores into streams for many requests in flight.

``openvino`` is imported lazily: without it, ``onnxforge --help`` still works and asking
for this engine fails with exit 2 and the command that installs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import CheckFailed, UserInputError

INSTALL_HINT = ("install it with `pip install openvino` (onnxforge depends on it on x86-64 and ARM64; other "
                "platforms have no wheel), or use --engine ort")
PRECISION_HINTS = ("bf16", "f32")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
# OpenVINO element type names -> ONNX Runtime's tensor type strings (the seam's vocabulary).
# OpenVINO element types -> the dtype names graph.signature writes ("float32", "int64", ...),
# and -> ONNX Runtime's type strings ("tensor(float)", ...), which engines report as input_types.
_SIGNATURE_TYPES = {"i64": "int64", "i32": "int32", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
                    "boolean": "bool"}
_ONNX_TYPES = {ov: f"tensor({'float' if name == 'float32' else name})" for ov, name in _SIGNATURE_TYPES.items()}
# The fused ops an IR can hold before compiling (what optimize.ov_rules writes).
FUSED_OP_TYPES = ("ScaledDotProductAttention",)


def require_openvino():
    """The ``openvino`` module, or UserInputError (exit 2) saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise UserInputError(f"the OpenVINO engine was asked for but the openvino package is not installed ({e})",
                             hint=INSTALL_HINT) from None
    return openvino


_CORE = None
_CORE_LOCK = threading.Lock()


def core():
    """One ``openvino.Core`` per process (it owns the plugins and their thread pools)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = require_openvino().Core()
        return _CORE


def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU OPTIMIZATION_CAPABILITIES (e.g. BF16, FP32, INT8)."""
    return tuple(str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def cpu_has_bf16() -> bool:
    """True where OpenVINO can compute in bf16 on this CPU (AMX or AVX512-BF16)."""
    return "BF16" in cpu_capabilities()


def require_bf16(what: str) -> None:
    """UserInputError (exit 2) when this CPU has no bf16 compute; ``what`` names the request."""
    if not cpu_has_bf16():
        raise UserInputError(
            f"{what} needs a CPU with bf16 compute (AMX or AVX512-BF16); OpenVINO reports only "
            f"{', '.join(cpu_capabilities())} here",
            hint="use --precision int8 or fp32 on this CPU, or build bf16 on a Sapphire Rapids (or newer) Xeon",
        )


@dataclass(frozen=True)
class OpenVINOOptions:
    """How to compile: precision hint (None: OpenVINO's default for the CPU), performance
    hint, and optionally the number of streams and threads."""

    precision: str | None = None
    performance: str = "LATENCY"
    streams: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISION_HINTS:
            raise UserInputError(f"OpenVINO inference precision {self.precision!r} is not known",
                                 hint=f"choose one of {', '.join(PRECISION_HINTS)}")
        if self.performance not in PERFORMANCE_HINTS:
            raise UserInputError(f"OpenVINO performance hint {self.performance!r} is not known",
                                 hint=f"choose one of {', '.join(PERFORMANCE_HINTS)}")
        for name in ("streams", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserInputError(f"OpenVINO {name} must be at least 1 (got {value})")

    def config(self) -> dict[str, str]:
        out = {"PERFORMANCE_HINT": self.performance}
        if self.precision:
            out["INFERENCE_PRECISION_HINT"] = self.precision
        if self.streams:
            out["NUM_STREAMS"] = str(self.streams)
        if self.threads:
            out["INFERENCE_NUM_THREADS"] = str(self.threads)
        return out


def compile_model(path: Path, options: OpenVINOOptions = OpenVINOOptions()):
    """``path`` (an IR .xml beside its .bin, or an .onnx) compiled for the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path} does not exist", hint="re-run the stage that writes it (optimize / build)")
    if options.precision == "bf16":
        require_bf16("OpenVINO bf16 inference")
    ov_core = core()
    try:
        model = ov_core.read_model(str(path))
        return ov_core.compile_model(model, "CPU", options.config())
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserInputError(f"OpenVINO cannot load {path.name}: {first}",
                             hint="the file may be corrupted or use ONNX Runtime-only ops; re-run the stage that wrote it") from None


def _port_name(port) -> str:
    names = port.get_names()
    return port.get_any_name() if names else str(port.get_index())


def _init_numpy_bridge() -> None:
    """Make OpenVINO's first numpy conversion here, on the loading thread.

    pybind11 sets up its numpy API on first use behind a call_once; two inference
    threads making their first call at the same moment can deadlock there (seen once:
    a batch job's two stream threads waited forever in that call_once on their first
    calls). After one conversion the call_once is never entered again.
    """
    import numpy as np

    require_openvino().Tensor(np.zeros(1, dtype=np.float32))


class OpenVINOEngine:
    """A compiled OpenVINO model on the CPU. Build it with ``OpenVINOEngine.open``.

    ``run`` is safe to call from several threads: each thread gets its own infer
    request (a request holds one call's buffers and is not re-entrant).
    """

    engine = "openvino"
    device = "cpu"

    def __init__(self, compiled, options: OpenVINOOptions, path: Path):
        self.compiled = compiled
        self.options = options
        self.path = path
        self.input_names = tuple(_port_name(p) for p in compiled.inputs)
        self.output_names = tuple(_port_name(p) for p in compiled.outputs)
        self.input_types = {_port_name(p): _ONNX_TYPES.get(p.get_element_type().get_type_name(),
                                                            p.get_element_type().get_type_name())
                            for p in compiled.inputs}
        self._ports = {_port_name(p): p for p in compiled.outputs}
        self._local = threading.local()
        _init_numpy_bridge()

    @classmethod
    def open(cls, path: Path, device: str = "cpu", *, options: OpenVINOOptions | None = None,
             **hints: Any) -> "OpenVINOEngine":
        """device must be cpu (auto means cpu here); hints are OpenVINOOptions fields."""
        if device == "cuda":
            raise CheckFailed("--device cuda was asked for but the OpenVINO engine runs on the CPU only",
                              hint="use --engine ort for CUDA, or --device cpu")
        if device not in ("cpu", "auto"):
            raise UserInputError(f"--device {device} is not known", hint="the OpenVINO engine runs on cpu")
        opts = options or OpenVINOOptions(**hints)
        return cls(compile_model(Path(path), opts), opts, Path(path))

    @property
    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    @property
    def inference_precision(self) -> str:
        """The precision the compiled model really computes in (bf16 or f32)."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    @property
    def parallel_calls(self) -> int:
        """The infer requests OpenVINO wants in flight: one per stream (1 under LATENCY)."""
        return max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "device": self.device, "providers": self.providers,
                "inference_precision": self.inference_precision, "performance_hint": self.options.performance,
                "streams": int(self.compiled.get_property("NUM_STREAMS")), "parallel_calls": self.parallel_calls}

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, feeds: dict[str, Any], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        import numpy as np

        names = list(outputs or self.output_names)
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UserInputError(f"the feeds lack the model inputs {missing}", hint=f"pass {list(self.input_names)}")
        request = self._request()
        request.infer({n: feeds[n] for n in self.input_names})
        # Copies: the request's output buffers are reused by its next call.
        return {n: np.array(request.get_tensor(self._ports[n]).data, dtype=np.float32) for n in names}


def describe_ir(path: Path) -> dict[str, Any]:
    """An IR's facts in ``graph.describe_model``'s keys (what package records per variant)."""
    from ..artifact import model_files

    ov = require_openvino()
    model = core().read_model(str(path))

    def ports(values) -> list[dict[str, Any]]:
        return [{"name": _port_name(p), "dtype": _SIGNATURE_TYPES.get(p.get_element_type().get_type_name(), "?"),
                 "dims": [None if d.is_dynamic else d.get_length() for d in p.get_partial_shape()]} for p in values]

    ops = model.get_ordered_ops()
    histogram: dict[str, int] = {}
    for op in ops:
        histogram[op.get_type_name()] = histogram.get(op.get_type_name(), 0) + 1
    constants = [op for op in ops if op.get_type_name() == "Constant"]
    return {
        "file": path.name,
        "sizes": {p.name: p.stat().st_size for p in model_files(path)},
        "opset": None, "ir_version": None, "producer": f"OpenVINO {ov.__version__}",
        "signature": {"inputs": ports(model.inputs), "outputs": ports(model.outputs)},
        "parameters": int(sum(int(np_prod(c.get_output_shape(0))) for c in constants)),
        "initializer_dtypes": sorted({c.get_output_element_type(0).get_type_name() for c in constants}),
        "nodes": len(ops), "op_histogram": dict(sorted(histogram.items())), "fused_ops": fused_ops(model),
        "quantized": histogram.get("FakeQuantize", 0) > 0,
    }


def fused_ops(model) -> dict[str, int]:
    """How many of each ``FUSED_OP_TYPES`` op an IR holds (those it has)."""
    types = [op.get_type_name() for op in model.get_ordered_ops()]
    return {t: types.count(t) for t in FUSED_OP_TYPES if t in types}


def np_prod(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out
