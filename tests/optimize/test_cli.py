"""CLI contract: bad input exits 2 with a clear message and writes nothing; inspect shows the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from onnxforge.artifact import Artifact


def _snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}, (folder / "onnxforge.json").read_text()


def test_no_manifest_exits_2(tmp_path, cli):
    (tmp_path / "model.onnx").write_bytes(b"not really")
    code, out, err = cli("optimize", tmp_path)
    assert code == 2
    assert "no onnxforge.json" in err and "onnxforge export" in err
    assert "Traceback" not in err + out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_missing_folder_exits_2(tmp_path, cli):
    code, _, err = cli("optimize", tmp_path / "nope")
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("precision", ["int4", "FP16", "bf8"])
def test_unknown_precision_exits_2(tiny_artifact, precision, cli):
    before = _snapshot(tiny_artifact)
    code, out, err = cli("optimize", tiny_artifact, "--precision", precision)
    assert code == 2
    assert f"--precision {precision!r} is not known" in err and "fp32, fp16, int8, bf16" in err
    assert _snapshot(tiny_artifact) == before


def test_unknown_device_exits_2(tiny_artifact, cli):
    code, _, err = cli("optimize", tiny_artifact, "--device", "tpu")
    assert code == 2 and "cpu, cuda" in err


def test_already_quantized_model_exits_2(tiny_artifact, copy_artifact, cli):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = copy_artifact(tiny_artifact)
    quantize_dynamic(folder / "model.onnx", folder / "model.onnx", weight_type=QuantType.QInt8)
    before = _snapshot(folder)
    for precision in ("fp32", "int8"):
        code, out, err = cli("optimize", folder, "--precision", precision)
        assert code == 2, err
        assert "already quantized" in err and "re-run `onnxforge export`" in err
        assert "Traceback" not in err + out
    assert _snapshot(folder) == before  # nothing half-written
    assert not list(folder.glob(".optimize-*"))


def test_int8_for_cuda_is_built_for_cpu_with_a_note(tiny_opt, copy_artifact):
    """int8 asked for CUDA: built (the pipeline asks for it on GPU machines), recorded as
    a CPU variant, and said so."""
    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    folder = copy_artifact(tiny_opt[0])
    report = optimize_artifact(folder, OptimizeOptions(precision="int8", device="cuda", calibration_texts=16, check_texts=16))
    assert report, report.failures()
    assert any("int8 targets the CPU provider" in n for n in report.notes)
    art = Artifact.open(folder)
    assert art.variants["int8"]["device"] == "cpu"
    assert report.to_dict()["target_device"] == "cpu"


def test_interrupted_write_leaves_nothing(tiny_opt, copy_artifact, monkeypatch):
    from onnxforge.optimize import OptimizeOptions, optimize_artifact, optimizer

    folder = copy_artifact(tiny_opt[0])
    before = _snapshot(folder)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(optimizer, "run_checks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        optimize_artifact(folder, OptimizeOptions(precision="fp16"))
    assert _snapshot(folder) == before
    assert not (folder / "model_fp16.onnx").exists() and not list(folder.glob(".optimize-*"))


def test_failed_check_exits_1_and_says_why(tiny_opt, copy_artifact, cli, monkeypatch):
    """A parity miss is a failed check (exit 1), even without --strict."""
    from onnxforge.parity.tolerance import DEFAULT_TOLERANCES, Tolerance

    folder = copy_artifact(tiny_opt[0])
    monkeypatch.setitem(DEFAULT_TOLERANCES, "fp32", Tolerance(atol=1e-12, rtol=0.0, min_cosine=None, min_argmax=None))
    code, out, err = cli("optimize", folder)
    assert code == 1
    assert "check failed" in err and "max abs" in err
    rec = Artifact.open(folder).stage("optimize.optimized")
    assert rec["passed"] is False and rec["fully_fused"] is True and rec["checks_passed"] is False


def test_json_and_inspect_show_the_report(tiny_opt, copy_artifact, cli, tmp_path):
    folder = copy_artifact(tiny_opt[0])
    out_json = tmp_path / "r.json"
    code, out, err = cli("optimize", folder, "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["fusion"]["achieved"]["Attention"] == 2 and data["file"] == "model_optimized.onnx"
    code, out, err = cli("inspect", folder)
    assert code == 0, err
    assert "optimize.optimized: passed, fully fused, route onnxruntime" in out
    assert "Attention 2/2" in out and "SkipLayerNormalization 4/4" in out


def test_cli_import_stays_light():
    code = ("import sys, onnxforge.optimize.cli, onnxforge.optimize as o; o.OptimizeOptions; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'numpy', 'onnx') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_options_are_frozen_and_validated():
    import dataclasses

    from onnxforge.errors import UserInputError
    from onnxforge.optimize import OptimizeOptions

    o = OptimizeOptions(precision="int8")
    assert (o.variant, o.file_name, o.target_device) == ("int8", "model_int8.onnx", "cpu")
    assert OptimizeOptions(precision="fp16").variant == "fp16" and OptimizeOptions().variant == "optimized"
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.precision = "fp32"
    with pytest.raises(UserInputError):
        OptimizeOptions(outlier_ratio=1.0)


def test_external_data_artifact(tiny_bert_dir, tmp_path):
    """A base export with its weights in model.onnx.data gets variants stored the same way,
    both files hashed, and they load from the folder."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.optimize import OptimizeOptions, optimize_artifact
    from onnxforge.sources import resolve_source

    from .helpers import parity_vs_torch

    out = tmp_path / "ext"
    assert export_model(resolve_source(str(tiny_bert_dir)), out, ExportOptions(external_data_threshold=1024))
    assert (out / "model.onnx.data").is_file()
    report = optimize_artifact(out, OptimizeOptions())
    assert report, report.failures()
    assert set(report.sizes) == {"model_optimized.onnx", "model_optimized.onnx.data"}
    files = Artifact.open(out).manifest["files"]
    assert {"model_optimized.onnx", "model_optimized.onnx.data"} <= set(files)
    import onnx

    # The weights are in the .data file: no initializer past 1 KiB is stored inside the graph.
    graph = onnx.load(str(out / "model_optimized.onnx"), load_external_data=False).graph
    inline = [t.name for t in graph.initializer
              if t.data_location != onnx.TensorProto.EXTERNAL and len(t.raw_data) > 1024]
    assert inline == [] and (out / "model_optimized.onnx.data").stat().st_size > 1_000_000
    assert max(parity_vs_torch(out, "optimized").values()) <= 1e-4
