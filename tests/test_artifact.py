"""Artifact accessors: stage, variant and source records without raw manifest reads."""

from __future__ import annotations

from onnxforge.artifact import Artifact
from onnxforge.vocab import DEFAULT_ENGINE


def test_records_of_an_export(tiny_artifact):
    art = Artifact.open(tiny_artifact)
    assert art.stage_record("export")["passed"] is True
    assert art.stage_passed("export") and not art.stage_passed("optimize.int8")
    assert art.stage_record("optimize", "int8") is None
    assert art.variant_precision("base") == "fp32" and art.variant_record("int8") is None
    # Manifests written before engines were recorded run on the default engine.
    assert art.variant_engine("base") == DEFAULT_ENGINE
    assert art.source is not None and art.source.kind == "hf"
    assert art.tokenizer is not None and art.tokenizer.is_file()
    assert not art.has_table("build")


def test_files_intact_notices_a_changed_byte(tiny_artifact, copy_artifact):
    folder = copy_artifact(tiny_artifact)
    assert Artifact.open(folder).files_intact()
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    assert not Artifact.open(folder).files_intact()
