"""A Triton Inference Server model repository for one model variant.

Layout (https://docs.nvidia.com/deeplearning/triton-inference-server, "Model Repository")::

    triton/<model>/config.pbtxt
    triton/<model>/1/model.onnx        (+ model.onnx.data when the weights are external)

``config.pbtxt`` is protobuf text format of ``inference.ModelConfig``: platform
``onnxruntime_onnx``, the graph's inputs and outputs with Triton data types and dims
that leave out the batch axis (``max_batch_size`` > 0 makes Triton add it), -1 for
every other dynamic axis, and dynamic batching so concurrent requests are batched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CheckFailed

TRITON_DIR = "triton"
PLATFORM = "onnxruntime_onnx"
DEFAULT_MAX_BATCH_SIZE = 64
QUEUE_DELAY_US = 100

# ONNX element type names (graph.signature) -> inference.DataType.
TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "bool": "TYPE_BOOL",
}


def model_name(text: str) -> str:
    """A Triton model name (a folder name) from a model's name: [a-z0-9_-] only."""
    name = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_-")
    return name or "model"


def _tensor_dims(dims: list, batched: bool) -> list[int]:
    rest = dims[1:] if batched else dims
    return [d if isinstance(d, int) and d > 0 else -1 for d in rest]


def _batched(signature: dict[str, list[dict[str, Any]]]) -> bool:
    """True when every input and output has a dynamic first axis (the batch)."""
    values = signature["inputs"] + signature["outputs"]
    return all(v["dims"] and not isinstance(v["dims"][0], int) for v in values)


def config_pbtxt(name: str, signature: dict[str, list[dict[str, Any]]], *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> str:
    """The config.pbtxt text for a graph signature (``onnxforge.graph.signature``)."""
    batched = _batched(signature)

    def tensors(values: list[dict[str, Any]]) -> str:
        blocks = []
        for v in values:
            if v["dtype"] not in TRITON_TYPES:
                raise CheckFailed(f"{v['name']} has dtype {v['dtype']}, which has no Triton type here",
                                  hint=f"supported: {', '.join(TRITON_TYPES)}")
            dims = ", ".join(str(d) for d in _tensor_dims(v["dims"], batched))
            blocks.append(
                "  {\n"
                f'    name: "{v["name"]}"\n'
                f"    data_type: {TRITON_TYPES[v['dtype']]}\n"
                f"    dims: [ {dims} ]\n"
                "  }"
            )
        return ",\n".join(blocks)

    lines = [
        f'name: "{name}"',
        f'platform: "{PLATFORM}"',
        f"max_batch_size: {max_batch_size if batched else 0}",
        "input [",
        tensors(signature["inputs"]),
        "]",
        "output [",
        tensors(signature["outputs"]),
        "]",
    ]
    if batched:
        # Dynamic batching needs a batch axis; without one Triton rejects the block.
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}"]
    return "\n".join(lines) + "\n"


def triton_files(name: str, model_files: list[Path], signature, *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> dict[str, Path | bytes]:
    """Archive entries for the repository: config.pbtxt plus the version-1 model files.

    Triton's ONNX Runtime backend loads ``1/model.onnx`` by default; an external-data
    file keeps the name the graph refers to.
    """
    files: dict[str, Path | bytes] = {
        f"{TRITON_DIR}/{name}/config.pbtxt": config_pbtxt(name, signature, max_batch_size=max_batch_size).encode()
    }
    for path in model_files:
        target = "model.onnx" if path.suffix == ".onnx" else path.name
        files[f"{TRITON_DIR}/{name}/1/{target}"] = path
    return files


# -- checking a config.pbtxt --------------------------------------------------------------


def load_model_config_proto():
    """``inference.ModelConfig`` from tritonclient's generated module, or None.

    tritonclient.grpc's ``__init__`` refuses to import without grpcio, but the
    generated ``model_config_pb2`` needs only protobuf, so it is loaded from its file.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("tritonclient")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("onnxforge_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception:  # a protobuf runtime too old or new for the generated code
        return None
    return module.ModelConfig


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([A-Za-z_][A-Za-z0-9_]*)|(-?\d+(?:\.\d+)?))')


def parse_pbtxt(text: str) -> dict[str, list]:
    """A strict parser for the subset of protobuf text format config.pbtxt uses.

    Returns ``{field: [values...]}`` (every field repeated-able); a message value is
    another such dict. Raises ValueError on anything it does not understand, so a
    malformed file fails the test instead of passing a lenient regex.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected text at offset {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        comment, string, punct, ident, number = m.groups()
        if comment:
            continue
        if string is not None:
            tokens.append(("str", bytes(string[1:-1], "utf-8").decode("unicode_escape")))
        elif punct:
            tokens.append(("p", punct))
        elif ident:
            tokens.append(("id", ident))
        else:
            tokens.append(("num", number))
    i = 0

    def peek():
        return tokens[i] if i < len(tokens) else ("eof", "")

    def take(kind=None, value=None):
        nonlocal i
        tok = peek()
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            raise ValueError(f"expected {value or kind}, found {tok[1]!r} (token {i})")
        i += 1
        return tok

    def scalar():
        kind, value = take()
        if kind == "str":
            return value
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "id":
            return value  # an enum value such as TYPE_FP32
        raise ValueError(f"expected a value, found {value!r}")

    def value_of():
        if peek() == ("p", "{"):
            take("p", "{")
            msg = message("}")
            take("p", "}")
            return msg
        return scalar()

    def message(end: str | None) -> dict[str, list]:
        fields: dict[str, list] = {}
        while peek()[0] != "eof" and peek() != ("p", end):
            _, name = take("id")
            colon = peek() == ("p", ":")
            if colon:
                take("p", ":")
            elif peek() not in (("p", "{"), ("p", "[")):
                # Only message values may leave out the colon (`input [ {...} ]`, `x { }`).
                raise ValueError(f"field {name}: expected ':', '{{' or '['")
            if peek() == ("p", "["):
                take("p", "[")
                items = []
                while peek() != ("p", "]"):
                    items.append(value_of())
                    if peek() == ("p", ","):
                        take("p", ",")
                    elif peek() != ("p", "]"):
                        raise ValueError(f"field {name}: expected ',' or ']'")
                take("p", "]")
                fields.setdefault(name, []).extend(items)
            else:
                fields.setdefault(name, []).append(value_of())
            if peek() in (("p", ","), ("p", ";")):
                take()
        return fields

    parsed = message(None)
    if peek()[0] != "eof":
        raise ValueError(f"unexpected {peek()[1]!r} after the last field")
    return parsed


def check_config(text: str, signature: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Problems with a config.pbtxt for this graph signature (empty when it is right).

    Parsed with tritonclient's ``ModelConfig`` schema when it imports (unknown fields
    and bad enum values are errors there), and always with the strict parser above
    for the values onnxforge promises.
    """
    problems: list[str] = []
    proto = load_model_config_proto()
    if proto is not None:
        from google.protobuf import text_format

        try:
            text_format.Parse(text, proto())
        except text_format.ParseError as e:
            problems.append(f"not a valid inference.ModelConfig: {e}")
    try:
        cfg = parse_pbtxt(text)
    except ValueError as e:
        return problems + [f"config.pbtxt does not parse: {e}"]

    def one(fields, key):
        values = fields.get(key, [])
        return values[0] if len(values) == 1 else None

    if one(cfg, "platform") != PLATFORM:
        problems.append(f"platform is {one(cfg, 'platform')!r}, expected {PLATFORM!r}")
    batched = _batched(signature)
    mbs = one(cfg, "max_batch_size")
    if not isinstance(mbs, int) or (batched and mbs <= 0) or (not batched and mbs != 0):
        problems.append(f"max_batch_size is {mbs!r}")
    if batched and "dynamic_batching" not in cfg:
        problems.append("no dynamic_batching block")
    for key, values in (("input", signature["inputs"]), ("output", signature["outputs"])):
        got = cfg.get(key, [])
        if [one(t, "name") for t in got] != [v["name"] for v in values]:
            problems.append(f"{key} names {[one(t, 'name') for t in got]} != graph {[v['name'] for v in values]}")
            continue
        for t, v in zip(got, values):
            if one(t, "data_type") != TRITON_TYPES.get(v["dtype"]):
                problems.append(f"{v['name']}: data_type {one(t, 'data_type')} for ONNX {v['dtype']}")
            if t.get("dims") != _tensor_dims(v["dims"], batched):
                problems.append(f"{v['name']}: dims {t.get('dims')} for graph dims {v['dims']}")
    return problems
