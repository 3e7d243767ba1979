"""OpenVINO variants: bf16 IR parity on real text, NNCF int8 gates, and the refusals (no bf16, no openvino)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from onnxforge.artifact import Artifact, sha256_file
from onnxforge.data import sample_texts
from onnxforge.errors import CheckFailed, UserInputError

from .helpers import real_text_feeds, torch_model

EVAL_TEXTS = 300  # offsets 0-299: disjoint from calibration (1000+) and check (1500+) texts


def _has_bf16() -> bool:
    from onnxforge.runtime.openvino import cpu_has_bf16

    return cpu_has_bf16()


needs_bf16 = pytest.mark.skipif(not _has_bf16(), reason="this CPU has no bf16 compute (AMX / AVX512-BF16) for OpenVINO")


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)


@pytest.fixture(scope="session")
def minilm_ov(minilm_artifact, tmp_path_factory):
    """A MiniLM copy with the OpenVINO bf16 and int8 variants built: (folder, {variant: report})."""
    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    folder = tmp_path_factory.mktemp("minilm_ov") / "art"
    shutil.copytree(minilm_artifact, folder)
    reports = {"ov-int8": optimize_artifact(folder, OptimizeOptions(precision="int8", engine="openvino"))}
    if _has_bf16():
        reports["bf16"] = optimize_artifact(folder, OptimizeOptions(precision="bf16"))
    return folder, reports


@pytest.fixture(scope="session")
def torch_reference(minilm_artifact):
    """PyTorch fp32 mean-pooled embeddings of 300 real texts, in length-sorted batches of 25."""
    from onnxforge.runners import run_torch

    module = torch_model(str(minilm_artifact))
    spec = Artifact.open(minilm_artifact).spec
    texts = sorted(sample_texts(EVAL_TEXTS), key=len)
    batches = [real_text_feeds(minilm_artifact, texts[i:i + 25]) for i in range(0, len(texts), 25)]
    return [(f, _pool(run_torch(module, spec, f)["last_hidden_state"], f["attention_mask"])) for f in batches]


def _cosines(folder, variant: str, reference) -> np.ndarray:
    from onnxforge.runtime.openvino import OpenVINOEngine, OpenVINOOptions

    entry = Artifact.open(folder).variants[variant]
    engine = OpenVINOEngine.open(folder / entry["file"], options=OpenVINOOptions(precision=entry["inference_precision"]))
    out = []
    for feeds, ref in reference:
        got = _pool(engine.run(feeds)["last_hidden_state"], feeds["attention_mask"])
        out.append((ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1))
    return np.concatenate(out)


@needs_bf16
def test_bf16_variant_parity_on_real_text(minilm_ov, torch_reference):
    folder, reports = minilm_ov
    assert reports["bf16"], reports["bf16"].failures()
    cos = _cosines(folder, "bf16", torch_reference)
    assert cos.size == EVAL_TEXTS
    assert cos.min() >= 0.999, cos.min()
    assert cos.mean() >= 0.9995, cos.mean()


@needs_bf16
def test_bf16_variant_layout_and_manifest(minilm_ov):
    folder, reports = minilm_ov
    # MiniLM's six attentions went into OpenVINO's fused op (optimize.ov_rules.sdpa_attention).
    assert reports["bf16"].to_dict()["fusion"]["fused_ops"] == {"ScaledDotProductAttention": 6}
    art = Artifact.open(folder)
    entry = art.variants["bf16"]
    assert entry["file"] == "openvino/openvino_model.xml"
    assert (entry["engine"], entry["precision"], entry["inference_precision"], entry["lossy"]) == \
        ("openvino", "bf16", "bf16", False)
    for name in ("openvino/openvino_model.xml", "openvino/openvino_model.bin"):
        assert art.manifest["files"][name]["sha256"] == sha256_file(folder / name)
    assert art.require_recorded("bf16", "test") == folder / "openvino" / "openvino_model.xml"
    assert not [p for p in folder.iterdir() if p.name.startswith(".optimize-")]  # no staging left behind


def test_nncf_int8_meets_the_gates_on_real_text(minilm_ov, torch_reference):
    folder, reports = minilm_ov
    report = reports["ov-int8"]
    assert report, report.failures()
    entry = Artifact.open(folder).variants["ov-int8"]
    assert entry["file"] == "openvino/openvino_model_qint8_quantized.xml" and entry["precision"] == "int8"
    # Really int8, not an fp32 IR: at least one FakeQuantize per Linear layer (6 per encoder layer).
    assert report.openvino["fake_quantize_nodes"] >= 6 * Artifact.open(folder).spec.num_layers
    assert entry["inference_precision"] == "f32"  # see optimize.bf16.inference_precision
    cos = _cosines(folder, "ov-int8", torch_reference)
    assert cos.min() >= 0.99, cos.min()
    assert cos.mean() >= 0.995, cos.mean()
    assert cos.min() < 0.9999  # quantization is visible: the check could fail


def test_int8_that_misses_its_gates_is_refused_then_kept_with_allow_lossy(tiny_artifact, copy_artifact):
    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    folder = copy_artifact(tiny_artifact)
    before = (folder / "onnxforge.json").read_text()
    strict = OptimizeOptions(precision="int8", engine="openvino", int8_min_cosine=0.999999, int8_mean_cosine=0.999999)
    with pytest.raises(CheckFailed, match="misses its quality gates"):
        optimize_artifact(folder, strict)
    assert not (folder / "openvino").exists() or not any((folder / "openvino").iterdir())
    assert (folder / "onnxforge.json").read_text() == before
    report = optimize_artifact(folder, OptimizeOptions(precision="int8", engine="openvino", int8_min_cosine=0.999999,
                                                       int8_mean_cosine=0.999999, allow_lossy=True))
    assert not report.checks_passed
    assert json.loads((folder / "onnxforge.json").read_text())["variants"]["ov-int8"]["lossy"] is True


def test_bf16_on_a_cpu_without_bf16_exits_2(tiny_artifact, copy_artifact, cli, monkeypatch):
    import onnxforge.runtime.openvino as ov_engine

    monkeypatch.setattr(ov_engine, "cpu_capabilities", lambda: ("FP32", "INT8", "EXPORT_IMPORT"))
    folder = copy_artifact(tiny_artifact)
    code, out, err = cli("optimize", folder, "--precision", "bf16")
    assert code == 2, (out, err)
    assert "AMX or AVX512-BF16" in err and "FP32, INT8" in err
    assert "Traceback" not in err and "bf16" not in Artifact.open(folder).variants


def test_missing_openvino_exits_2_with_the_install_command(tiny_artifact, copy_artifact, cli, monkeypatch):
    import onnxforge.runtime.openvino as ov_engine

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    monkeypatch.setattr(ov_engine, "_CORE", None)
    folder = copy_artifact(tiny_artifact)
    code, out, err = cli("optimize", folder, "--precision", "bf16")
    assert code == 2, (out, err)
    assert "openvino package is not installed" in err and "pip install openvino" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("kw, message", [
    (dict(precision="bf16", engine="ort"), "cannot be built for --engine ort"),
    (dict(precision="fp16", engine="openvino"), "cannot be built for --engine openvino"),
    (dict(precision="int8", engine="tensorrt"), "is not known"),
])
def test_engine_and_precision_combinations_are_checked(kw, message):
    from onnxforge.optimize import OptimizeOptions

    with pytest.raises(UserInputError, match=message):
        OptimizeOptions(**kw)


def test_default_engine_per_precision():
    from onnxforge.optimize import OptimizeOptions

    assert OptimizeOptions(precision="bf16").engine == "openvino"
    assert OptimizeOptions(precision="int8").engine == "ort"
    assert OptimizeOptions(precision="int8", engine="openvino").variant == "ov-int8"


def test_cli_renders_an_openvino_int8_report(tiny_artifact, copy_artifact, cli):
    folder = copy_artifact(tiny_artifact)
    code, out, err = cli("optimize", folder, "--precision", "int8", "--engine", "openvino", "--allow-lossy")
    assert code == 0, (out, err)
    assert "openvino/openvino_model_qint8_quantized.xml: int8 for cpu" in out
    assert "FakeQuantize" in out and "check held-out texts" in out
    assert Artifact.open(folder).variants["ov-int8"]["engine"] == "openvino"


def test_ffn_output_matmuls_are_found_by_structure_not_by_name(tiny_artifact):
    """The configs that keep FFN output MatMuls in float select them by weight shape: the
    dynamo export's node names (node_MatMul_12) match none of the TorchScript-era names."""
    from onnxforge.optimize.ov_int8 import CONFIGS, OvInt8Config, _down_projections, _kept_float, convert_onnx

    art = Artifact.open(tiny_artifact)
    model = convert_onnx(art.variant_path("base"))
    layers = art.spec.num_layers
    found = _down_projections(model)
    assert len(found) == layers, found
    hidden = art.spec.hidden_size
    for op in model.get_ordered_ops():
        if op.get_friendly_name() in found:  # intermediate -> hidden, whichever way the weight is stored
            shape = tuple(op.input_value(1).get_partial_shape().to_shape())
            assert hidden in shape and max(shape) > hidden, (op.get_friendly_name(), shape)
    assert _kept_float(model, CONFIGS["nncf-ffn-out-fp"]) == found
    assert _kept_float(model, CONFIGS["nncf-early-ffn-out-fp"]) == found[:2]
    assert _kept_float(model, CONFIGS["nncf-sq0.8"]) == []
    with pytest.raises(UserInputError, match="not known"):
        _kept_float(model, OvInt8Config("odd", keep_float="attention"))
