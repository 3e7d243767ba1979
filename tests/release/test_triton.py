"""`package --triton`: a model repository Triton's ONNX Runtime backend accepts."""

from __future__ import annotations

import json

import pytest

from onnxforge.artifact import sha256_file
from onnxforge.release.triton import check_config, config_pbtxt, load_model_config_proto, parse_pbtxt

SIGNATURE = {
    "inputs": [{"name": "input_ids", "dtype": "int64", "dims": ["batch", "sequence"]},
               {"name": "attention_mask", "dtype": "int64", "dims": ["batch", "sequence"]}],
    "outputs": [{"name": "last_hidden_state", "dtype": "float32", "dims": ["batch", "sequence", 64]},
                {"name": "pooler_output", "dtype": "float32", "dims": ["batch", 64]}],
}


def test_repository_layout(unpacked):
    m = json.loads((unpacked / "onnxforge.json").read_text())
    triton = m["package"]["triton"]
    assert triton == {"name": "tiny", "variant": "base", "folder": "triton/tiny", "max_batch_size": 64,
                      "platform": "onnxruntime_onnx"}
    version_model = unpacked / "triton" / "tiny" / "1" / "model.onnx"
    assert sha256_file(version_model) == sha256_file(unpacked / "model.onnx")
    cfg = parse_pbtxt((unpacked / "triton" / "tiny" / "config.pbtxt").read_text())
    assert cfg["name"] == ["tiny"] and cfg["platform"] == ["onnxruntime_onnx"] and cfg["max_batch_size"] == [64]
    inputs = {t["name"][0]: (t["data_type"][0], t["dims"]) for t in cfg["input"]}
    assert inputs == {n: ("TYPE_INT64", [-1]) for n in ("input_ids", "attention_mask", "token_type_ids")}
    outputs = {t["name"][0]: (t["data_type"][0], t["dims"]) for t in cfg["output"]}
    assert outputs == {"last_hidden_state": ("TYPE_FP32", [-1, 64]), "pooler_output": ("TYPE_FP32", [64])}
    assert cfg["dynamic_batching"] == [{"max_queue_delay_microseconds": [100]}]


def test_the_version_model_runs_with_the_config_shapes(unpacked):
    import numpy as np

    from onnxforge.runners import make_session

    session, _ = make_session(unpacked / "triton" / "tiny" / "1" / "model.onnx", "cpu")
    feeds = {i.name: np.ones((5, 9), dtype=np.int64) for i in session.get_inputs()}
    hidden, pooled = session.run(None, feeds)
    assert hidden.shape == (5, 9, 64) and pooled.shape == (5, 64)  # batch added by Triton, then -1 and 64


def test_config_parses_with_tritons_own_schema(unpacked):
    proto = load_model_config_proto()
    if proto is None:
        pytest.skip("tritonclient is not installed (pip install tritonclient); the strict text parser covers the format")
    from google.protobuf import text_format

    cfg = text_format.Parse((unpacked / "triton" / "tiny" / "config.pbtxt").read_text(), proto())
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
    assert [(i.name, proto.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"]
             .enum_type.values_by_number[i.data_type].name, list(i.dims)) for i in cfg.input] == [
        ("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1]), ("token_type_ids", "TYPE_INT64", [-1])]
    assert [list(o.dims) for o in cfg.output] == [[-1, 64], [64]]
    assert cfg.HasField("dynamic_batching")
    # and the schema really rejects what Triton would reject
    with pytest.raises(text_format.ParseError):
        text_format.Parse(config_pbtxt("x", SIGNATURE).replace("TYPE_FP32", "TYPE_FLOAT"), proto())


def test_check_config_finds_what_is_wrong():
    good = config_pbtxt("m", SIGNATURE)
    assert check_config(good, SIGNATURE) == []
    assert any("data_type" in p for p in check_config(good.replace("TYPE_INT64", "TYPE_INT32", 1), SIGNATURE))
    assert any("dims" in p for p in check_config(good.replace("dims: [ -1, 64 ]", "dims: [ 64 ]"), SIGNATURE))
    assert any("dynamic_batching" in p for p in check_config(good.split("dynamic_batching")[0], SIGNATURE))
    assert any("platform" in p for p in check_config(good.replace("onnxruntime_onnx", "tensorrt_plan"), SIGNATURE))
    assert any("names" in p for p in check_config(good.replace('"pooler_output"', '"pooled"'), SIGNATURE))
    assert any("parse" in p or "ModelConfig" in p for p in check_config(good.replace("input [", "input [[", 1), SIGNATURE))


def test_unbatched_graph_gets_max_batch_size_0_and_full_dims():
    fixed = {"inputs": [{"name": "input_ids", "dtype": "int64", "dims": [1, "sequence"]}],
             "outputs": [{"name": "logits", "dtype": "float16", "dims": [1, 3]}]}
    text = config_pbtxt("m", fixed)
    cfg = parse_pbtxt(text)
    assert cfg["max_batch_size"] == [0] and "dynamic_batching" not in cfg
    assert cfg["input"][0]["dims"] == [1, -1] and cfg["output"][0]["data_type"] == ["TYPE_FP16"]
    assert check_config(text, fixed) == []


@pytest.mark.parametrize("bad", ['name: "x" platform', 'name "x"', "input [ { name: 'x' } ", "a: }", "x: [1 2]"])
def test_parser_rejects_malformed_text(bad):
    with pytest.raises(ValueError):
        parse_pbtxt(bad)


def test_an_openvino_variant_is_refused_for_triton_with_nothing_written(tiny_artifact, copy_artifact, cli, tmp_path):
    """Triton's onnxruntime backend reads ONNX only: asking for an IR there is exit 2 naming the ONNX variants."""
    folder = copy_artifact(tiny_artifact)
    code, out, err = cli("optimize", folder, "--precision", "int8", "--engine", "openvino", "--allow-lossy")
    assert code == 0, (out, err)
    before = (folder / "onnxforge.json").read_text()
    out_file = tmp_path / "p.tar.gz"
    code, _, err = cli("package", folder, "--out", out_file, "--triton", "--triton-variant", "ov-int8")
    assert code == 2 and "OpenVINO IR" in err and "--triton-variant base" in err, err
    code, _, err = cli("package", folder, "--out", out_file, "--triton", "--variant", "ov-int8")
    assert code == 2 and "package an ONNX variant too" in err, err
    assert not out_file.exists() and not list(tmp_path.glob("*.tar.gz*"))
    assert (folder / "onnxforge.json").read_text() == before
