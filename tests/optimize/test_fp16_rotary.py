"""fp16 keeps rotary angles in fp32: positions x inv_freq, Cos and Sin, fused or not.

fp16's spacing is 4 between 4096 and 8192, so an angle (or a position) rounded to fp16
makes cos/sin noise at long sequences. The hand-built rotary graphs (the rule tests')
are run at 8192 tokens against float64 numpy; the tiny ModernBERT checks the graph,
its cos/sin cache at positions up to 8191, and fp16 parity with PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxforge.parity.tolerance import default_tolerance

from .test_rule_rotary_embedding import HEADS, HEAD, _fuse, _graph, _reference

LONG = 8192
# Measured: 1.6e-3 (unfused) and 2.4e-3 (fused) over positions 4000-8191 with the angles
# kept fp32; 0.67 and 7.1 with them converted to fp16.
ROTARY_BOUND = 5e-3


def _fp16(model):
    from onnxforge.optimize.fp16 import to_fp16

    return to_fp16(onnx.ModelProto.FromString(model.SerializeToString()), [], 0.5)


def _session(model, extra: list[str] = ()):
    """A CPU session with ``extra`` tensors exposed as outputs (ORT types them)."""
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _trig_input_types(model) -> dict[str, str]:
    """{Cos/Sin node: the element type of its input} in the converted graph."""
    trig = [n for n in model.graph.node if n.op_type in ("Cos", "Sin")]
    assert trig, "no Cos/Sin in the graph"
    names = sorted({n.input[0] for n in trig})
    types = {o.name: o.type for o in _session(model, names).get_outputs()}
    return {n.name: types[n.input[0]] for n in trig}


def _angle_ancestry_types(model) -> dict[str, str]:
    """{tensor: type} of everything Cos/Sin's values depend on (a Shape's input is not a value)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    stack = [n.input[0] for n in model.graph.node if n.op_type in ("Cos", "Sin")]
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        node = producer[name]
        if node.op_type != "Shape":
            stack.extend(i for i in node.input if i)
    return {o.name: o.type for o in _session(model, sorted(seen)).get_outputs() if o.name in seen}


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_rotary_angles_stay_fp32_and_accurate_at_long_positions(fused):
    model = _graph()
    if fused:
        model, count = _fuse(model)
        assert count == 1
    converted, report = _fp16(model)
    assert set(_trig_input_types(converted).values()) == {"tensor(float)"}
    # No fp16 tensor on the way from the positions and inv_freq to Cos/Sin.
    ancestry = _angle_ancestry_types(converted)
    assert "tensor(float16)" not in ancestry.values() and "tensor(float)" in ancestry.values(), ancestry
    blocked = {n.op_type for n in converted.graph.node if n.name in report["rotary_angle_nodes"]["nodes"]}
    assert {"Cos", "Sin", "Mul"} <= blocked
    # The rest is fp16: x enters the rotation as fp16.
    assert any(n.op_type == "Cast" and n.input[0] == "x" and n.attribute[0].i == onnx.TensorProto.FLOAT16
               for n in converted.graph.node)
    x = np.random.default_rng(0).standard_normal((1, HEADS, LONG, HEAD)).astype(np.float32)
    actual = _session(converted).run(["out"], {"x": x})[0]
    error = np.abs(actual - _reference(x.astype(np.float64)))
    assert error[:, :, 4000:].max() <= ROTARY_BOUND, error[:, :, 4000:].max()


def test_graphs_without_rotary_block_nothing_more():
    from onnx import TensorProto, helper

    from onnxforge.optimize.fp16 import rotary_angle_nodes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "g", [x], [y])
    assert rotary_angle_nodes(helper.make_model(graph)) == []


@pytest.fixture(scope="module")
def modernbert_fp16(tmp_path_factory):
    from onnxforge.optimize.fusion import fuse
    from tests.fixtures.architectures import architecture_inputs

    from .dynamo_helpers import export_dynamo, feeds, spec_for
    from .test_architectures_fusion import _hidden_states_module

    module = _hidden_states_module("modernbert")
    names = architecture_inputs("modernbert")
    path = export_dynamo(module, feeds(names, 30522, batch=2, seq=16), Path(tmp_path_factory.mktemp("mb16")) / "m.onnx")
    fused = fuse(path, spec_for(dict.fromkeys(names), 4, 64, 2, 30522), "dynamo", None, device="cuda").model
    calibration = [feeds(names, 30522, seq=24)]
    from onnxforge.optimize.fp16 import to_fp16

    plain16, _ = to_fp16(onnx.load(str(path)), calibration, 0.5)
    fused16, report = to_fp16(onnx.ModelProto.FromString(fused.SerializeToString()), calibration, 0.5)
    return module, names, fused, fused16, plain16, report


def _rotary_caches(model) -> list[tuple[str, str]]:
    """(cos cache, sin cache) input names of every RotaryEmbedding, deduplicated."""
    nodes = [n for n in model.graph.node if n.op_type == "RotaryEmbedding"]
    return sorted({(n.input[2], n.input[3]) for n in nodes})


def _inv_freq(model, cos_cache: str) -> np.ndarray:
    """The frequencies the fp32 graph multiplies its positions by to make ``cos_cache``."""
    from onnx import numpy_helper

    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    stack, seen = [producer[cos_cache]], set()
    while stack:
        node = stack.pop()
        for name in node.input:
            if name in inits and inits[name].dtype == np.float32:
                return inits[name].reshape(-1)
            if name in producer and name not in seen:
                seen.add(name)
                stack.append(producer[name])
    raise AssertionError(f"no float32 frequencies above {cos_cache}")


@pytest.mark.slow
def test_modernbert_fp16_keeps_rotary_angles_fp32(modernbert_fp16):
    _, _, _, fused16, plain16, report = modernbert_fp16
    assert sum(n.op_type == "RotaryEmbedding" for n in fused16.graph.node) == 4
    for graph in (fused16, plain16):
        types = _trig_input_types(graph)
        assert set(types.values()) == {"tensor(float)"}, types
        ancestry = _angle_ancestry_types(graph)
        assert "tensor(float16)" not in ancestry.values(), ancestry
    assert report["rotary_angle_nodes"]["nodes"]
    # The caches RotaryEmbedding reads are fp16, like its queries and keys.
    caches = [name for pair in _rotary_caches(fused16) for name in pair]
    assert {o.type for o in _session(fused16, caches).get_outputs() if o.name in caches} == {"tensor(float16)"}


@pytest.mark.slow
def test_modernbert_fp16_cos_sin_cache_at_long_positions(modernbert_fp16, tmp_path):
    """The cache sub-graph (inputs -> cos/sin) of the fp16 graph at 8192 tokens vs float64."""
    from onnx.utils import extract_model

    _, _, fused, fused16, _, _ = modernbert_fp16
    source, target = tmp_path / "fp16.onnx", tmp_path / "cache.onnx"
    onnx.save(fused16, str(source))
    positions = np.arange(LONG, dtype=np.float64)[:, None]
    for cos_name, sin_name in _rotary_caches(fused16):
        extract_model(str(source), str(target), ["input_ids", "attention_mask"], [cos_name, sin_name],
                      check_model=False)
        session = _session(onnx.load(str(target)))
        ones = np.ones((1, LONG), np.int64)  # the cache depends on the shape only
        cos, sin = session.run(None, {i.name: ones for i in session.get_inputs()})
        # The converter keeps the cache's name on the Cast to fp16 after Cos.
        angles = positions * _inv_freq(fused, cos_name).astype(np.float64)
        # fp32 angles (ulp 4.9e-4 at 8192) then fp16 values (2.4e-4 at 1): 7.3e-4 at worst.
        for actual, expected in ((cos, np.cos(angles)), (sin, np.sin(angles))):
            assert np.abs(actual.astype(np.float64) - expected)[4000:].max() <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("pad", ["right", "left"])
def test_modernbert_fp16_parity_with_pytorch(modernbert_fp16, pad):
    from onnxforge.parity.judge import judge_output
    from onnxforge.spec import OutputSpec

    from .dynamo_helpers import feeds, ort_outputs, torch_outputs

    module, names, _, fused16, plain16, _ = modernbert_fp16
    inputs = feeds(names, 30522, seq=37, pad=pad)
    expected = torch_outputs(module, inputs)[0]
    output = OutputSpec("last_hidden_state", ("batch", "sequence", None))
    for graph in (fused16, plain16):
        verdict = judge_output(output, [(expected, ort_outputs(graph, inputs)[0], inputs["attention_mask"])],
                               default_tolerance("fp16"))
        assert verdict.passed, verdict.reasons
