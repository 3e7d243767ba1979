"""`onnxforge smoke`: passes on MiniLM, fails (exit 1) on a corrupted golden, a drifted variant or a CUDA fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.artifact import Artifact

from tests.runtime_helpers import TINY_MAX_LENGTH

QUICK = ("--batch-sizes", "1,4", "--iterations", "3")


def test_cpu_smoke_on_minilm_passes(minilm_artifact, copy_artifact, cli, tmp_path):
    art_dir = copy_artifact(minilm_artifact)
    report_path = tmp_path / "smoke.json"
    code, stdout, stderr = cli("smoke", art_dir, "--device", "cpu", "--text", "A sentence of my own.",
                               "--json", report_path, *QUICK)
    assert code == 0, (stdout, stderr)
    assert "smoke passed" in stdout
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["device"] == "cpu" and report["variant"] == "base"
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("goldens.tokenizer", "goldens.last_hidden_state", "goldens.sentence_embedding", "sentences.finite",
                 "sentences.truncation", "batch_consistency.last_hidden_state", "pytorch.last_hidden_state",
                 "pytorch.sentence_embedding"):
        assert checks[name]["passed"], checks[name]
    assert checks["pytorch.last_hidden_state"]["max_abs"] < 1e-4
    assert checks["goldens.last_hidden_state"]["min_cosine"] > 0.99999
    assert report["pytorch"]["ran"] is True
    assert [row["batch_size"] for row in report["latency"]] == [1, 4]
    for row in report["latency"]:
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["texts_per_s"] > 0 and row["iterations"] == 3
    recorded = Artifact.open(art_dir).stage("smoke.base")
    assert recorded["passed"] is True and recorded["latency"] == report["latency"]


def _corrupt_golden(art_dir, key, fn):
    path = art_dir / "goldens.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[key] = fn(arrays[key])
    np.savez(path, **arrays)


def test_corrupted_golden_output_fails(tiny_artifact, copy_artifact, cli, tmp_path):
    art_dir = copy_artifact(tiny_artifact)

    def nudge(a):
        a = a.copy()
        a[1, 2, :5] += 0.05  # a real token of the second text
        return a

    _corrupt_golden(art_dir, "output.last_hidden_state", nudge)
    report_path = tmp_path / "r.json"
    code, stdout, stderr = cli("smoke", art_dir, "--max-length", TINY_MAX_LENGTH, "--no-torch", "--json", report_path, *QUICK)
    assert code == 1, (stdout, stderr)
    assert "goldens.last_hidden_state" in stderr and "max abs" in stderr
    report = json.loads(report_path.read_text())
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    assert failed == ["goldens.last_hidden_state"]
    assert Artifact.open(art_dir).stage("smoke.base")["passed"] is False


def test_corrupted_golden_inputs_blame_the_tokenizer(tiny_artifact, copy_artifact, cli):
    art_dir = copy_artifact(tiny_artifact)

    def swap_token(a):
        a = a.copy()
        a[0, 1] = a[0, 1] + 1
        return a

    _corrupt_golden(art_dir, "input.input_ids", swap_token)
    code, stdout, stderr = cli("smoke", art_dir, "--max-length", TINY_MAX_LENGTH, "--no-torch", "--no-record", *QUICK)
    assert code == 1, (stdout, stderr)
    assert "goldens.tokenizer" in stderr


def test_drifted_variant_fails_against_goldens_and_pytorch(tiny_artifact, copy_artifact, cli, tmp_path):
    """An 'optimized' variant whose weights changed: picked by default, caught twice."""
    import onnx
    from onnx import numpy_helper

    art_dir = copy_artifact(tiny_artifact)
    model = onnx.load(str(art_dir / "model.onnx"))
    # The first encoder MatMul weight of shape (hidden, intermediate): layer 0's FFN.
    init = next(i for i in model.graph.initializer if list(i.dims) == [64, 128])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.05, init.name))
    onnx.save(model, str(art_dir / "model_optimized.onnx"))
    art = Artifact.open(art_dir)
    art.variants["optimized"] = {"file": "model_optimized.onnx", "precision": "fp32"}
    art.save()
    report_path = tmp_path / "r.json"
    code, stdout, stderr = cli("smoke", art_dir, "--max-length", TINY_MAX_LENGTH, "--json", report_path, *QUICK)
    assert code == 1, (stdout, stderr)
    report = json.loads(report_path.read_text())
    assert report["variant"] == "optimized"
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert {"goldens.last_hidden_state", "pytorch.last_hidden_state"} <= failed
    assert "goldens.tokenizer" not in failed and "batch_consistency.last_hidden_state" not in failed


def test_cuda_without_cuda_exits_1_naming_providers(tiny_artifact, copy_artifact, cli):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA works here")
    art_dir = copy_artifact(tiny_artifact)
    code, stdout, stderr = cli("smoke", art_dir, "--device", "cuda", "--max-length", TINY_MAX_LENGTH, *QUICK)
    assert code == 1, (stdout, stderr)
    assert "CUDAExecutionProvider" in stderr and "obtained ['CPUExecutionProvider']" in stderr
    assert "Traceback" not in stderr
    recorded = Artifact.open(art_dir).stage("smoke.base")
    assert recorded["passed"] is False and "fell back to CPU" in recorded["failures"][0]


@pytest.mark.cuda
def test_cuda_smoke_passes(minilm_artifact, copy_artifact, cli):
    code, stdout, stderr = cli("smoke", copy_artifact(minilm_artifact), "--device", "cuda", *QUICK)
    assert code == 0, (stdout, stderr)
    assert "CUDAExecutionProvider" in stdout


def test_tiny_smoke_with_pytorch_passes(tiny_artifact, copy_artifact):
    from onnxforge.smoke import SmokeOptions, smoke_artifact

    report = smoke_artifact(copy_artifact(tiny_artifact),
                            SmokeOptions(max_length=TINY_MAX_LENGTH, batch_sizes=(2,), iterations=2, texts=("extra",)))
    assert report, report.failures()
    assert report.pytorch["ran"] and report.to_dict()["failures"] == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--variant", "fp17"], "variant 'fp17' is not in"),
        (["--device", "tpu"], "--device tpu is not known"),
        (["--batch-sizes", "1,x"], "not a comma-separated list"),
        (["--batch-sizes", "0"], "between 1 and 4096"),
    ],
)
def test_bad_smoke_options_exit_2(tiny_artifact, cli, args, needle):
    code, stdout, stderr = cli("smoke", tiny_artifact, "--max-length", TINY_MAX_LENGTH, "--no-record", *args)
    assert code == 2, (stdout, stderr)
    assert needle in stderr and "Traceback" not in stderr


def test_missing_artifact_exit_2(cli, tmp_path):
    code, _, stderr = cli("smoke", tmp_path / "nothing")
    assert code == 2 and "does not exist" in stderr
