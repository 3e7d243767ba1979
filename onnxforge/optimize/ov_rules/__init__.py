"""Rewrites of an ``openvino.Model`` before it is saved as an IR variant.

The ONNX fusion rules (``optimize.rules``) target ONNX Runtime's contrib ops, which
OpenVINO cannot read; OpenVINO's CPU plugin fuses the rest itself at compile time. What
it does not fuse on its own is listed here, one module per rule, each with an
``apply(model) -> int`` (the number of rewrites). Imported only when an OpenVINO
variant is built.
"""

from __future__ import annotations

from . import sdpa_attention

# (name, the op it writes, apply) in the order they run.
PIPELINE = (("sdpa_attention", sdpa_attention.FUSED_OP, sdpa_attention.apply),)


def apply_all(model) -> dict[str, int]:
    """Run every rule on ``model`` in place; returns the rewrite count per rule."""
    counts = {name: apply(model) for name, _, apply in PIPELINE}
    model.validate_nodes_and_infer_types()
    return counts
