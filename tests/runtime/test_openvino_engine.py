"""Engine selection: each variant runs on the engine it records, --engine overrides it, and
a missing or unsuitable engine is a clear exit 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from onnxforge.artifact import Artifact
from onnxforge.errors import CheckFailed, UserInputError
from onnxforge.runtime import Runtime, variant_engine
from tests.runtime_helpers import TINY_MAX_LENGTH as ML

TEXTS = ["a short text", "a somewhat longer text about Debian packages and their descriptions"]


def _has_bf16() -> bool:
    from onnxforge.runtime.openvino import cpu_has_bf16

    return cpu_has_bf16()


@pytest.fixture(scope="module")
def tiny_bf16(tiny_artifact, tmp_path_factory):
    """The tiny BERT with an OpenVINO bf16 variant (skipped where the CPU has no bf16)."""
    import shutil

    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    if not _has_bf16():
        pytest.skip("this CPU has no bf16 compute (AMX / AVX512-BF16) for OpenVINO")
    folder = tmp_path_factory.mktemp("tiny_bf16") / "art"
    shutil.copytree(tiny_artifact, folder)
    report = optimize_artifact(folder, OptimizeOptions(precision="bf16"))
    assert report, report.failures()
    return folder


def test_variant_engine_reads_the_manifest_and_the_override():
    assert variant_engine({"file": "model.onnx"}, "base") == "ort"
    assert variant_engine({"file": "openvino/openvino_model.xml", "engine": "openvino"}, "bf16") == "openvino"
    assert variant_engine({}, "bf16") == "openvino"  # an entry without the field: the vocabulary's default
    assert variant_engine({"engine": "openvino"}, "bf16", "ort") == "ort"
    with pytest.raises(UserInputError, match="--engine tvm is not known"):
        variant_engine({}, "base", "tvm")


def test_engine_override_runs_the_base_export_on_openvino_in_f32(tiny_artifact):
    ort = Runtime.load(tiny_artifact, "base", max_length=ML)
    ov = Runtime.load(tiny_artifact, "base", engine="openvino", max_length=ML)
    d = ov.describe()
    assert (d["engine"], d["device"], d["providers"]) == ("openvino", "cpu", ["OpenVINO CPU"])
    assert ov.engine.inference_precision == "f32"  # an fp32 variant stays fp32 on OpenVINO
    assert ort.describe()["engine"] == "ort"
    a, b = ort.embed(TEXTS), ov.embed(TEXTS)
    assert (a * b).sum(1).min() > 0.99999
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_bf16_variant_runs_on_openvino_by_default_and_refuses_ort(tiny_bf16):
    rt = Runtime.load(tiny_bf16, "bf16", max_length=ML)
    assert rt.describe()["engine"] == "openvino" and rt.engine.inference_precision == "bf16"
    assert rt.describe()["file"] == "openvino/openvino_model.xml"
    ref = Runtime.load(tiny_bf16, "base", max_length=ML).embed(TEXTS)
    assert (ref * rt.embed(TEXTS)).sum(1).min() >= 0.999
    with pytest.raises(UserInputError, match="OpenVINO IR: the ort engine cannot run it"):
        Runtime.load(tiny_bf16, "bf16", engine="ort", max_length=ML)


def test_the_measured_default_variant_is_used_unless_lossy(tiny_bf16, copy_artifact):
    folder = copy_artifact(tiny_bf16)
    assert Runtime.load(folder, max_length=ML).variant == "base"  # nothing measured: the static order
    manifest = json.loads((folder / "onnxforge.json").read_text())
    manifest["default_variants"] = {"cpu": {"variant": "bf16", "engine": "openvino"}}
    (folder / "onnxforge.json").write_text(json.dumps(manifest))
    assert Runtime.load(folder, max_length=ML).variant == "bf16"
    manifest["variants"]["bf16"]["lossy"] = True
    (folder / "onnxforge.json").write_text(json.dumps(manifest))
    assert Runtime.load(folder, max_length=ML).variant == "base"


def test_openvino_on_cuda_is_a_check_failure_not_a_silent_cpu_run(tiny_artifact):
    with pytest.raises(CheckFailed, match="OpenVINO engine runs on the CPU only"):
        Runtime.load(tiny_artifact, "base", "cuda", engine="openvino", max_length=ML)


def test_batch_first_line_names_variant_and_engine(tiny_artifact, cli, tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_text("text\n" + "\n".join(TEXTS) + "\n")
    code, out, err = cli("batch", tiny_artifact, csv, "--out", tmp_path / "o.jsonl", "--runtime-engine", "openvino",
                         "--variant", "base", "--no-progress", "--max-length", ML)
    assert code == 0, err
    assert out.splitlines()[0] == "batch: model 'base' (fp32) on cpu via openvino"


def test_missing_openvino_is_exit_2_with_the_install_command(tiny_artifact, cli, tmp_path, monkeypatch):
    import onnxforge.runtime.openvino as ov_engine

    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr(ov_engine, "_CORE", None)
    code, out, err = cli("smoke", tiny_artifact, "--engine", "openvino", "--no-torch", "--no-record", "--max-length", ML)
    assert code == 2, (out, err)
    assert "openvino package is not installed" in err and "pip install openvino" in err and "Traceback" not in err


def test_throughput_hint_runs_calls_side_by_side_with_the_same_results(tiny_artifact, monkeypatch):
    """Batch jobs compile for throughput (OpenVINO streams) and keep that many calls in flight;
    the rows are the same as one call at a time, in the same order."""
    from onnxforge.batch.infer import run_texts
    from onnxforge.data import sample_texts
    from onnxforge.runtime.results import result_columns

    latency = Runtime.load(tiny_artifact, "base", engine="openvino", max_length=ML)
    assert latency.engine.parallel_calls == 1 and latency.engine.describe()["performance_hint"] == "LATENCY"
    fast = Runtime.load(tiny_artifact, "base", engine="openvino", max_length=ML, throughput=True)
    assert fast.engine.describe()["performance_hint"] == "THROUGHPUT"
    monkeypatch.setattr(type(fast.engine), "parallel_calls", 2)  # two streams even on a one-core runner
    seen: set[str] = set()
    real_run = fast.engine.run

    def run(feeds, outputs=None):
        import threading

        seen.add(threading.current_thread().name)
        return real_run(feeds, outputs)

    fast.engine.run = run
    texts = sample_texts(120, offset=50)
    columns = result_columns(fast.spec)
    one, cut_one = run_texts(latency, texts, 8, True, columns)
    two, cut_two = run_texts(fast, texts, 8, True, columns)
    assert len(seen) == 2, f"calls ran on {sorted(seen)}, not on two pool threads"
    assert cut_one == cut_two
    for name in columns:
        np.testing.assert_allclose(np.asarray(two[name]), np.asarray(one[name]), atol=1e-5)
