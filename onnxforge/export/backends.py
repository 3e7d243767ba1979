"""The two torch -> ONNX exporters, their captured output, and the user's I/O names.

dynamo (``torch.onnx.export(..., dynamo=True)``) is the default: it is torch's
supported exporter since 2.9 (``dynamo=False`` is deprecated upstream), it exports
modules TorchScript cannot (``nn.TransformerEncoder``'s fast path), and onnxscript's
ort_fusions fuse its graphs. TorchScript stays selectable (``--exporter torchscript``):
onnxruntime.transformers' BERT optimizer fuses its graphs fully, EmbedLayerNormalization
included.

Exporters print pages of their own (graph dumps, diagnostics) on failure. That text
goes to a log file; the user sees one line naming the cause and the log.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserInputError
from ..inputs import random_inputs
from ..spec import ModelSpec

TRACE_SHAPE = (2, 16)


def trace_inputs(spec: ModelSpec):
    import torch

    feeds = random_inputs(spec, *TRACE_SHAPE, seed=7)
    return tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)


def root_cause(e: BaseException) -> str:
    """The innermost exception's first line, without the exporter's colour codes."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:400] if text else ''}"


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Send everything the exporter writes (Python and C++, stdout and stderr) to a buffer.

    File-descriptor level, because TorchScript's C++ side prints graph dumps straight
    to fd 2. Warnings are recorded into the buffer too. With ONNXFORGE_DEBUG set the
    output goes to the terminal as usual.
    """
    import logging
    import warnings

    buffer = io.StringIO()
    if os.environ.get("ONNXFORGE_DEBUG"):
        yield buffer
        return
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            text_sink = io.TextIOWrapper(open(os.dup(sink.fileno()), "wb"), encoding="utf-8", errors="replace",
                                         write_through=True)
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(text_sink), \
                    contextlib.redirect_stderr(text_sink):
                warnings.simplefilter("always")
                try:
                    yield buffer
                finally:
                    for w in caught:
                        text_sink.write(f"warning: {w.category.__name__}: {w.message}\n")
                    text_sink.flush()
                    text_sink.close()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            logger.setLevel(level)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", errors="replace"))


def write_failure_log(log_path: Path, exporter: str, model_name: str, output: str, error: BaseException) -> Path:
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    log_path.write_text(
        f"onnxforge: the {exporter} exporter failed on {model_name}\n\n"
        f"== exporter output ==\n{output}\n== traceback ==\n{text}",
        encoding="utf-8",
    )
    return log_path


def export_torchscript(module: Any, spec: ModelSpec, path: Path, opset: int) -> None:
    import torch

    torch.onnx.export(
        module,
        trace_inputs(spec),
        str(path),
        dynamo=False,
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        dynamic_axes=spec.dynamic_axes(),
        opset_version=opset,
        do_constant_folding=True,
    )


def export_dynamo(module: Any, spec: ModelSpec, path: Path, opset: int) -> None:
    """Export with torch.export, then give the graph's inputs and outputs the spec's names.

    The names are set after export, not passed as ``output_names``: the exporter names
    internal values after the aten op that made them (``embedding``, ``linear``, ...), and
    renaming an output to such a name produces a graph that is not in SSA form.
    """
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=spec.max_positions)
    program = torch.onnx.export(
        module,
        trace_inputs(spec),
        dynamo=True,
        dynamic_shapes=tuple({0: batch, 1: seq} for _ in spec.input_names),
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    name_graph_io(program.model, spec.input_names, spec.output_names)
    program.save(str(path), external_data=True)


def name_graph_io(model, input_names, output_names) -> None:
    """Rename an onnx_ir graph's inputs and outputs, moving internal values out of the way."""
    import onnx_ir as ir

    graph = model.graph
    if len(graph.inputs) != len(input_names) or len(graph.outputs) != len(output_names):
        raise UserInputError(
            f"the exported graph has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs, "
            f"the model spec {len(input_names)} and {len(output_names)}",
        )
    # A value returned twice, or an input returned as is, needs its own output value.
    seen: set[int] = {id(v) for v in graph.inputs}
    for i, value in enumerate(list(graph.outputs)):
        if id(value) in seen:
            node = ir.node("Identity", inputs=[value])
            graph.append(node)
            graph.outputs[i] = node.outputs[0]
            node.outputs[0].shape, node.outputs[0].type = value.shape, value.type
        seen.add(id(graph.outputs[i]))
    wanted = dict(zip((id(v) for v in [*graph.inputs, *graph.outputs]), [*input_names, *output_names]))
    taken = set(wanted.values())
    values = [*graph.inputs, *(v for node in graph for v in node.outputs), *graph.initializers.values()]
    counter = 0
    for value in values:
        if id(value) not in wanted and value.name in taken:
            counter += 1
            while f"{value.name}__{counter}" in taken:
                counter += 1
            new = f"{value.name}__{counter}"
            if value.is_initializer():
                graph.initializers.pop(value.name)
                value.name = new
                graph.initializers[new] = value
            else:
                value.name = new
    for value in [*graph.inputs, *graph.outputs]:
        value.name = wanted[id(value)]
