"""Export stage: every model source, both exporters, parity at batch 3 x sequence 37."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxforge.artifact import Artifact
from onnxforge.inputs import random_inputs
from onnxforge.runners import make_session, run_session, run_torch
from onnxforge.sources import SourceRef, load_source


def assert_parity(artifact_dir: Path, atol: float = 1e-4, variant: str = "base") -> dict[str, float]:
    """Independent check: rebuild the PyTorch model from the manifest, compare at 3 x 37."""
    art = Artifact.open(artifact_dir)
    spec = art.spec
    loaded = load_source(SourceRef.from_dict(art.manifest["source"]))
    feeds = random_inputs(spec, 3, 37, seed=99)
    assert feeds["input_ids"].shape == (3, 37)
    if "attention_mask" in feeds:
        assert feeds["attention_mask"].sum(1).min() < 37, "the check must include right-padded rows"
    expected = run_torch(loaded.module, spec, feeds)
    session, _ = make_session(art.variant_path(variant), "cpu")
    actual = run_session(session, spec, feeds)
    worst = {}
    mask = feeds.get("attention_mask")
    for name in spec.output_names:
        e, a = expected[name], actual[name]
        assert e.shape == a.shape
        if mask is not None and e.ndim >= 2 and e.shape[1] == 37:
            keep = mask.astype(bool)
            e, a = e[keep], a[keep]
        worst[name] = float(np.abs(e - a).max())
        assert worst[name] <= atol, (name, worst[name])
    return worst


def test_builtin_minilm_export(minilm_artifact):
    art = Artifact.open(minilm_artifact)
    spec = art.spec
    assert spec.input_names == ("input_ids", "attention_mask", "token_type_ids")
    # The built-in ships a sentence-transformers folder: its own pipeline is in the graph.
    assert spec.output_names == ("last_hidden_state", "sentence_embedding")
    assert (spec.num_heads, spec.hidden_size, spec.num_layers, spec.vocab_size) == (12, 384, 6, 30522)
    for name in ("model.onnx", "tokenizer.json", "config.json", "vocab.txt", "goldens.npz"):
        assert (minilm_artifact / name).is_file(), name
        if name != "model.onnx" or True:
            assert art.manifest["files"][name]["sha256"]
    assert art.manifest["export"]["exporter"] == "torchscript"
    assert art.manifest["versions"]["torch"].startswith("2.13")
    assert art.stage("export")["check"]["batch"] == 3
    dims = art.manifest["export"]["dims"]
    assert dims["input_ids"] == ["batch", "sequence"]
    assert dims["last_hidden_state"][:2] == ["batch", "sequence"]
    assert dims["sentence_embedding"][0] == "batch"
    pipeline = art.manifest["pipeline"]
    assert (pipeline["pooling"], pipeline["normalize"], pipeline["max_seq_length"]) == (["mean"], True, 256)
    assert (minilm_artifact / "modules.json").is_file() and (minilm_artifact / "1_Pooling" / "config.json").is_file()
    assert_parity(minilm_artifact)


def test_hf_classifier_folder(tmp_path, tiny_classifier_dir, cli):
    out = tmp_path / "cls"
    code, stdout, stderr = cli("export", tiny_classifier_dir, "--out", out)
    assert code == 0, stderr
    spec = Artifact.open(out).spec
    assert spec.task == "sequence-classification"
    assert spec.output_names == ("logits",)
    assert spec.outputs[0].axes == ("batch", None)
    assert spec.labels == ("neg", "neu", "pos")
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    assert_parity(out)


def test_hf_task_override(tmp_path, tiny_classifier_dir, cli):
    out = tmp_path / "tok"
    code, _, stderr = cli("export", tiny_classifier_dir, "--out", out, "--task", "token-classification")
    assert code == 0, stderr
    spec = Artifact.open(out).spec
    assert spec.task == "token-classification"
    assert spec.outputs[0].axes == ("batch", "sequence", None)


def test_factory_dict_outputs(tmp_path, cli, factory_env, tokenizer_dir):
    out = tmp_path / "custom"
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_dict_bert", "--out", out,
                          "--tokenizer", tokenizer_dir / "tokenizer.json")
    assert code == 0, stderr
    art = Artifact.open(out)
    spec = art.spec
    assert spec.input_names == ("input_ids", "attention_mask")
    assert spec.output_names == ("token_embeddings", "sentence_embedding")
    assert spec.outputs[1].axes == ("batch", None)
    # Heads, hidden size and layers were found on the submodule's transformers config.
    assert (spec.num_heads, spec.hidden_size, spec.num_layers) == (4, 64, 2)
    assert (out / "tokenizer.json").is_file()
    assert_parity(out)


def test_factory_with_weights(tmp_path, cli, factory_env):
    import torch

    from tests.fixtures.custom_models import build_dict_bert

    model = build_dict_bert()
    with torch.no_grad():
        model.proj.weight.mul_(3.0)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "weighted"
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_dict_bert", "--out", out, "--weights", weights)
    assert code == 0, stderr
    assert Artifact.open(out).manifest["source"]["weights"] == str(weights.resolve())
    # The rebuilt reference loads the same weights, so parity holds with the changed layer.
    assert_parity(out)


def test_factory_without_config_reads_its_modules(tmp_path, cli, factory_env):
    # nn.TransformerEncoder carries heads and width in its nn.MultiheadAttention modules: no flags needed.
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_plain_encoder", "--out", tmp_path / "b")
    # (TorchScript cannot export nn.TransformerEncoder's fused inference kernel; dynamo, the default, can.)
    assert code == 0, stderr
    spec = Artifact.open(tmp_path / "b").spec
    assert spec.output_names == ("output_0",) and spec.max_positions == 64
    assert (spec.num_heads, spec.hidden_size, spec.num_layers) == (4, 32, 2)


def test_dynamo_exporter(tiny_dynamo_artifact):
    art = Artifact.open(tiny_dynamo_artifact)
    assert art.manifest["export"]["exporter"] == "dynamo"
    assert art.manifest["export"]["attn_implementation"] == "sdpa"
    assert_parity(tiny_dynamo_artifact)


def test_dynamo_factory(tmp_path, cli, factory_env):
    out = tmp_path / "dyn"
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_dict_bert", "--out", out, "--exporter", "dynamo")
    assert code == 0, stderr
    assert_parity(out)


def test_external_data_forced(tmp_path, cli, tiny_bert_dir):
    out = tmp_path / "ext"
    code, _, stderr = cli("export", tiny_bert_dir, "--out", out, "--external-data-threshold", "0")
    assert code == 0, stderr
    art = Artifact.open(out)
    assert art.manifest["export"]["external_data"] is True
    assert (out / "model.onnx.data").is_file()
    assert (out / "model.onnx").stat().st_size < (out / "model.onnx.data").stat().st_size
    assert "model.onnx.data" in art.manifest["files"]
    assert_parity(out)


def test_baked_shape_fails_with_exit_1(tmp_path, cli, factory_env):
    out = tmp_path / "baked"
    code, stdout, stderr = cli("export", "tests.fixtures.custom_models:build_baked_shape_bert", "--out", out)
    assert code == 1, (stdout, stderr)
    assert "check failed" in stderr
    # The evidence stays: the manifest records the failed check.
    assert Artifact.open(out).stage("export")["passed"] is False


def test_force_replaces_and_refuses_without(tmp_path, cli, tiny_bert_dir):
    out = tmp_path / "f"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, _, stderr = cli("export", tiny_bert_dir, "--out", out)
    assert code == 2 and "not empty" in stderr
    assert (out / "keep.txt").read_text() == "user data"
    code, _, stderr = cli("export", tiny_bert_dir, "--out", out, "--force")
    assert code == 0, stderr
    assert not (out / "keep.txt").exists() and (out / "model.onnx").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["does/not/exist"], "neither an existing folder"),
        (["tests.fixtures.nope:build"], "cannot import module"),
        (["tests.fixtures.custom_models:missing_fn"], "no callable 'missing_fn'"),
        (["tests.fixtures.custom_models:build_image_model"], "not a BERT input"),
        (["tests.fixtures.custom_models:build_raises"], "raised RuntimeError"),
        (["tests.fixtures.custom_models:build_not_a_module"], "not a torch.nn.Module"),
        (["tests.fixtures.custom_models:build_nothing_useful", "--num-heads", "2", "--hidden-size", "8", "--num-layers", "1"], "no tensors"),
        (["--exporter", "onnx2"], "--exporter onnx2 is not known"),
        (["--opset", "7"], "out of range"),
    ],
)
def test_bad_inputs_exit_2(tmp_path, cli, factory_env, args, needle):
    out = tmp_path / "o"
    code, stdout, stderr = cli("export", *args, "--out", out)
    assert code == 2, (stdout, stderr)
    assert needle in stderr
    assert "Traceback" not in stderr + stdout
    assert not out.exists()


def test_tokenizer_that_does_not_fit(tmp_path, cli, factory_env, tokenizer_dir):
    out = tmp_path / "o"
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_small_vocab_bert", "--out", out,
                          "--tokenizer", tokenizer_dir)
    assert code == 2
    assert "embedding table has 1000 rows" in stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".o.*")), "staging folder left behind"


def test_weights_that_do_not_fit(tmp_path, cli, factory_env):
    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"nonsense.weight": torch.zeros(3)}, bad)
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_dict_bert", "--out", tmp_path / "o", "--weights", bad)
    assert code == 2 and "does not fit the model" in stderr and "missing" in stderr


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch, tiny_bert_dir, cli):
    from onnxforge.export import exporter

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "_check_graph", boom)
    out = tmp_path / "int"
    code, _, stderr = cli("export", tiny_bert_dir, "--out", out)
    assert code == 130
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_inspect(cli, minilm_artifact, tmp_path):
    report_path = tmp_path / "inspect.json"
    code, stdout, stderr = cli("inspect", minilm_artifact, "--json", report_path)
    assert code == 0, stderr
    assert "last_hidden_state" in stdout and "parameters" in stdout
    report = json.loads(report_path.read_text())
    base = report["models"]["base"]
    assert base["parameters"] > 22_000_000
    assert base["opset"] == 17
    assert base["op_histogram"]["MatMul"] >= 36
    assert base["signature"]["inputs"][0]["dims"] == ["batch", "sequence"]
    code, stdout, _ = cli("inspect", minilm_artifact / "model.onnx")
    assert code == 0 and "MatMul" in stdout
    code, _, stderr = cli("inspect", tmp_path / "nothing")
    assert code == 2


def test_help_is_fast_because_imports_are_lazy():
    code = (
        "import sys, onnxforge.cli;"
        "heavy=[m for m in ('torch','onnxruntime','transformers','onnx','tokenizers','numpy') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"heavy modules imported at CLI start-up: {result.stdout}"
    help_run = subprocess.run([sys.executable, "-m", "onnxforge.cli", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "export" in help_run.stdout
