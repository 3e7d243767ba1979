"""The README's main command on the real MiniLM: a fused fp32 and an int8 variant, validated, packaged, verified."""

from __future__ import annotations

import json

import pytest

from onnxforge.artifact import Artifact, sha256_file

# One real MiniLM build (about 2 minutes on 2 cores), shared with the other file that
# reads it: under xdist both files run on the worker that built it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("minilm_build")]

def _cpu_has_bf16() -> bool:
    from onnxforge.runtime.openvino import cpu_has_bf16

    return cpu_has_bf16()


# The CPU build's variants: fused fp32, int8, and the OpenVINO bf16 IR where the CPU computes in bf16.
VARIANTS = ["optimized", "int8"] + (["bf16"] if _cpu_has_bf16() else [])
STAGES = ["export", *[f"optimize.{v}" for v in VARIANTS], *[f"validate.{v}" for v in VARIANTS],
          *[f"smoke.{v}" for v in VARIANTS], "package", "verify"]


def test_readme_build_produces_a_verified_package(minilm_build):
    root, proc = minilm_build
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((root / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == STAGES
    assert {s["status"] for s in summary["stages"]} == {"passed"}
    archive = root / "artifacts" / "minilm.tar.gz"
    assert summary["archive_sha256"] == sha256_file(archive)
    assert "built and verified" in proc.stdout and "validate.int8" in proc.stdout  # the summary table
    art = Artifact.open(root / "artifacts" / "minilm")
    fused = art.stage("optimize.optimized")
    assert fused["passed"] is True
    validated = art.stage("validate.int8")
    assert validated["passed"] is True and validated["precision"] == "int8"
    verified = art.stage("verify")  # verify_path on the archive, run by the build's last stage
    assert verified["passed"] is True and verified["archive_sha256"] == summary["archive_sha256"]
    assert verified["counts"]["failed"] == 0 and verified["counts"]["passed"] >= 18


def test_minilm_package_manifest_records_fusions_and_parity(minilm_unpacked):
    folder = minilm_unpacked
    m = json.loads((folder / "onnxforge.json").read_text())
    models = m["package"]["models"]
    assert sorted(models) == sorted(["base", *VARIANTS])
    assert models["optimized"]["fused_ops"].get("Attention") == 6
    # Built for CPU: residual norms fused, then emitted as Sum + LayerNormalization (faster ORT CPU kernels).
    assert not models["optimized"]["fused_ops"].get("SkipLayerNormalization")
    assert models["int8"]["quantized"] is True and models["int8"]["precision"] == "int8"
    parity = m["package"]["parity"]
    assert parity["optimized"]["source"] == "validate.optimized" and parity["optimized"]["passed"] is True
    assert parity["int8"]["outputs"]["last_hidden_state"]["min_cosine"] >= 0.95
    assert m["package"]["default_variant"] == "optimized"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "Attention 6" in card and "`int8`" in card
