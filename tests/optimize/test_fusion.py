"""Fusion: exact fused-op counts on both exporter paths, parity with PyTorch, the report."""

from __future__ import annotations

import onnx
import pytest

from onnxforge.artifact import Artifact, sha256_file
from onnxforge.data import sample_texts
from onnxforge.graph import fused_counts

from .helpers import parity_vs_torch

TEXTS = sample_texts(6, offset=40)


def _counts(folder, variant="optimized"):
    art = Artifact.open(folder)
    return fused_counts(onnx.load(str(art.variant_path(variant)), load_external_data=False))


def _cpu_graph(folder, layers: int) -> dict:
    """The fp32 variant is built for CPU: every residual + LayerNorm fused, then emitted as
    Sum + LayerNormalization (ORT's CPU SkipLayerNormalization kernel is slower)."""
    model = onnx.load(str(Artifact.open(folder).variant_path("optimized")), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Sum") == 2 * layers and ops.count("LayerNormalization") == 2 * layers
    choices = Artifact.open(folder).stage("optimize.optimized")["fusion"]["kernel_choices"]
    assert choices["device"] == "cpu" and [s["rewrites"] for s in choices["steps"]] == [2 * layers]
    return _counts(folder)


def _check_record(folder, report, *, route):
    art = Artifact.open(folder)
    variant = art.variants["optimized"]
    assert variant == {"file": "model_optimized.onnx", "precision": "fp32", "device": "cpu", "engine": "ort",
                       "from": "base", "lossy": False}
    assert art.manifest["files"]["model_optimized.onnx"]["sha256"] == sha256_file(folder / "model_optimized.onnx")
    rec = art.stage("optimize.optimized")
    assert rec == report.to_dict()
    assert rec["passed"] and rec["fully_fused"] and rec["checks_passed"]
    assert rec["fusion"]["route"] == route
    assert rec["fusion"]["nodes_after"] < rec["fusion"]["nodes_before"]
    assert all(c["passed"] for c in rec["checks"]) and {c["name"] for c in rec["checks"]} >= {"goldens"}
    return rec


def test_minilm_torchscript_fully_fused_by_ort(minilm_opt):
    folder, report = minilm_opt
    assert report and report.fully_fused
    assert _cpu_graph(folder, 6) == {"Attention": 6, "BiasGelu": 6, "EmbedLayerNormalization": 1}
    rec = _check_record(folder, report, route="onnxruntime")
    f = rec["fusion"]
    assert f["expected"] == {"Attention": 6, "SkipLayerNormalization": 12, "Gelu": 6, "EmbedLayerNormalization": 1,
                             "RotaryEmbedding": 0}
    assert f["achieved"] == f["expected"] and f["missing"] == {}
    # The ORT optimizer ran with the spec's numbers, never 0-guessing.
    assert f["tools"][0]["settings"] == {"model_type": "bert", "num_heads": 12, "hidden_size": 384, "opt_level": 0}
    assert f["right_padding_required"] and any("right-padded" in n for n in rec["notes"])
    worst = parity_vs_torch(folder, "optimized", texts=TEXTS)
    assert max(worst.values()) <= 1e-4, worst


def test_minilm_dynamo_fused_by_onnxscript(minilm_dynamo_opt):
    folder, report = minilm_dynamo_opt
    assert report, report.failures()
    assert _cpu_graph(folder, 6) == {"Attention": 6, "BiasGelu": 6, "EmbedLayerNormalization": 1}
    assert report.fusion["achieved"] == {"Attention": 6, "SkipLayerNormalization": 12, "Gelu": 6,
                                         "EmbedLayerNormalization": 1, "RotaryEmbedding": 0}
    rec = _check_record(folder, report, route="onnxscript+onnxruntime")
    tools = {t["tool"]: t for t in rec["fusion"]["tools"]}
    assert tools["onnxscript.rewriter.ort_fusions"]["fused"]["Attention"] == 6
    assert tools["onnxscript.rewriter.ort_fusions"]["settings"]["fold_constants"] is True
    # onnxforge's own rule (the rule table's first step) fused the embeddings.
    assert tools["onnxforge.optimize.rules.embed_layer_norm"]["fused"]["EmbedLayerNormalization"] == 1
    assert [t["settings"].get("rule") for t in rec["fusion"]["tools"][:8]] == [
        "embed_layer_norm", "attention_bias_merge", "rotary_embedding", "layer_norm_zero_beta", "ort_fusions",
        "attention_packing", "packed_in_proj", "sequence_first_out_proj"]
    assert rec["fusion"]["missing"] == {} and not rec["fusion"]["right_padding_required"]
    per_layer = rec["fusion"]["per_layer"]
    assert per_layer["reliable"] and per_layer["embeddings"]["fused"] == {"EmbedLayerNormalization": 1}
    assert [layer["fused"] for layer in per_layer["layers"]] == [
        {"Attention": 1, "SkipLayerNormalization": 2, "Gelu": 1}] * 6
    # The packed QKV weights were folded into initializers (no runtime Concat of weights).
    model = onnx.load(str(folder / "model_optimized.onnx"), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    assert all(n.input[1] in inits for n in model.graph.node if n.op_type == "Attention")
    worst = parity_vs_torch(folder, "optimized", texts=TEXTS)
    assert max(worst.values()) <= 1e-4, worst


def test_tiny_torchscript(tiny_opt):
    folder, report = tiny_opt
    assert report
    assert _cpu_graph(folder, 2) == {"Attention": 2, "BiasGelu": 2, "EmbedLayerNormalization": 1}
    _check_record(folder, report, route="onnxruntime")
    worst = parity_vs_torch(folder, "optimized", texts=TEXTS)
    assert max(worst.values()) <= 1e-4, worst


def test_tiny_dynamo(tiny_dynamo_opt):
    folder, report = tiny_dynamo_opt
    assert report
    assert _cpu_graph(folder, 2) == {"Attention": 2, "BiasGelu": 2, "EmbedLayerNormalization": 1}
    rec = _check_record(folder, report, route="onnxscript+onnxruntime")
    # onnxscript's Attention takes an additive mask: no right-padding assumption.
    assert not rec["fusion"]["right_padding_required"]
    worst = parity_vs_torch(folder, "optimized", texts=TEXTS)
    assert max(worst.values()) <= 1e-4, worst


def test_fused_attention_assumes_right_padding(tiny_opt):
    """The documented limit, demonstrated: a left-padded batch breaks ORT's mask_index
    Attention (so the tokenizer must pad right), while right padding matches PyTorch."""
    import numpy as np

    from onnxforge.inputs import random_inputs
    from onnxforge.runners import run_torch

    from .helpers import masked_max_abs, run_variant, torch_model

    folder, _ = tiny_opt
    spec = Artifact.open(folder).spec
    feeds = random_inputs(spec, 3, 20, seed=5)
    left = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in feeds.items()}  # padding moved to the left
    module = torch_model(str(folder))
    ok = masked_max_abs(run_torch(module, spec, feeds)["last_hidden_state"],
                        run_variant(folder, "optimized", feeds)["last_hidden_state"], feeds["attention_mask"])
    bad = masked_max_abs(run_torch(module, spec, left)["last_hidden_state"],
                         run_variant(folder, "optimized", left)["last_hidden_state"], left["attention_mask"])
    assert ok <= 1e-4 < bad


@pytest.fixture(scope="module")
def sigmoid_attention_artifact(tmp_path_factory):
    """A real encoder with sigmoid attention: nothing matches it, so it cannot fully fuse."""
    import os

    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    source = resolve_source("tests.optimize.models:build_sigmoid_attention_encoder",
                            app_dir=root, num_heads=4, hidden_size=64, num_layers=2)
    out = tmp_path_factory.mktemp("sigmoid") / "art"
    assert export_model(source, out, ExportOptions())
    return out


def test_strict_exits_1_when_not_fully_fused(sigmoid_attention_artifact, copy_artifact, cli):
    folder = copy_artifact(sigmoid_attention_artifact)
    code, out, err = cli("optimize", folder, "--strict")
    assert code == 1, (out, err)
    assert "NOT fully fused" in err and "Attention 0/2" in err
    rec = Artifact.open(folder).stage("optimize.optimized")
    assert rec["passed"] is False and rec["fully_fused"] is False and rec["checks_passed"] is True
    f = rec["fusion"]
    assert f["achieved"]["Attention"] == 0
    assert f["achieved"]["SkipLayerNormalization"] == 4 and f["achieved"]["Gelu"] == 2  # the rest did fuse
    assert "Softmax" in f["missing"]["Attention"] and "failed to match" in f["missing"]["Attention"]
    # Both routes were tried before giving up.
    assert {c["route"] for c in f["candidates"]} == {"onnxruntime", "onnxscript+onnxruntime"}
    assert rec["failures"] and rec["failures"][0].startswith("Attention: 0/2")


def test_not_strict_warns_loudly_and_exits_0(sigmoid_attention_artifact, copy_artifact, cli):
    folder = copy_artifact(sigmoid_attention_artifact)
    code, out, err = cli("optimize", folder)
    assert code == 0, err
    assert "warning" in err and "NOT fully fused" in err
    assert "MISSING" in out
    rec = Artifact.open(folder).stage("optimize.optimized")
    assert rec["passed"] is True and rec["fully_fused"] is False
    # The unfused graph still computes what PyTorch computes.
    worst = parity_vs_torch(folder, "optimized")
    assert max(worst.values()) <= 1e-4, worst
