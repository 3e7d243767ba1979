"""`package --triton` checked against Triton's own schema: tritonclient's generated
``inference.ModelConfig`` protobuf, parsed with ``google.protobuf.text_format``.

tritonclient[grpc] is a test dependency, so this never skips: a field Triton does not
know, a bad enum value or a malformed block fails here, as Triton would refuse to load
the model.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from onnxforge.release.triton import QUEUE_DELAY_US, check_config, config_pbtxt


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _type_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def test_packaged_config_is_a_valid_model_config_with_dynamic_batching(unpacked):
    import onnx

    repo = unpacked / "triton" / "tiny"
    cfg = _parse((repo / "config.pbtxt").read_text())
    assert cfg.name == "tiny" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == QUEUE_DELAY_US

    # Every graph input and output, with Triton's type and the dims Triton checks at load
    # time: the graph's own shape less the batch axis (added because max_batch_size > 0).
    graph = onnx.load(repo / "1" / "model.onnx", load_external_data=False).graph
    elem = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}

    def expected(values):
        out = []
        for v in values:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            out.append((v.name, elem[v.type.tensor_type.elem_type], dims[1:]))
        return out

    assert [(t.name, _type_name(t.data_type), list(t.dims)) for t in cfg.input] == expected(graph.input)
    assert [(t.name, _type_name(t.data_type), list(t.dims)) for t in cfg.output] == expected(graph.output)


def test_the_schema_rejects_what_triton_would():
    signature = {"inputs": [{"name": "input_ids", "dtype": "int64", "dims": ["batch", "sequence"]}],
                 "outputs": [{"name": "sentence_embedding", "dtype": "float32", "dims": ["batch", 384]}]}
    good = config_pbtxt("m", signature)
    assert _parse(good).output[0].dims == [384] and check_config(good, signature) == []
    for bad in (good.replace("TYPE_INT64", "TYPE_LONG"),                      # not a DataType
                good.replace("max_queue_delay_microseconds", "max_delay_us"),  # not a DynamicBatching field
                good + "instance_count: 2\n"):                                # not a ModelConfig field
        with pytest.raises(text_format.ParseError):
            _parse(bad)
        assert any("ModelConfig" in p for p in check_config(bad, signature)), bad
