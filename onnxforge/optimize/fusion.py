"""Transformer fusions: the exported graph -> one fused op per attention, norm and GELU.

Two routes, chosen per graph:

* ``onnxruntime.transformers.optimizer`` (model_type "bert", heads and hidden size from
  the ModelSpec) matches the TorchScript export of eager attention completely:
  Attention, SkipLayerNormalization, BiasGelu and EmbedLayerNormalization. On a dynamo
  export it fuses the norms and GELUs but no attention.
* onnxforge's rule table (``optimize.rules.PIPELINE``, onnxscript rewriter rules run in a
  declared order: EmbedLayerNormalization, onnxscript's ort_fusions, Q/K/V packing)
  matches the dynamo export of every attention style (SDPA, eager, nn.MultiheadAttention,
  hand-written) with the mask kept as an additive attention bias. Running the ORT
  optimizer after it picks up whatever the rules left.

The route expected to suit the exporter runs first; when it leaves a required fusion
missing the other route runs too and the graph closest to the expectations wins.
Every candidate's counts and each tool's contribution go into the report, with a
per-layer breakdown that names the node where a pattern broke.

A graph built for CPU then gets ``rules.CPU_KERNEL_CHOICES``: fused ops whose ORT CPU
kernel is slower than the ops they replace are emitted unfused (``kernel_choices`` in
the report; ``achieved`` still counts what fused).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec import ModelSpec
from ..vocab import short_error

# Fused-op groups: what a fully fused BERT layer has, by any of the names the tools use.
GROUPS: dict[str, tuple[str, ...]] = {
    "Attention": ("Attention", "MultiHeadAttention"),
    "SkipLayerNormalization": ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"),
    "Gelu": ("BiasGelu", "FastGelu", "Gelu"),
    "EmbedLayerNormalization": ("EmbedLayerNormalization",),
    "RotaryEmbedding": ("RotaryEmbedding",),
}
# EmbedLayerNormalization needs a particular embedding subgraph ("where the inputs
# allow it"), RotaryEmbedding a rotary model: both are reported, but a graph without
# them still counts as fully fused (their unfused ops compute the same numbers).
OPTIONAL = ("EmbedLayerNormalization", "RotaryEmbedding")
ORT_TOOL = "onnxruntime.transformers.optimizer"
ONNXSCRIPT_TOOL = "onnxscript.rewriter.ort_fusions"
# ORT fusion modules log why a pattern did not match at DEBUG level; we keep those lines.
_ORT_FUSION_LOGGERS = {
    "fusion_attention": "Attention",
    "fusion_skiplayernorm": "SkipLayerNormalization",
    "fusion_layernorm": "SkipLayerNormalization",
    "fusion_biasgelu": "Gelu",
    "fusion_gelu": "Gelu",
    "fusion_fastgelu": "Gelu",
    "fusion_embedlayer": "EmbedLayerNormalization",
}
# Loggers that print warnings about the (expected) misses straight to stderr.
_ORT_CHATTY_LOGGERS = ("onnx_model", "onnx_model_bert", "optimizer", "fusion_base", "fusion_utils",
                       "fusion_options", "shape_infer_helper", "fusion_rotary_attention")


@dataclass
class FusionOutcome:
    model: Any  # onnx.ModelProto
    report: dict[str, Any]


def group_counts(model) -> dict[str, int]:
    hist = Counter(n.op_type for n in model.graph.node)
    return {g: sum(hist[o] for o in ops) for g, ops in GROUPS.items()}


def activation_of(base_model, config_path: Path | None) -> tuple[str, str]:
    """The FFN activation ("gelu", "relu", ...) and where that answer came from."""
    if config_path is not None and config_path.is_file():
        try:
            act = json.loads(config_path.read_text(encoding="utf-8")).get("hidden_act")
        except (OSError, ValueError):
            act = None
        if isinstance(act, str):
            return act, "config.json hidden_act"
    hist = Counter(n.op_type for n in base_model.graph.node)
    if hist["Erf"] or hist["Gelu"] or hist["FastGelu"]:
        return "gelu", "Erf/Gelu ops in the exported graph"
    if hist["Relu"]:
        return "relu", "Relu ops in the exported graph"
    return "unknown", "no config.json and no recognisable activation op"


def _has_rotary(model) -> bool:
    ops = {n.op_type for n in model.graph.node}
    return "Cos" in ops and "Sin" in ops


def expectations(spec: ModelSpec, base_model, config_path: Path | None) -> dict[str, Any]:
    act, act_source = activation_of(base_model, config_path)
    gelu = act.startswith("gelu") or act in ("quick_gelu",)
    expected = {
        "Attention": spec.num_layers,
        "SkipLayerNormalization": 2 * spec.num_layers,
        "Gelu": spec.num_layers if gelu else 0,
        "EmbedLayerNormalization": 1,
        # Cos and Sin in the export: rotary positions, one rotation for the queries and one for the keys.
        "RotaryEmbedding": 2 * spec.num_layers if _has_rotary(base_model) else 0,
    }
    return {"expected": expected, "activation": act, "activation_source": act_source}


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name.rsplit(".", 1)[-1]
        with contextlib.suppress(Exception):
            self.lines.append((name, record.getMessage()))


@contextlib.contextmanager
def _ort_logging():
    """Collect the ORT fusions' debug reasons; silence their stderr warnings."""
    capture = _Capture()
    saved = []
    debug = bool(os.environ.get("ONNXFORGE_DEBUG"))
    for base in list(_ORT_FUSION_LOGGERS) + list(_ORT_CHATTY_LOGGERS):
        for name in (base, f"onnxruntime.transformers.{base}"):
            logger = logging.getLogger(name)
            saved.append((logger, logger.level, logger.propagate))
            if base in _ORT_FUSION_LOGGERS:
                logger.setLevel(logging.DEBUG)
                logger.addHandler(capture)
                logger.propagate = debug
            elif not debug:
                logger.setLevel(logging.ERROR)
    try:
        yield capture
    finally:
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            with contextlib.suppress(ValueError):
                logger.removeHandler(capture)


def _reasons(lines: list[tuple[str, str]]) -> dict[str, list[str]]:
    by_group: dict[str, Counter] = {}
    for logger, message in lines:
        group = _ORT_FUSION_LOGGERS.get(logger)
        if group:
            by_group.setdefault(group, Counter())[message] += 1
    return {g: [f"{m} (x{n})" if n > 1 else m for m, n in c.most_common(4)] for g, c in by_group.items()}


def run_ort_optimizer(model, spec: ModelSpec):
    """ORT's BERT fusions with the spec's heads and hidden size (never 0-guessing)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    with _ort_logging() as capture:
        optimized = optimize_model(
            model, model_type="bert", num_heads=spec.num_heads, hidden_size=spec.hidden_size,
            optimization_options=options, opt_level=0,
        )
    stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    return optimized.model, stats, _reasons(capture.lines)


def run_rules(model):
    """The dynamo path's rule table (``optimize.rules.PIPELINE``: EmbedLayerNormalization,
    onnxscript's ort_fusions, Q/K/V packing), in its declared order."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    from .rules import run_pipeline

    def count(ir_model):
        hist = Counter(n.op_type for n in ir_model.graph)
        return {g: sum(hist[o] for o in ops) for g, ops in GROUPS.items()}

    ir_model = ir.from_proto(model)
    steps = run_pipeline(ir_model, count)
    # Rewrites leave the replaced projection weights behind; ORT would warn about each one.
    common_passes.RemoveUnusedNodesPass()(ir_model)
    return ir.to_proto(ir_model), steps


def _structural_reason(group: str, model, achieved: int, expected: int) -> str:
    hist = Counter(n.op_type for n in model.graph.node)
    if group == "Attention":
        if hist["Softmax"]:
            return f"{hist['Softmax']} Softmax left unfused: their attention subgraphs differ from the tools' patterns"
        return "no Softmax in the graph: every attention fusion matches softmax attention, this model's is not"
    if group == "SkipLayerNormalization":
        return f"{hist['LayerNormalization']} LayerNormalization left (residual Add not folded into them)"
    if group == "Gelu":
        return f"{hist['Erf']} Erf / {hist['Tanh']} Tanh left unfused"
    if group == "EmbedLayerNormalization":
        from .rules.explain import explain_embed

        return explain_embed(model)
    if group == "RotaryEmbedding":
        return (f"{hist['Cos']} Cos / {hist['Sin']} Sin left: the rotary subgraph is not "
                "x*cos + rotate_half(x)*sin with cos/sin from positions shared by the batch x a constant inv_freq")
    return f"{achieved} of {expected}"


def _score(groups: dict[str, int], expected: dict[str, int], nodes: int) -> tuple:
    required = sum(min(groups[g], expected[g]) for g in expected if g not in OPTIONAL)
    optional = sum(min(groups[g], expected[g]) for g in expected if g in OPTIONAL)
    return (required, optional, -nodes)


def _meets(groups: dict[str, int], expected: dict[str, int], which: str = "required") -> bool:
    keys = [g for g in expected if (g not in OPTIONAL) == (which == "required")]
    return all(groups[g] >= expected[g] for g in keys)


def _candidate_ort(base, spec):
    model, stats, reasons = run_ort_optimizer(base, spec)
    tools = [{"tool": ORT_TOOL, "settings": {"model_type": "bert", "num_heads": spec.num_heads,
                                             "hidden_size": spec.hidden_size, "opt_level": 0},
              "fused": group_counts(model), "stats": stats, "reasons": reasons}]
    return model, tools


def _candidate_rules(base, spec):
    first, steps = run_rules(base)
    after_first = group_counts(first)
    try:
        # A copy: the ORT optimizer edits the proto in place and may stop half-way.
        model, ort_stats, reasons = run_ort_optimizer(type(first).FromString(first.SerializeToString()), spec)
    except Exception as e:  # e.g. its SkipLayerNorm fusion indexes a LayerNorm bias that is absent
        model, ort_stats = first, {}
        reasons = {"error": [f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}; "
                             "kept the rules' graph"]}
    after = group_counts(model)
    tools = [{"tool": st["tool"], "settings": {"step": i, "rule": st["step"]}
              | ({"function": "optimize_for_ort", "fold_constants": True} if st["tool"] == ONNXSCRIPT_TOOL else {}),
              "fused": st["fused"], "stats": {"rewrites": st["rewrites"]}, "reasons": {}}
             for i, st in enumerate(steps)]
    tools.append({"tool": ORT_TOOL, "settings": {"model_type": "bert", "num_heads": spec.num_heads,
                                                 "hidden_size": spec.hidden_size, "opt_level": 0, "after": "rules"},
                  "fused": {g: after[g] - after_first[g] for g in after}, "stats": ort_stats, "reasons": reasons})
    return model, tools


CANDIDATES = {
    "onnxruntime": _candidate_ort,
    "onnxscript+onnxruntime": _candidate_rules,
}


def fuse(base_path: Path, spec: ModelSpec, exporter: str | None, config_path: Path | None, *, say=None,
         device: str | None = None) -> FusionOutcome:
    """Fuse the export; ``device`` "cpu" also applies the CPU kernel choices (rules.CPU_KERNEL_CHOICES)."""
    import onnx

    say = say or (lambda m: None)
    base = onnx.load(str(base_path), load_external_data=True)
    nodes_before = len(base.graph.node)
    exp = expectations(spec, base, config_path)
    expected = exp["expected"]
    order = ["onnxscript+onnxruntime", "onnxruntime"] if exporter == "dynamo" else ["onnxruntime", "onnxscript+onnxruntime"]
    tried: list[dict[str, Any]] = []
    best = None
    for name in order:
        say(f"fusing with {name}")
        try:
            model, tools = CANDIDATES[name](onnx.ModelProto.FromString(base.SerializeToString()), spec)
        except Exception as e:  # a tool that crashes on this graph is a reason, not a stop
            tried.append({"route": name, "error": f"{type(e).__name__}: {short_error(e, 300) if str(e) else ''}"})
            continue
        groups = group_counts(model)
        entry = {"route": name, "counts": groups, "nodes": len(model.graph.node), "tools": tools}
        tried.append(entry)
        score = _score(groups, expected, len(model.graph.node))
        if best is None or score > best[0]:
            best = (score, model, entry)
        if _meets(groups, expected):
            break
    if best is None:
        errors = "; ".join(t.get("error", "") for t in tried)
        from ..errors import UserInputError

        raise UserInputError(f"no fusion tool could process {base_path.name}: {errors}",
                             hint="re-export the model (onnxforge export), or report the graph that breaks the tools")
    _, model, chosen = best
    _ensure_domains(model)
    achieved = chosen["counts"]
    missing = {}
    for group, want in expected.items():
        if achieved[group] >= want:
            continue
        why = []
        for entry in tried:
            for tool in entry.get("tools", []):
                for line in tool.get("reasons", {}).get(group, []):
                    why.append(f"{tool['tool']}: {line}")
        why.append(_structural_reason(group, model, achieved[group], want))
        missing[group] = "; ".join(dict.fromkeys(why))
    required = [g for g in expected if g not in OPTIONAL]
    per_layer = _per_layer(model, expected, spec.num_layers)
    kernel_choices = _cpu_kernel_choices(model) if device == "cpu" else []
    report = {
        "expected": expected,
        "achieved": achieved,
        "required": required,
        "optional": list(OPTIONAL),
        "fully_fused": _meets(achieved, expected),
        "missing": missing,
        "activation": exp["activation"],
        "activation_source": exp["activation_source"],
        "nodes_before": nodes_before,
        "nodes_after": len(model.graph.node),
        "route": chosen["route"],
        "tools": chosen["tools"],
        "candidates": [{k: v for k, v in t.items() if k != "tools"} for t in tried],
        "fused_ops": {op: n for op, n in Counter(n.op_type for n in model.graph.node).items()
                      if any(op in ops for ops in GROUPS.values())},
        "right_padding_required": _mask_index_attention(model),
        "per_layer": per_layer,
        # Fused ops deliberately emitted unfused for the target device ("achieved" counts the fusion).
        "kernel_choices": {"device": device, "steps": kernel_choices},
    }
    return FusionOutcome(model, report)


def _cpu_kernel_choices(model) -> list[dict[str, Any]]:
    """Rewrite, in place, fused ops whose CPU kernel is slower than what they replaced."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    from .rules import CPU_KERNEL_CHOICES

    ir_model = ir.from_proto(model)
    steps = [{"step": step.name, "tool": step.tool, "rewrites": step.apply(ir_model), "why": step.why_here}
             for step in CPU_KERNEL_CHOICES]
    common_passes.RemoveUnusedNodesPass()(ir_model)
    model.CopyFrom(ir.to_proto(ir_model))
    return steps


def _per_layer(model, expected: dict[str, int], num_layers: int) -> dict[str, Any]:
    import onnx_ir as ir

    from .rules.layer_report import layer_report

    return layer_report(ir.from_proto(model), GROUPS, expected, num_layers)


def _ensure_domains(model) -> None:
    """Declare the opset of every domain the fused nodes use (com.microsoft): ORT loads a
    graph without it, but onnx's shape inference, which the quantizer runs, does not."""
    import onnx

    declared = {o.domain for o in model.opset_import}
    for domain in sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}):
        if domain not in declared:
            model.opset_import.append(onnx.helper.make_opsetid(domain, 1))


def _mask_index_attention(model) -> bool:
    """True when an Attention takes its mask as per-row lengths (EmbedLayerNormalization's
    mask_index): such a graph is only correct for right-padded inputs."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type == "Attention" and len(n.input) > 3 and n.input[3]:
            p = producers.get(n.input[3])
            if p is not None and p.op_type == "EmbedLayerNormalization":
                return True
    return False
