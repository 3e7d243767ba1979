"""module:function factories of any shape export without flags, with parity (dynamo default)."""

from __future__ import annotations

import pytest

from onnxforge.artifact import Artifact
from tests.export.test_export import assert_parity
from tests.fixtures.attention_styles import ATTENTION_STYLES, HEADS, HIDDEN, LAYERS

STYLES = "tests.fixtures.attention_styles"


@pytest.mark.parametrize("style", ATTENTION_STYLES)
def test_attention_style_exports_without_flags(style, tmp_path, cli, factory_env):
    out = tmp_path / "art"
    code, _, stderr = cli("export", f"{STYLES}:{style}", "--out", out)
    assert code == 0, stderr
    spec = Artifact.open(out).spec
    # Heads, hidden size and layers come from the module tree or the probe, not from flags.
    assert (spec.num_heads, spec.hidden_size, spec.num_layers) == (HEADS, HIDDEN, LAYERS)
    assert_parity(out)


def test_nested_hf_model_gets_the_fusable_attention(tmp_path, cli, factory_env):
    # The user built BertModel with eager attention; dynamo's graph is fused from SDPA.
    code, _, stderr = cli("export", f"{STYLES}:build_hf_bert_eager_wrapper", "--out", tmp_path / "d")
    assert code == 0, stderr
    assert Artifact.open(tmp_path / "d").manifest["export"]["attn_implementation"] == "sdpa"
    code, _, stderr = cli("export", f"{STYLES}:build_hf_bert_wrapper", "--out", tmp_path / "t", "--exporter", "torchscript")
    assert code == 0, stderr
    assert Artifact.open(tmp_path / "t").manifest["export"]["attn_implementation"] == "eager"


def test_flags_override_inference(tmp_path, cli, factory_env):
    out = tmp_path / "art"
    code, _, stderr = cli("export", f"{STYLES}:build_sdpa", "--out", out, "--num-layers", "7")
    assert code == 0, stderr
    assert Artifact.open(out).spec.num_layers == 7


def test_inference_failure_names_what_it_looked_at(tmp_path, cli, factory_env):
    code, _, stderr = cli("export", "tests.fixtures.custom_models:build_nothing_useful", "--out", tmp_path / "o")
    assert code == 2
    assert "looked at" in stderr and "nn.MultiheadAttention" in stderr and "probe forward" in stderr
    assert "--num-heads" in stderr and "Traceback" not in stderr


def test_user_output_named_like_an_internal_tensor(tmp_path, cli, factory_env):
    # `embedding` is also the name dynamo gives the aten::embedding value inside the graph.
    for exporter in ("dynamo", "torchscript"):
        out = tmp_path / exporter
        code, _, stderr = cli("export", f"{STYLES}:build_hf_bert_wrapper", "--out", out, "--exporter", exporter)
        assert code == 0, (exporter, stderr)
        assert Artifact.open(out).spec.output_names == ("last_hidden_state", "embedding")
        assert_parity(out)


def test_exporter_failure_is_one_message_and_a_log(tmp_path, cli, factory_env):
    out = tmp_path / "ts"
    code, stdout, stderr = cli("export", f"{STYLES}:build_transformer_encoder", "--out", out, "--exporter", "torchscript")
    assert code == 2
    log = tmp_path / "ts.export.log"
    assert str(log) in stderr.replace("\n", "") or "ts.export.log" in stderr
    assert len((stdout + stderr).strip().splitlines()) <= 4, stdout + stderr
    assert "_transformer_encoder_layer_fwd" in stderr
    text = log.read_text()
    assert "Torch IR graph" in text and "Traceback" in text
    assert not out.exists()
