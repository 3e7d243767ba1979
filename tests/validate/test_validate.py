"""Validate stage, end to end through the CLI: pass, fail with localization, reports."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from onnxforge.artifact import Artifact
from tests.validate.conftest import (
    add_fused_variants, layer_initializer, layer_matmul_weight, read_json, scale_initializer,
)

METRICS = ("max_abs", "mean_abs", "max_rel", "min_cosine", "mean_cosine", "argmax_agreement", "atol_needed")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def junit_cases(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root.findall("./testsuite/testcase")


def test_correct_export_passes(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    art = copy_artifact(deep_tiny_artifact)
    model_hash = sha(art / "model.onnx")
    code, out, err = cli("validate", art, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert code == 0, err
    assert "passed" in out and "last_hidden_state" in out and "pooler_output" in out
    report = read_json(tmp_path / "r.json")
    assert report["passed"] is True and report["failures"] == []
    assert report["provider"] == "CPUExecutionProvider" and report["precision"] == "fp32"
    # Shapes other than the export's (trace 2x16, check 3x37): batch 1/3/8, odd lengths,
    # the model maximum (128 here), and the 200-sentence built-in sample.
    names = [g["name"] for g in report["groups"]]
    for b in (1, 3, 8):
        for s in (1, 7, 33, 128):
            if (b, s) != (8, 1):
                assert f"random {b}x{s}" in names
    assert "random 2x16" not in names and "random 3x37" not in names
    text = [g for g in report["groups"] if g["kind"] == "text"]
    assert text and text[0]["samples"] == 200 and text[0]["source"].startswith("built-in sample")
    # Right-padded rows of different lengths within a batch, in random and text groups.
    padded = [g for g in report["groups"] if g["name"] == "random 8x33"][0]
    assert padded["min_length"] < padded["max_length"] == 33
    assert text[0]["min_length"] < text[0]["max_length"]
    # The manifest carries the summary; the artifact's model is untouched.
    stage = Artifact.open(art).stage("validate.base")
    assert stage["passed"] is True and stage["provider"] == "CPUExecutionProvider"
    assert stage["tolerances"]["last_hidden_state"]["atol"] == 1e-4
    assert stage["samples"] == sum(g["samples"] for g in report["groups"]) and stage["groups"] == len(names)
    assert stage["texts"] == 200 and stage["file_sha256"] == model_hash
    assert set(METRICS) <= set(stage["outputs"]["last_hidden_state"])
    assert stage["outputs"]["last_hidden_state"]["max_abs"] < 1e-5
    assert sha(art / "model.onnx") == model_hash
    cases = junit_cases(tmp_path / "r.xml")
    assert len(cases) == 2 * len(names) and not any(c.find("failure") is not None for c in cases)


@pytest.mark.parametrize(
    "pick",
    [
        pytest.param(lambda m: layer_initializer(m, 2, "attention.output.LayerNorm.weight"), id="layernorm-weight"),
        pytest.param(lambda m: layer_matmul_weight(m, 2, "intermediate"), id="matmul-weight"),
    ],
)
def test_layer2_corruption_fails_and_is_localized(deep_tiny_artifact, copy_artifact, cli, tmp_path, pick):
    art = copy_artifact(deep_tiny_artifact)
    name = scale_initializer(art / "model.onnx", pick, 1.05)
    code, out, err = cli("validate", art, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert code == 1, (name, out, err)
    assert "Traceback" not in out + err
    report = read_json(tmp_path / "r.json")
    # Every failing output is listed before the exit, with every group it fails on.
    for output in report["outputs"]:
        if not report["outputs"][output]["passed"]:
            assert f"{output}: fails on" in err
    assert "encoder layer 2" in err
    loc = report["localization"]
    assert loc["status"] == "found" and loc["layer"] == 2 and loc["stage"] == "encoder layer 2"
    assert loc["gradual"] is False  # a jump, not accumulated rounding
    assert loc["torch_module"].endswith("encoder.layer.2")
    assert "layer.2" in loc["onnx_tensor"], loc
    stages = {s["stage"]: s for s in loc["stages"]}
    assert [s for s in stages] == ["embeddings", "encoder layer 0", "encoder layer 1", "encoder layer 2", "encoder layer 3"]
    for before in ("embeddings", "encoder layer 0", "encoder layer 1"):
        assert stages[before]["rel_error"] < 1e-5, stages[before]
    assert stages["encoder layer 2"]["rel_error"] > 1e-3
    assert Artifact.open(art).stage("validate.base")["localization"]["layer"] == 2
    assert any("changed since the manifest recorded it" in n for n in report["notes"])
    # JUnit: parseable, one case per output and group, failing ones carry <failure>.
    cases = junit_cases(tmp_path / "r.xml")
    assert len(cases) == len(report["checks"])
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == len(report["failures"]) > 0
    case = failed[0]
    assert case.get("classname").startswith("onnxforge.validate.base.") and case.get("name").startswith(("random", "text"))
    assert "encoder layer 2" in case.find("failure").text


def test_fused_variants_pass_and_corruption_is_localized(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    """optimized (fused fp32) and fp16 variants built like the optimize stage does."""
    art = copy_artifact(deep_tiny_artifact)
    add_fused_variants(art)
    code, _, err = cli("validate", art, "--variant", "optimized")
    assert code == 0, err
    code, _, err = cli("validate", art, "--variant", "fp16", "--json", tmp_path / "fp16.json")
    assert code == 0, err
    fp16 = read_json(tmp_path / "fp16.json")
    assert fp16["precision"] == "fp16"
    assert fp16["tolerances"]["last_hidden_state"] == {"atol": 2e-2, "rtol": 1e-2, "min_cosine": 0.9999, "min_argmax": 0.99}
    assert 1e-5 < fp16["outputs"]["last_hidden_state"]["max_abs"] < 2e-2
    manifest = Artifact.open(art).manifest
    assert manifest["stages"]["validate.optimized"]["passed"] and manifest["stages"]["validate.fp16"]["passed"]

    # fp16 noise is larger, so a larger break: still found, in the fp16 graph's own tensors.
    scale_initializer(art / "model_fp16.onnx", lambda m: layer_initializer(m, 2, "output.LayerNorm.weight"), 1.5)
    code, _, err = cli("validate", art, "--variant", "fp16", "--json", tmp_path / "fp16b.json")
    assert code == 1
    loc = read_json(tmp_path / "fp16b.json")["localization"]
    assert loc["layer"] == 2 and loc["onnx_op"] == "SkipLayerNormalization", loc

    scale_initializer(art / "model_optimized.onnx", lambda m: layer_initializer(m, 2, "output.LayerNorm.weight"), 1.05)
    code, _, err = cli("validate", art, "--variant", "optimized", "--json", tmp_path / "opt.json")
    assert code == 1
    loc = read_json(tmp_path / "opt.json")["localization"]
    assert loc["layer"] == 2 and loc["onnx_op"] == "SkipLayerNormalization", loc
    assert loc["stages"][0]["onnx_op"] == "EmbedLayerNormalization"
    assert "encoder layer 2" in err


def test_dynamo_export_corruption_is_localized(deep_tiny_dynamo_artifact, copy_artifact, cli, tmp_path):
    """The dynamo exporter names tensors layer_norm_N: matching by value still finds layer 2."""
    art = copy_artifact(deep_tiny_dynamo_artifact)
    code, _, err = cli("validate", art, "--shape", "3x33", "--shape", "8x7")
    assert code == 0, err
    scale_initializer(art / "model.onnx", lambda m: layer_initializer(m, 2, "output.LayerNorm.weight"), 1.05)
    code, _, err = cli("validate", art, "--shape", "3x33", "--shape", "8x7", "--json", tmp_path / "r.json")
    assert code == 1
    loc = read_json(tmp_path / "r.json")["localization"]
    assert loc["layer"] == 2 and loc["onnx_op"] == "LayerNormalization", loc
    assert "encoder layer 2" in err


def test_custom_factory_model_is_localized(tmp_path, cli, factory_env, copy_artifact):
    """A custom module wrapping a BertModel: hooks find the nested embeddings and layers."""
    out = tmp_path / "dict"
    code, _, err = cli("export", "tests.fixtures.custom_models:build_dict_bert", "--out", out, "--exporter", "torchscript")
    assert code == 0, err
    code, _, err = cli("validate", out, "--shape", "3x7", "--shape", "1x33")
    assert code == 0, err
    # (Default init leaves every LayerNorm weight at 1, and the exporter shares those
    # identical tensors, so corrupt a weight matrix instead.)
    scale_initializer(out / "model.onnx", lambda m: layer_matmul_weight(m, 1, "intermediate"), 1.05)
    code, _, err = cli("validate", out, "--shape", "3x7", "--shape", "1x33", "--json", tmp_path / "r.json")
    assert code == 1
    report = read_json(tmp_path / "r.json")
    assert set(report["outputs"]) == {"token_embeddings", "sentence_embedding"}
    assert report["localization"]["layer"] == 1
    assert report["localization"]["torch_module"] == "model.encoder.encoder.layer.1"


def test_baked_sequence_length_fails_at_other_lengths(baked_artifact, copy_artifact, cli, tmp_path):
    art = copy_artifact(baked_artifact)
    code, out, err = cli("validate", art, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert code == 1, (out, err)
    assert "Traceback" not in out + err and "token_embeddings: fails on" in err
    report = read_json(tmp_path / "r.json")
    assert report["failures"] and all(not c["passed"] for c in report["checks"])
    assert all("Reshape" in c["error"] for c in report["checks"])
    assert any("no tokenizer.json" in n for n in report["notes"])
    loc = report["localization"]
    assert loc["status"] == "onnx_failed" and loc["runs_at_trace_shape"] is True
    assert "baked" in loc["message"] and loc["onnx_node"]
    cases = junit_cases(tmp_path / "r.xml")
    assert all(c.find("failure") is not None for c in cases)
    assert cases[0].find("failure").get("type") == "RuntimeFailure"
    # At the traced shape itself the graph is right: only other lengths expose it.
    code, _, err = cli("validate", art, "--shape", "2x16")
    assert code == 0, err


def test_tolerance_override_changes_verdict(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    art = copy_artifact(deep_tiny_artifact)
    shape = ("--shape", "3x33")
    code, _, err = cli("validate", art, *shape)
    assert code == 0, err
    # Stricter than fp32 rounding for one output: that output fails, the other still passes.
    code, _, err = cli("validate", art, *shape, "--atol", "last_hidden_state=1e-10", "--rtol", "last_hidden_state=0",
                       "--json", tmp_path / "strict.json")
    assert code == 1
    report = read_json(tmp_path / "strict.json")
    assert report["outputs"]["last_hidden_state"]["passed"] is False
    assert report["outputs"]["pooler_output"]["passed"] is True
    assert report["tolerances"]["last_hidden_state"]["atol"] == 1e-10
    assert report["tolerances"]["pooler_output"]["atol"] == 1e-4
    assert "last_hidden_state: fails on" in err and "pooler_output: fails on" not in err
    # And the other way: a corrupted layer passes once the tolerances admit its error.
    scale_initializer(art / "model.onnx", lambda m: layer_initializer(m, 2, "attention.output.LayerNorm.weight"), 1.05)
    code, _, _ = cli("validate", art, *shape)
    assert code == 1
    code, _, err = cli("validate", art, *shape, "--atol", "0.1", "--min-cosine", "0.99")
    assert code == 0, err
    stage = Artifact.open(art).stage("validate.base")
    assert stage["passed"] and stage["tolerances"]["pooler_output"]["atol"] == 0.1


@pytest.mark.parametrize("task, output", [("sequence-classification", "logits"), ("token-classification", "logits")])
def test_json_metrics_with_logits(tiny_classifier_dir, cli, tmp_path, task, output):
    art = tmp_path / "cls"
    code, _, err = cli("export", tiny_classifier_dir, "--out", art, "--task", task)
    assert code == 0, err
    code, out, err = cli("validate", art, "--shape", "3x33", "--shape", "8x7", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert "argmax" in out
    report = read_json(tmp_path / "r.json")
    assert set(METRICS) <= set(report["outputs"][output])
    assert report["outputs"][output]["argmax_agreement"] == 1.0
    for check in report["checks"]:
        assert set(METRICS) <= set(check["metrics"]) and check["metrics"]["count"] > 0
        assert check["tolerance"]["min_argmax"] == 0.999
    env = report["environment"]
    assert env["versions"]["onnxruntime"] and env["versions"]["torch"] and env["machine"]["cpu_count"]
    assert env["providers_obtained"][0] == report["provider"] == "CPUExecutionProvider"
    assert report["seconds"]["total"] > 0 and report["file_sha256"]


def test_real_text_from_txt_and_csv(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    from onnxforge.data import sample_texts

    art = copy_artifact(deep_tiny_artifact)
    texts = sample_texts(30, offset=500)
    txt = tmp_path / "texts.txt"
    txt.write_text("\ufeff" + "\n\n".join(texts) + "\n   \n", encoding="utf-8")
    code, _, err = cli("validate", art, "--text", txt, "--shape", "1x7", "--json", tmp_path / "t.json", "--max-texts", "25")
    assert code == 0, err
    group = [g for g in read_json(tmp_path / "t.json")["groups"] if g["kind"] == "text"][0]
    assert group["texts"] == 25 and group["texts_in_file"] == 30 and group["file"] == "texts.txt"
    assert any("first 25 of 30" in n for n in read_json(tmp_path / "t.json")["notes"])

    import csv

    table = tmp_path / "rows.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "body"])
        for i, t in enumerate(texts):
            writer.writerow([i, t.replace(". ", ".\n", 1)])  # a quoted newline inside a field
    code, _, err = cli("validate", art, "--text", table, "--column", "body", "--shape", "1x7", "--json", tmp_path / "c.json")
    assert code == 0, err
    group = [g for g in read_json(tmp_path / "c.json")["groups"] if g["kind"] == "text"][0]
    assert group["texts"] == 30 and group["column"] == "body"
    assert Artifact.open(art).stage("validate.base")["text_source"] == "file"


def test_cuda_requested_without_cuda_exits_1(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA works here; the fallback cannot be provoked")
    art = copy_artifact(deep_tiny_artifact)
    code, out, err = cli("validate", art, "--device", "cuda", "--shape", "1x7", "--junit", tmp_path / "r.xml",
                         "--json", tmp_path / "r.json")
    assert code == 1, (out, err)
    assert "CUDAExecutionProvider" in err and "CPUExecutionProvider" in err and "fell back" in err
    assert "Traceback" not in out + err
    # CI still gets its reports, saying why.
    cases = junit_cases(tmp_path / "r.xml")
    assert len(cases) == 1 and "fell back" in cases[0].find("failure").get("message")
    assert read_json(tmp_path / "r.json")["passed"] is False
    assert "validate.base" not in Artifact.open(art).manifest["stages"]


@pytest.mark.cuda
def test_cuda_validation(deep_tiny_artifact, copy_artifact, cli, tmp_path):
    art = copy_artifact(deep_tiny_artifact)
    code, _, err = cli("validate", art, "--device", "cuda", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert read_json(tmp_path / "r.json")["provider"] == "CUDAExecutionProvider"
