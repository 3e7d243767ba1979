"""`build` end to end on the tiny seeded BERT: stages, reuse by content keys, stopping at a failed check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from onnxforge.artifact import Artifact, sha256_file
from onnxforge.bench.fastest import choose


def _cpu_has_bf16() -> bool:
    from onnxforge.runtime.openvino import cpu_has_bf16

    return cpu_has_bf16()


# The CPU build's variants: fused fp32, int8, and the OpenVINO bf16 IR where the CPU computes in bf16.
VARIANTS = ["optimized", "int8"] + (["bf16"] if _cpu_has_bf16() else [])
ALL_STAGES = ["export", *[f"optimize.{v}" for v in VARIANTS], *[f"validate.{v}" for v in VARIANTS],
              *[f"smoke.{v}" for v in VARIANTS], "package", "verify"]


def run_build(*args, json_path: Path | None = None):
    """Invoke `onnxforge build` in-process; returns (exit code, stdout, stderr, summary dict or None)."""
    from typer.testing import CliRunner

    from onnxforge.cli import app

    extra = ["--json", str(json_path)] if json_path else []
    result = CliRunner().invoke(app, ["build", *[str(a) for a in args], *extra], catch_exceptions=False)
    summary = json.loads(json_path.read_text()) if json_path and json_path.is_file() else None
    return result.exit_code, result.stdout, result.stderr, summary


def statuses(summary) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["stages"]}


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("build")
    code, out, err, summary = run_build(tiny_model_dir, "--out", root / "tiny", json_path=root / "first.json")
    assert code == 0, (out, err)
    return root / "tiny", summary


def _copy_build(src: Path, dst_root: Path) -> Path:
    """Copy a built folder and its archive together (the archive sits beside the folder)."""
    dst = dst_root / src.name
    shutil.copytree(src, dst)
    shutil.copyfile(src.parent / f"{src.name}.tar.gz", dst_root / f"{src.name}.tar.gz")
    return dst


def test_build_runs_every_stage_and_writes_a_verified_package(tiny_build, tmp_path):
    folder, summary = tiny_build
    assert summary["passed"] is True
    assert list(statuses(summary)) == ALL_STAGES
    assert set(statuses(summary).values()) == {"passed"}
    archive = folder.parent / "tiny.tar.gz"
    assert summary["archive"] == str(archive) and summary["archive_sha256"] == sha256_file(archive)
    manifest = Artifact.open(folder).manifest
    assert sorted(manifest["variants"]) == sorted(["base", *VARIANTS])
    assert set(manifest["build"]["keys"]) == set(ALL_STAGES)
    assert manifest["stages"]["verify"]["passed"] is True
    assert manifest["stages"]["package"]["variants"] == ["base", *VARIANTS]
    # The CPU default was chosen by measurement among the faithful variants, and recorded.
    default = manifest["default_variants"]["cpu"]
    assert default["variant"] in ["base", *VARIANTS] and set(default["measured_ms"]) == {"base", *VARIANTS}
    precisions = {v: manifest["variants"][v].get("precision", "fp32") for v in default["measured_ms"]}
    assert default["variant"] == choose({v: t["job_ms"] for v, t in default["measured_ms"].items()}, precisions)
    from onnxforge.release import VerifyOptions, verify_path

    assert verify_path(archive, VerifyOptions())  # independently of the build's own verify stage


def test_second_build_reuses_every_stage(tiny_build, tiny_model_dir, tmp_path):
    folder, first = tiny_build
    archive = folder.parent / "tiny.tar.gz"
    before = sha256_file(archive)
    code, out, err, summary = run_build(tiny_model_dir, "--out", folder, json_path=tmp_path / "second.json")
    assert code == 0, (out, err)
    assert statuses(summary) == dict.fromkeys(ALL_STAGES, "reused")
    assert summary["reused"] == ALL_STAGES
    last = Artifact.open(folder).manifest["build"]["last_run"]
    assert last["reused"] == ALL_STAGES and last["passed"] is True
    assert sha256_file(archive) == before == summary["archive_sha256"]
    assert "reused" in out


def test_a_changed_validate_option_reruns_only_what_depends_on_it(tiny_build, tiny_model_dir, tmp_path):
    folder = _copy_build(tiny_build[0], tmp_path)
    config = tmp_path / "onnxforge.toml"
    config.write_text("[validate]\nseed = 5\nsample_size = 16\n")
    code, out, err, summary = run_build(tiny_model_dir, "--out", folder, "--config", config, json_path=tmp_path / "s.json")
    assert code == 0, (out, err)
    s = statuses(summary)
    assert [k for k, v in s.items() if v == "reused"] == ["export", *[f"optimize.{v}" for v in VARIANTS],
                                                           *[f"smoke.{v}" for v in VARIANTS]]
    assert [k for k, v in s.items() if v == "passed"] == [*[f"validate.{v}" for v in VARIANTS], "package", "verify"]
    assert Artifact.open(folder).manifest["build"]["options"]["validate"] == {"seed": 5, "sample_size": 16}


def test_force_redoes_everything(tiny_build, tiny_model_dir, tmp_path):
    folder = _copy_build(tiny_build[0], tmp_path)
    code, out, err, summary = run_build(tiny_model_dir, "--out", folder, "--precision", "fp32", "--no-smoke", "--force",
                                        json_path=tmp_path / "s.json")
    assert code == 0, (out, err)
    assert statuses(summary) == dict.fromkeys(["export", "optimize.optimized", "validate.optimized", "package", "verify"], "passed")


def test_a_corrupted_file_is_not_trusted(tiny_build, tiny_model_dir, tmp_path):
    folder = _copy_build(tiny_build[0], tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    code, out, err, summary = run_build(tiny_model_dir, "--out", folder, "--precision", "fp32", "--no-smoke",
                                        json_path=tmp_path / "s.json")
    assert code == 0, (out, err)
    assert "reused" not in statuses(summary).values()
    assert Artifact.open(folder).manifest["files"]["model.onnx"]["sha256"] == sha256_file(folder / "model.onnx")


def test_a_failed_check_stops_the_build_and_keeps_the_reports(tiny_model_dir, tmp_path):
    config = tmp_path / "strict.toml"
    # No fused fp32 graph matches PyTorch to 1e-12 with rtol 0: validate must fail.
    config.write_text("precision = [\"fp32\"]\nsmoke = false\n[validate]\natol = 1e-12\nrtol = 0.0\nsample_size = 8\n")
    out_dir = tmp_path / "fails"
    code, out, err, summary = run_build(tiny_model_dir, "--out", out_dir, "--config", config, json_path=tmp_path / "s.json")
    assert code == 1, (out, err)
    assert "validate.optimized" in err
    assert statuses(summary) == {"export": "passed", "optimize.optimized": "passed", "validate.optimized": "failed",
                                 "package": "not run", "verify": "not run"}
    report = Artifact.open(out_dir).stage("validate.optimized")
    assert report["passed"] is False and report["failures"]
    assert not (tmp_path / "fails.tar.gz").exists()
    assert Artifact.open(out_dir).manifest["build"]["last_run"]["failed_stage"] == "validate.optimized"


def test_out_folder_not_written_by_build_needs_force(tmp_path, tiny_artifact, tiny_model_dir):
    folder = tmp_path / "exported"
    shutil.copytree(tiny_artifact, folder)
    code, _, err, _ = run_build(tiny_model_dir, "--out", folder)
    assert code == 2 and "was not written by `onnxforge build`" in err and "--force" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    code, _, err, _ = run_build(tiny_model_dir, "--out", tmp_path / "other")
    assert code == 2 and (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_cuda_asked_without_cuda_fails_loudly(tmp_path, tiny_model_dir):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("this machine has CUDA")
    code, _, err, _ = run_build(tiny_model_dir, "--out", tmp_path / "x", "--device", "cuda")
    assert code == 1 and "CUDA" in err
    assert not (tmp_path / "x").exists()


def test_factory_model_keys_follow_its_weights_and_card_runs_without_tokenizer(tmp_path, factory_env):
    """A package.module:function source with a state_dict and no tokenizer."""
    import subprocess
    import sys

    import torch

    from onnxforge.release.card import python_block
    from tests.fixtures.custom_models import build_dict_bert

    from tests.release.conftest import unpack

    weights = tmp_path / "w.pt"
    torch.save(build_dict_bert().state_dict(), weights)
    args = ["tests.fixtures.custom_models:build_dict_bert", "--weights", weights, "--out", tmp_path / "dict",
            "--precision", "fp32", "--no-smoke"]
    code, out, err, first = run_build(*args, json_path=tmp_path / "1.json")
    assert code == 0, (out, err)
    code, _, _, second = run_build(*args, json_path=tmp_path / "2.json")
    assert code == 0 and set(statuses(second).values()) == {"reused"}
    model = build_dict_bert()
    with torch.no_grad():
        model.proj.weight.mul_(2.0)
    torch.save(model.state_dict(), weights)
    code, out, err, third = run_build(*args, json_path=tmp_path / "3.json")
    assert code == 0, (out, err)
    assert statuses(third)["export"] == "passed"  # new weights, new export key
    assert first["archive_sha256"] != third["archive_sha256"]

    folder = unpack(tmp_path / "dict.tar.gz", tmp_path / "u")
    assert not (folder / "tokenizer.json").exists()
    code = python_block((folder / "MODEL_CARD.md").read_text())
    assert len(code.strip().splitlines()) == 5
    proc = subprocess.run([sys.executable, "-c", code + "\nprint([o.shape for o in outputs])"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "(1, 4, 64)" in proc.stdout and "(1, 16)" in proc.stdout
