"""Find where the artifact's own graph first departs from PyTorch.

PyTorch side: forward hooks on the embeddings module and on each encoder layer give
the hidden state after each stage (what ``output_hidden_states`` returns for a
transformers model, but hooks also work for custom modules).

ONNX side: a copy of the variant's graph, written to a temporary file (the artifact
is never touched), with the outputs of its normalization and Add nodes exposed as
extra graph outputs. Those are the tensors that can hold a hidden state in every
graph onnxforge produces: LayerNormalization in a TorchScript or dynamo export,
EmbedLayerNormalization and SkipLayerNormalization after ORT's fusions, the final
Add of a decomposed LayerNorm in a custom model.

Matching is by value, not by name: for each PyTorch stage, the exposed tensor with
the smallest relative L2 error on real tokens (after the previous stage's match, in
graph order) is its counterpart. Names differ between exporters and fusions; values
do not, so this also works when a weight was changed inside the ONNX file after
export (the corrupted layer's best match is then far off, while the earlier layers
still match to fp32 rounding).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import ModelSpec
from ..vocab import short_error
from .options import LOCALIZE_FLOOR

# Node types whose first output can be a hidden state (see the module docstring).
CANDIDATE_OPS = (
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "EmbedLayerNormalization",
    "QEmbedLayerNormalization",  # what onnxruntime.quantization makes of EmbedLayerNormalization
    "Add",
)
_FLOAT_TYPES = (1, 10, 16)  # float32, float16, bfloat16
# Weights above this are saved as external data in the temporary copy (protobuf limit).
_INLINE_LIMIT = 1536 * 1024**2


# -- PyTorch side ----------------------------------------------------------------------


def reference_modules(module: Any, num_layers: int) -> tuple[tuple[str, Any] | None, list[tuple[str, Any]]]:
    """(embeddings, [encoder layers]) as (qualified name, module) in the PyTorch model.

    The layers are the ``nn.ModuleList`` with ``num_layers`` entries (named ``layer`` or
    ``layers`` when several qualify); the embeddings the sibling ``embeddings`` module
    of the encoder that holds them (BERT's layout), or any other ``*embeddings`` module.
    """
    import torch

    lists = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == num_layers and num_layers > 0]
    if not lists:
        return None, []

    def rank(item):
        name, m = item
        named = name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "blocks")
        return (named, sum(p.numel() for p in m.parameters()))

    list_name, layer_list = max(lists, key=rank)
    layers = [(f"{list_name}.{i}", layer) for i, layer in enumerate(layer_list)]
    embeddings = None
    parts = list_name.split(".")
    candidates = {n: m for n, m in module.named_modules()
                  if n.rsplit(".", 1)[-1].endswith("embeddings") and not isinstance(m, torch.nn.Embedding)}
    for depth in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:depth])
        name = f"{prefix}.embeddings" if prefix else "embeddings"
        if name in candidates:
            embeddings = (name, candidates[name])
            break
    if embeddings is None and candidates:
        embeddings = next(iter(candidates.items()))
    return embeddings, layers


def torch_stages(loaded, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Hidden state after the embeddings and after each encoder layer, from PyTorch."""
    import torch

    spec = loaded.spec
    embeddings, layers = reference_modules(loaded.module, spec.num_layers)
    named = ([("embeddings", embeddings)] if embeddings else []) + [(f"encoder layer {i}", l) for i, l in enumerate(layers)]
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(stage):
        def hook(_module, _inputs, output):
            tensor = output
            if isinstance(output, (tuple, list)):
                tensor = next((o for o in output if isinstance(o, torch.Tensor)), None)
            elif not isinstance(output, torch.Tensor):
                tensor = getattr(output, "last_hidden_state", None)
            if tensor is not None and stage not in captured:
                captured[stage] = tensor.detach().float().cpu()
        return hook

    try:
        for stage, (_, mod) in named:
            handles.append(mod.register_forward_hook(hook_for(stage)))
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names]
        with torch.no_grad():
            loaded.module(*args)
    finally:
        for h in handles:
            h.remove()
    stages = []
    for stage, (qualname, _) in named:
        if stage in captured and captured[stage].dim() == 3:
            stages.append({"stage": stage, "torch_module": qualname, "value": captured[stage].numpy()})
    return stages


# -- ONNX side -------------------------------------------------------------------------


def _value_types(model) -> dict[str, tuple[int, int | None]]:
    """name -> (element type, rank or None) from ONNX shape inference plus propagation.

    onnx's shape inference does not know ORT's contrib ops (SkipLayerNormalization,
    Attention...), so an output it leaves untyped takes the type of the node's first
    floating-point input: true for every op this module exposes.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is a help, not a requirement
        inferred = model
    types: dict[str, tuple[int, int | None]] = {}
    for v in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = v.type.tensor_type
        if tt.elem_type:
            types[v.name] = (tt.elem_type, len(tt.shape.dim) if tt.HasField("shape") else None)
    for t in model.graph.initializer:
        types[t.name] = (t.data_type, len(t.dims))
    for node in model.graph.node:
        source = next((types[i] for i in node.input if i in types and types[i][0] in _FLOAT_TYPES), None)
        for out in node.output:
            if out and out not in types and source is not None:
                types[out] = (source[0], None)
    return types


def exposed_copy(model_path: Path, folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Write a copy of the graph with candidate hidden states as outputs; return it and them."""
    import onnx

    model = onnx.load(str(model_path))
    types = _value_types(model)
    existing = {o.name for o in model.graph.output}

    def collect(ops):
        found = []
        for index, node in enumerate(model.graph.node):
            if ops is not None and node.op_type not in ops:
                continue
            name = node.output[0] if node.output else ""
            elem, rank = types.get(name, (0, None))
            if name and elem in _FLOAT_TYPES and rank in (None, 2, 3):
                found.append({"tensor": name, "node": node.name, "op": node.op_type, "index": index, "elem": elem})
        return found

    candidates = collect(CANDIDATE_OPS) or collect(None)
    for c in candidates:
        if c["tensor"] not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(c["tensor"], c["elem"], None))
    path = folder / "exposed.onnx"
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights > _INLINE_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="exposed.onnx.data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path, candidates


# -- matching --------------------------------------------------------------------------


def _compare(reference: np.ndarray, actual: np.ndarray, keep: np.ndarray) -> dict[str, float] | None:
    if actual.size != reference.size or actual.shape[-1] != reference.shape[-1]:
        return None
    actual = actual.reshape(reference.shape)
    r = reference[keep].astype(np.float64)
    a = actual[keep].astype(np.float64)
    if not np.isfinite(a).all():
        return {"rel_error": float("inf"), "max_abs": float("inf"), "cosine": float("nan")}
    norm_r, norm_a = np.linalg.norm(r), np.linalg.norm(a)
    return {
        "rel_error": float(np.linalg.norm(a - r) / max(norm_r, 1e-12)),
        "max_abs": float(np.abs(a - r).max()) if r.size else 0.0,
        "cosine": float((r * a).sum() / max(norm_r * norm_a, 1e-30)),
    }


def match_stages(stages: list[dict[str, Any]], outputs: dict[str, np.ndarray], candidates: list[dict[str, Any]],
                 keep: np.ndarray, floor: float) -> list[dict[str, Any]]:
    """For each PyTorch stage, the exposed ONNX tensor that matches it best, in graph order."""
    rows = []
    after = -1
    for st in stages:
        best = None
        for c in candidates:
            if c["index"] <= after or c["tensor"] not in outputs:
                continue
            m = _compare(st["value"], outputs[c["tensor"]], keep)
            if m is not None and (best is None or m["rel_error"] < best[1]["rel_error"]):
                best = (c, m)
        row = {"stage": st["stage"], "torch_module": st["torch_module"]}
        if best is None:
            row.update(onnx_tensor=None, onnx_node=None, onnx_op=None, rel_error=None, max_abs=None, cosine=None)
        else:
            c, m = best
            row.update(onnx_tensor=c["tensor"], onnx_node=c["node"], onnx_op=c["op"], **m)
            # Only a confident match moves the search window on: a corrupted stage's
            # best guess may be a wrong tensor further down the graph.
            if m["rel_error"] <= floor:
                after = c["index"]
        rows.append(row)
    return rows


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2e}"


def localize(model_path: Path, loaded, spec: ModelSpec, feeds: dict[str, np.ndarray], precision: str,
             device: str, group: str, trace_shape: list[int] | None = None) -> dict[str, Any]:
    """Name the first stage (embeddings, encoder layer K) whose hidden state departs."""
    return _clean(_localize(model_path, loaded, spec, feeds, precision, device, group, trace_shape))


def _runs_at(session, spec: ModelSpec, shape: list[int], run_options) -> bool:
    from ..inputs import random_inputs

    feeds = random_inputs(spec, int(shape[0]), int(shape[1]), seed=7)
    graph_inputs = {i.name for i in session.get_inputs()}
    try:
        session.run([session.get_outputs()[0].name], {k: v for k, v in feeds.items() if k in graph_inputs}, run_options)
    except Exception:  # only asking whether it runs
        return False
    return True


def _localize(model_path: Path, loaded, spec: ModelSpec, feeds: dict[str, np.ndarray], precision: str,
              device: str, group: str, trace_shape: list[int] | None) -> dict[str, Any]:
    from ..runners import make_session

    shape = [int(d) for d in feeds["input_ids"].shape]
    base = {"group": group, "feeds_shape": shape, "precision": precision}
    stages = torch_stages(loaded, feeds)
    if not stages:
        return base | {
            "status": "unavailable",
            "message": f"localization unavailable: no module list of {spec.num_layers} encoder layers was found in "
                       f"the PyTorch model ({type(getattr(loaded.module, 'model', loaded.module)).__name__})",
            "stages": [],
        }
    with tempfile.TemporaryDirectory(prefix="onnxforge-localize-") as tmp:
        path, candidates = exposed_copy(model_path, Path(tmp))
        session, _ = make_session(path, device)
        graph_inputs = {i.name for i in session.get_inputs()}
        names = [c["tensor"] for c in candidates]
        import onnxruntime as ort

        run_options = ort.RunOptions()
        run_options.log_severity_level = 4  # a failure is reported by the result, not logged
        try:
            values = session.run(names, {k: v for k, v in feeds.items() if k in graph_inputs}, run_options)
        except Exception as e:  # the graph cannot run at this shape: that is the finding

            text = short_error(e)
            node = re.search(r"Name:'([^']+)'", text)
            where = f" in node '{node.group(1)}'" if node else ""
            message = f"ONNX Runtime cannot run the graph at batch {shape[0]} x sequence {shape[1]}{where}"
            traced = bool(trace_shape) and list(trace_shape) != shape and _runs_at(session, spec, trace_shape, run_options)
            if traced:
                message += (f", though it runs at the traced shape {trace_shape[0]}x{trace_shape[1]}: the export "
                            "baked that shape into the graph (a Python int taken from a tensor's size in forward)")
            return base | {
                "status": "onnx_failed",
                "onnx_node": node.group(1) if node else None,
                "runs_at_trace_shape": traced,
                "error": text,
                "message": message,
                "stages": [],
            }
        del session
    outputs = {n: np.asarray(v) for n, v in zip(names, values)}
    mask = feeds.get("attention_mask")
    keep = mask.astype(bool) if mask is not None else np.ones(shape, dtype=bool)
    floor = LOCALIZE_FLOOR.get(precision, LOCALIZE_FLOOR["fp32"])
    rows = match_stages(stages, outputs, candidates, keep, floor)
    errors = [r["rel_error"] for r in rows if r["rel_error"] is not None]
    if not errors:
        return base | {"status": "unavailable", "stages": rows,
                       "message": "localization unavailable: no tensor of the graph has the shape of a hidden state"}
    # A departure stands out against the stages before it: above the precision's floor
    # and at least a tenth of the worst error (so fp16 drift growing layer by layer does
    # not hide a real break, and a real break is not blamed on the noise before it).
    threshold = max(floor, 0.1 * max(errors))
    first = next((r for r in rows if r["rel_error"] is not None and r["rel_error"] > threshold), None)
    if first is None:
        worst = max(rows, key=lambda r: r["rel_error"] if r["rel_error"] is not None else -1)
        return base | {
            "status": "after_encoder",
            "threshold": threshold,
            "stages": rows,
            "message": f"no hidden state departs from PyTorch beyond {precision} rounding (worst relative error "
                       f"{_fmt(worst['rel_error'])} at {worst['stage']}, threshold {_fmt(threshold)}): the difference "
                       "arises after the last encoder layer (pooler, classifier, pooling or reshapes of the outputs), "
                       f"or the tolerance is tighter than {precision} arithmetic allows",
        }
    before = [r["rel_error"] for r in rows[: rows.index(first)] if r["rel_error"] is not None]
    earlier = f" (earlier stages at most {_fmt(max(before))})" if before else ""
    # A break jumps by orders of magnitude; accumulated low-precision noise creeps up.
    gradual = bool(before) and max(before) > 0.5 * first["rel_error"]
    if gradual:
        earlier += (f"; the error grows gradually from stage to stage, which looks like accumulated {precision} "
                    "rounding rather than one broken stage")
    layer = int(first["stage"].rsplit(" ", 1)[1]) if first["stage"].startswith("encoder layer") else None
    return base | {
        "status": "found",
        "stage": first["stage"],
        "layer": layer,
        "torch_module": first["torch_module"],
        "onnx_tensor": first["onnx_tensor"],
        "onnx_node": first["onnx_node"],
        "onnx_op": first["onnx_op"],
        "rel_error": first["rel_error"],
        "max_abs": first["max_abs"],
        "threshold": threshold,
        "gradual": gradual,
        "stages": rows,
        "message": f"first departure from PyTorch: {first['stage']} (PyTorch {first['torch_module']} vs ONNX tensor "
                   f"'{first['onnx_tensor']}' from {first['onnx_op']} node '{first['onnx_node']}'): relative error "
                   f"{_fmt(first['rel_error'])}, max abs {_fmt(first['max_abs'])}{earlier}",
    }
