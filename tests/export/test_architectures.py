"""Every tested encoder architecture exports with parity at batch 3 x 37 (right padding)."""

from __future__ import annotations

import pytest

from onnxforge.artifact import Artifact
from tests.export.test_export import assert_parity
from tests.fixtures.architectures import ARCHITECTURES, architecture_inputs


def _export(folder, out, **options):
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    report = export_model(resolve_source(str(folder)), out, ExportOptions(**options))
    assert report, (report.check.get("error"), report.failures())
    return report


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_exports_with_dynamo(arch, tiny_architecture, tmp_path):
    report = _export(tiny_architecture(arch), tmp_path / "art")
    art = Artifact.open(tmp_path / "art")
    assert art.manifest["export"]["exporter"] == "dynamo"
    assert art.spec.model_type == arch
    assert art.spec.input_names == architecture_inputs(arch)
    assert art.spec.output_names[0] == "last_hidden_state"
    assert (report.check["batch"], report.check["sequence"]) == (3, 37)
    assert_parity(tmp_path / "art")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_exports_with_torchscript(arch, tiny_architecture, tmp_path):
    _export(tiny_architecture(arch), tmp_path / "art", exporter="torchscript")
    assert Artifact.open(tmp_path / "art").manifest["export"]["attn_implementation"] == "eager"
    assert_parity(tmp_path / "art")


@pytest.mark.parametrize(("arch", "head", "output", "axes"), [
    ("modernbert", "sequence-classification", "logits", ("batch", None)),
    ("deberta-v2", "token-classification", "logits", ("batch", "sequence", None)),
    ("mpnet", "question-answering", "start_logits", ("batch", "sequence")),
    ("distilbert", "sequence-classification", "logits", ("batch", None)),
])
def test_architecture_heads(arch, head, output, axes, tiny_architecture, tmp_path):
    _export(tiny_architecture(arch, with_head=head), tmp_path / "art")
    spec = Artifact.open(tmp_path / "art").spec
    assert spec.task == head
    assert spec.output(output).axes == axes
    assert_parity(tmp_path / "art")


def test_sdpa_less_architectures_fall_back_to_eager(tiny_architecture, tmp_path):
    # MPNet implements only eager attention: asking for SDPA (dynamo's choice) must not refuse it.
    _export(tiny_architecture("mpnet"), tmp_path / "art")
    assert Artifact.open(tmp_path / "art").manifest["export"]["attn_implementation"] == "eager"


def test_encoder_decoder_is_refused_with_reason(tmp_path, cli):
    import transformers

    config = transformers.T5Config(vocab_size=128, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    transformers.T5Model(config).save_pretrained(tmp_path / "t5")
    code, _, stderr = cli("export", tmp_path / "t5", "--out", tmp_path / "out")
    assert code == 2
    assert "encoder-decoder" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
