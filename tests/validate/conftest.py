"""Validate-stage fixtures: a 4-layer tiny BERT (so 'encoder layer 2' exists), the
baked-shape factory export, and helpers to corrupt or extend a copied artifact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deep_tiny_dir(tmp_path_factory, minilm_dir) -> Path:
    """A seeded 4-layer BertModel whose biases and LayerNorm parameters are random too
    (default init leaves them 0 and 1, and scaling a zero bias changes nothing)."""
    import torch
    import transformers

    from tests.fixtures.custom_models import tiny_config

    folder = tmp_path_factory.mktemp("deep_tiny")
    torch.manual_seed(0)
    model = transformers.BertModel(tiny_config(num_hidden_layers=4)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.05)
            elif "LayerNorm.weight" in name:
                p.uniform_(0.8, 1.2)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def deep_tiny_artifact(tmp_path_factory, deep_tiny_dir) -> Path:
    """The 4-layer tiny BERT exported with TorchScript. Read-only."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    out = tmp_path_factory.mktemp("deep_tiny_art") / "art"
    report = export_model(resolve_source(str(deep_tiny_dir)), out, ExportOptions(exporter="torchscript"))
    assert report, report.check
    return out


@pytest.fixture(scope="session")
def deep_tiny_dynamo_artifact(tmp_path_factory, deep_tiny_dir) -> Path:
    """The 4-layer tiny BERT exported with the dynamo exporter (other tensor names). Read-only."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    out = tmp_path_factory.mktemp("deep_tiny_dynamo") / "art"
    report = export_model(resolve_source(str(deep_tiny_dir)), out, ExportOptions(exporter="dynamo"))
    assert report, report.check
    return out


@pytest.fixture(scope="session")
def baked_artifact(tmp_path_factory) -> Path:
    """build_baked_shape_bert exported by TorchScript (whose trace bakes the shape): the export
    check fails (exit 1) but the folder is published, as a user would find it. Read-only."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    out = tmp_path_factory.mktemp("baked") / "art"
    source = resolve_source("tests.fixtures.custom_models:build_baked_shape_bert", app_dir=str(REPO))
    report = export_model(source, out, ExportOptions(exporter="torchscript"))
    assert not report and (out / "model.onnx").is_file()
    return out


def scale_initializer(model_path: Path, pick, factor: float = 1.05) -> str:
    """Multiply one initializer of an ONNX file in place; ``pick(model)`` names it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    name = pick(model)
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            array = numpy_helper.to_array(t)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array((array * factor).astype(array.dtype), name))
            break
    else:
        raise AssertionError(f"no initializer {name}")
    onnx.save(model, str(model_path))
    return name


def add_fused_variants(artifact: Path, *, fp16: bool = True) -> None:
    """Register 'optimized' (fused fp32) and 'fp16' variants built with
    onnxruntime.transformers, the way the optimize stage builds them."""
    from onnxruntime.transformers import optimizer

    manifest = json.loads((artifact / "onnxforge.json").read_text())
    spec = manifest["spec"]
    model = optimizer.optimize_model(str(artifact / "model.onnx"), model_type="bert", num_heads=spec["num_heads"],
                                     hidden_size=spec["hidden_size"], opt_level=0)
    assert model.get_fused_operator_statistics()["Attention"] == spec["num_layers"]
    model.save_model_to_file(str(artifact / "model_optimized.onnx"))
    manifest["variants"]["optimized"] = {"file": "model_optimized.onnx", "precision": "fp32"}
    if fp16:
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(artifact / "model_fp16.onnx"))
        manifest["variants"]["fp16"] = {"file": "model_fp16.onnx", "precision": "fp16"}
    (artifact / "onnxforge.json").write_text(json.dumps(manifest, indent=2))


def layer_initializer(model, layer: int, suffix: str = "LayerNorm.weight") -> str:
    names = [t.name for t in model.graph.initializer if t.name.endswith(f"layer.{layer}.{suffix}")]
    assert names, [t.name for t in model.graph.initializer]
    return sorted(names)[0]


def layer_matmul_weight(model, layer: int, part: str = "intermediate") -> str:
    """The weight of a MatMul inside encoder layer ``layer`` (TorchScript folds the
    transposed weights into initializers named onnx::MatMul_N, so find it by node)."""
    inits = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMul" and f"layer.{layer}/{part}" in node.name:
            for i in node.input:
                if i in inits:
                    return i
    raise AssertionError("no MatMul weight found")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def set_source(artifact: Path, source: dict) -> None:
    """Point a copied artifact's manifest at another model source."""
    manifest = read_json(artifact / "onnxforge.json")
    manifest["source"] = source
    (artifact / "onnxforge.json").write_text(json.dumps(manifest, indent=2))
