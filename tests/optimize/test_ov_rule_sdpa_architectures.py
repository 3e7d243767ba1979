"""ov_rules.sdpa_attention on every architecture's dynamo export: fused where the pattern is
PyTorch's SDPA with a finite mask, left alone elsewhere, and exact (f32) either way."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.architectures import ARCHITECTURES, architecture_inputs

from .dynamo_helpers import export_dynamo, feeds
from .test_architectures_fusion import _hidden_states_module

pytest.importorskip("openvino")

# One fused attention per layer (2) where the export is PyTorch's SDPA with HF's finite mask;
# MPNet adds a relative position bias to the mask and DeBERTa-v2 computes its own attention.
FUSED = {arch: 2 for arch in ARCHITECTURES} | {"mpnet": 0, "deberta-v2": 0}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_sdpa_rule_is_exact_on_every_architecture(arch, tmp_path):
    import openvino as ov

    from onnxforge.optimize.ov_rules import sdpa_attention

    module = _hidden_states_module(arch)
    names = architecture_inputs(arch)
    path = export_dynamo(module, feeds(names, 30522, batch=2, seq=16), tmp_path / f"{arch}.onnx")
    plain, fused = ov.convert_model(str(path)), ov.convert_model(str(path))
    count = sdpa_attention.apply(fused)
    fused.validate_nodes_and_infer_types()
    inputs = feeds(names, 30522)
    inputs["attention_mask"][0, 5:] = 0  # padding in one row
    core = ov.Core()
    outputs = []
    for model in (plain, fused):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        port = {p.get_any_name() for p in compiled.inputs}
        outputs.append(compiled.create_infer_request().infer({k: v for k, v in inputs.items() if k in port})[0].copy())
    mask = inputs["attention_mask"][..., None].astype(bool)
    worst = float(np.abs(np.where(mask, outputs[1] - outputs[0], 0)).max())
    assert count == FUSED[arch], (arch, count)
    assert worst < 1e-5, (arch, count, worst)
