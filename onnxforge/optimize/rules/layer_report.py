"""Per-layer fusion report: what fused in each encoder layer, and where a pattern broke.

Layers are read off the graph in topological order: each attention core (a fused
Attention / MultiHeadAttention, or a Softmax left unfused) opens a layer, and every
fused op up to the next core belongs to it (a post-LN layer's two SkipLayerNorms and
its GELU follow its attention). Ops before the first core are the embeddings. When the
number of cores is not the number of layers the spec declares (attention that is not
softmax attention at all), layers are split after every second normalization past the
embeddings (post-LN BERT) and the report says which split it used.

For a Softmax left unfused, onnxscript's own SDPA rule is matched again at that spot
with a MatchingTracer: the report names the node where the match failed and why.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

CORE_OPS = ("Attention", "MultiHeadAttention", "Softmax")


def _group_of(node: ir.Node, groups: dict[str, tuple[str, ...]]) -> str | None:
    for group, ops in groups.items():
        if node.op_type in ops and (node.domain == "com.microsoft" or node.op_type == "Gelu"):
            return group
    return None


def _downstream_matmul(softmax: ir.Node) -> tuple[ir.Node | None, list[ir.Node]]:
    """The MatMul with the values after a Softmax, and the nodes in between that the SDPA
    pattern does not allow (it allows only the Where(IsNaN) guard)."""
    node, intruders = softmax, []
    for _ in range(4):
        users = [c for out in node.outputs for c, _ in out.uses()]
        users = [u for u in users if u.op_type != "IsNaN"] or users
        if len(users) != 1:
            return None, intruders
        node = users[0]
        if node.op_type == "MatMul":
            return node, intruders
        if node.op_type != "Where":
            intruders.append(node)
    return None, intruders


def _sdpa_failure(model: ir.Model, softmax: ir.Node) -> str:
    """Why onnxscript's SDPA rule does not match around this Softmax (node + reason)."""
    from onnxscript.rewriter import pattern
    from onnxscript.rewriter.ort_fusions.sdpa import sdpa_rules

    root, intruders = _downstream_matmul(softmax)
    if intruders:
        names = ", ".join(f"{n.op_type} '{n.name}'" for n in intruders)
        return (f"SDPA pattern broke at {names} between Softmax '{softmax.name}' and the MatMul with the values "
                "(attention rules expect the probabilities to go straight into that MatMul)")
    if root is None:
        users = sorted({c.op_type for out in softmax.outputs for c, _ in out.uses()})
        return f"Softmax '{softmax.name}' feeds {users or 'nothing'}, not a MatMul with the values"
    best = None
    for rule in sdpa_rules.rules:
        tracer = pattern.MatchingTracer()
        if rule.match(model, model.graph, root, tracer=tracer):
            return f"the SDPA pattern matches at '{root.name}' but no later attention rule took it"
        for info in tracer.best_matches_map.get(rule, []):
            if best is None or info.score() > best.score():
                best = info
    if best is None:
        return f"no SDPA pattern starts at MatMul '{root.name}' after Softmax '{softmax.name}'"
    where = [getattr(f, "name", None) or str(f) for f in best.match_result.failure_nodes_and_values][:2]
    reason = best.match_result.reason or "pattern mismatch"
    return (f"SDPA pattern broke at {', '.join(where) or repr(root.name)} after "
            f"{len(best.match_result.nodes)} matched nodes: {reason}")


def _norm_failure(node: ir.Node) -> str:
    x = node.inputs[0]
    producer = x.producer() if x is not None else None
    if producer is None or producer.op_type != "Add":
        what = producer.op_type if producer is not None else "a graph input"
        return f"LayerNormalization '{node.name}' normalizes {what}, not a residual Add"
    return f"LayerNormalization '{node.name}': its residual Add '{producer.name}' operands differ in shape or are used elsewhere"


def layer_report(model: ir.Model, groups: dict[str, tuple[str, ...]], expected: dict[str, int],
                 num_layers: int) -> dict[str, Any]:
    nodes = list(model.graph)
    cores = [i for i, n in enumerate(nodes) if n.op_type in CORE_OPS]
    split_by = "attention cores in graph order"
    starts = cores
    if len(cores) != num_layers:
        norms = [i for i, n in enumerate(nodes) if "LayerNormalization" in n.op_type]
        starts = [norms[j] + 1 for j in range(0, len(norms) - 1, 2)][:num_layers]
        split_by = "every second normalization after the embeddings (attention cores do not match the layers)"
    reliable = num_layers > 0 and len(starts) == num_layers
    per_layer_expected = {g: expected[g] // num_layers for g in expected
                          if g != "EmbedLayerNormalization" and num_layers and expected[g]}
    layers: list[dict[str, Any]] = [{"layer": k, "fused": {g: 0 for g in per_layer_expected}, "missing": {}}
                                    for k in range(len(starts))]
    embeddings: dict[str, Any] = {"fused": {}, "missing": {}}
    k = -1
    for i, node in enumerate(nodes):
        if k + 1 < len(starts) and i == starts[k + 1]:
            k += 1
        target = embeddings if k < 0 else layers[k]
        group = _group_of(node, groups)
        if group == "RotaryEmbedding" and k + 1 < len(layers):
            target = layers[k + 1]  # it rotates the queries / keys of the next attention core
        if group is not None:
            target["fused"][group] = target["fused"].get(group, 0) + 1
        elif node.op_type == "Softmax":
            target["missing"]["Attention"] = _sdpa_failure(model, node)
        elif node.op_type == "LayerNormalization" and k >= 0:
            target["missing"].setdefault("SkipLayerNormalization", _norm_failure(node))
        elif node.op_type == "Erf" and k >= 0:
            target["missing"].setdefault("Gelu", f"Erf '{node.name}' is not in an erf-GELU pattern")
    if expected.get("EmbedLayerNormalization") and not embeddings["fused"].get("EmbedLayerNormalization"):
        first_norm = next((n for n in nodes[: cores[0] if cores else len(nodes)]
                           if n.op_type in ("LayerNormalization", "SkipLayerNormalization")), None)
        embeddings["missing"]["EmbedLayerNormalization"] = (
            f"the embedding sum before {first_norm.op_type} '{first_norm.name}' is not word + position "
            "[+ segment] Gathers over input_ids" if first_norm is not None else "no normalization after the embeddings")
    for layer in layers:
        if per_layer_expected.get("Attention") and not layer["fused"].get("Attention") and "Attention" not in layer["missing"]:
            layer["missing"]["Attention"] = "no softmax attention in this layer: every attention rule matches Softmax(QK^T)V"
        for group, want in per_layer_expected.items():
            got = layer["fused"].get(group, 0)
            if got < want and group not in layer["missing"]:
                layer["missing"][group] = f"{got} of {want} fused in this layer"
    return {"reliable": reliable, "split_by": split_by,
            "cores_found": len(cores), "layers_declared": num_layers,
            "embeddings": embeddings, "layers": layers}
