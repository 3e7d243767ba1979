"""Reading ONNX graphs: op histograms, fused-op counts, parameters, I/O signature."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

# ONNX Runtime contrib ops that a transformer fusion produces (com.microsoft domain),
# plus quantized forms. A fully fused BERT has, per layer, one Attention (or
# MultiHeadAttention), two SkipLayerNormalization and one BiasGelu/FastGelu/Gelu.
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "EmbedLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "RotaryEmbedding",
    "QAttention",
    "QOrderedAttention",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QGemm",
)
QUANTIZED_OPS = ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulInteger",
                 "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm")

_DTYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 16: "bfloat16", 9: "bool"}


def load_graph(path: Path):
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        from .errors import UserInputError

        raise UserInputError(f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    check_external_data(model, Path(path))
    return model


def check_external_data(model, path: Path) -> None:
    """Every weight stored outside the graph lies inside the model's folder and its data file.

    A truncated or missing ``model.onnx.data`` otherwise surfaces deep inside a later
    tool as an unrelated error, or not at all until the weights are read.
    """
    from .errors import UserInputError

    folder = path.resolve().parent
    sizes: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or folder not in target.parents:
            raise UserInputError(f"{path.name}: weight {tensor.name} points outside the model's folder ({location!r})",
                                 hint="the model file is damaged or was not written by onnxforge; re-export it")
        if location not in sizes:
            if not target.is_file():
                raise UserInputError(f"{path.name} keeps its weights in {location}, which is missing from {folder}",
                                     hint="copy the .onnx.data file beside the model, or re-export it")
            sizes[location] = target.stat().st_size
        try:
            end = int(info.get("offset", 0)) + int(info.get("length", 0))
        except ValueError:
            raise UserInputError(f"{path.name}: weight {tensor.name} has a malformed external-data record") from None
        if end > sizes[location]:
            raise UserInputError(
                f"{location} is truncated: weight {tensor.name} ends at byte {end} but the file has {sizes[location]}",
                hint="the data file was cut short (an interrupted copy?); copy it again or re-export the model",
            )


def op_histogram(model) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items(), key=lambda kv: (-kv[1], kv[0])))


def fused_counts(model) -> dict[str, int]:
    hist = Counter(n.op_type for n in model.graph.node)
    return {op: hist[op] for op in FUSED_OPS if hist[op]}


def is_quantized(model) -> bool:
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


def parameter_count(model) -> int:
    total = 0
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        total += n
    return total


def initializer_dtypes(model) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for t in model.graph.initializer:
        counts[_DTYPE_NAMES.get(t.data_type, str(t.data_type))] += 1
    return dict(counts)


def signature(model) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs with dtype and dims (names for dynamic axes)."""

    def describe(values):
        out = []
        for v in values:
            tt = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in tt.shape.dim]
            out.append({"name": v.name, "dtype": _DTYPE_NAMES.get(tt.elem_type, str(tt.elem_type)), "dims": dims})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def opset(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def describe_model(path: Path) -> dict[str, Any]:
    from .artifact import model_files

    model = load_graph(path)
    return {
        "file": path.name,
        "sizes": {p.name: p.stat().st_size for p in model_files(path)},
        "opset": opset(model),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "signature": signature(model),
        "parameters": parameter_count(model),
        "initializer_dtypes": initializer_dtypes(model),
        "nodes": len(model.graph.node),
        "op_histogram": op_histogram(model),
        "fused_ops": fused_counts(model),
        "quantized": is_quantized(model),
    }
