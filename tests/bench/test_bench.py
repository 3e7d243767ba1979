"""`onnxforge bench`: structure, and that every derived number comes from the samples.

No timing assertions (CI machines are noisy): the tests check what was measured, how
the ratios and rates are computed from it, and that bad input is exit 2.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time

import pytest

from onnxforge.artifact import Artifact
from onnxforge.bench.flops import bert_flops
from onnxforge.bench.options import BenchOptions, parse_int_list
from onnxforge.bench.timing import percentile, time_blocks
from onnxforge.errors import UserInputError


def test_flops_match_torch_flop_counter(tiny_bert_dir):
    """The spec formula equals PyTorch's own count of the matmuls (eager attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from onnxforge.bench.contenders import bench_inputs
    from onnxforge.sources import load_source, resolve_source

    loaded = load_source(resolve_source(str(tiny_bert_dir)), attn_implementation="eager")
    for batch, seq in ((1, 7), (3, 20)):
        feeds = bench_inputs(loaded.spec, batch, seq)
        with FlopCounterMode(display=False) as counter:
            loaded.module(*[torch.from_numpy(feeds[n]) for n in loaded.spec.input_names])
        assert bert_flops(loaded.spec, batch, seq) == counter.get_total_flops()


def test_time_blocks_cycles_and_repeats():
    calls = {"a": 0, "b": 0}

    def make(key, pause):
        def fn():
            calls[key] += 1
            time.sleep(pause)
        return fn

    timings = time_blocks({"a": make("a", 0.001), "b": make("b", 0.002)}, warmup_seconds=0.005, block_seconds=0.01,
                          min_cycles=2, max_cycles=4, target_spread=0.99, min_repeats=3, max_repeats=20)
    for key, t in timings.items():
        assert 2 <= len(t.cycles) <= 4
        assert all(len(c) == t.repeats for c in t.cycles)
        assert 3 <= t.repeats <= 20
        assert calls[key] == t.warmup_calls + t.repeats * len(t.cycles)
        assert t.cycle_medians == [statistics.median(c) for c in t.cycles]
    # Same number of cycles for every contender: a ratio pairs cycle i with cycle i.
    assert len({len(t.cycles) for t in timings.values()}) == 1


def test_percentile_matches_numpy():
    import numpy as np

    xs = [5.0, 1.0, 3.0, 2.0, 8.0, 13.0, 21.0]
    for q in (0, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_options_reject_bad_values():
    with pytest.raises(UserInputError, match="out of range"):
        parse_int_list("1,0", "--batch-sizes")
    with pytest.raises(UserInputError, match="not an integer"):
        parse_int_list("1,x", "--seq-lens")
    with pytest.raises(UserInputError, match="not known"):
        BenchOptions(devices=("tpu",))
    with pytest.raises(UserInputError, match="cycles"):
        BenchOptions(min_cycles=5, max_cycles=2)
    assert parse_int_list("1, 8,8,32", "--batch-sizes") == (1, 8, 32)


def test_plan_skips_variants_built_for_another_device(tiny_artifact):
    from onnxforge.bench.runner import _plan_variants

    art = Artifact.open(tiny_artifact)
    art.manifest["variants"] = {
        "base": {"file": "model.onnx", "precision": "fp32"},
        "fp16": {"file": "model.onnx", "precision": "fp16"},
        "int8": {"file": "model.onnx", "precision": "int8"},
    }
    plan, skipped = _plan_variants(art, (), ["cpu", "cuda"])
    assert ("base", "fp32", "cpu") in plan and ("base", "fp32", "cuda") in plan
    assert ("fp16", "fp16", "cuda") in plan and ("int8", "int8", "cpu") in plan
    assert {(s["contender"], s["device"]) for s in skipped} == {("ort fp16", "cpu"), ("ort int8", "cuda")}
    assert all("--variants" in s["reason"] for s in skipped)
    plan, skipped = _plan_variants(art, ("fp16",), ["cpu"])
    assert plan == [("fp16", "fp16", "cpu")] and not skipped
    with pytest.raises(UserInputError, match="available variants: base, fp16, int8"):
        _plan_variants(art, ("nope",), ["cpu"])


def test_quick_bench_cli_outputs(tiny_artifact, cli, tmp_path):
    out_json, out_md, out_png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    code, stdout, stderr = cli("bench", tiny_artifact, "--quick", "--device", "cpu", "--batch-sizes", "1,4",
                               "--seq-lens", "8", "--json", out_json, "--markdown", out_md, "--plot", out_png)
    assert code == 0, stderr
    assert "torch fp32" in stdout and "ort base" in stdout and "vs torch" in stdout
    report = json.loads(out_json.read_text())
    assert report["kind"] == "onnxforge-bench"
    m = report["machine"]
    assert m["cpu_flags"] is not None and m["logical_cores"] >= 1 and m["versions"]["onnxruntime"]
    peak = report["peaks"]["cpu"]
    assert peak["dtype"] == "fp32" and peak["gflops"] > 0
    # Measured before and after the timings; the better one is the peak.
    assert peak["gflops"] == max(peak["gflops_start"], peak["gflops_end"])
    rows = report["rows"]
    assert {(r["name"], r["batch"]) for r in rows} >= {("torch fp32", 1), ("torch fp32", 4), ("ort base", 1), ("ort base", 4)}
    spec = Artifact.open(tiny_artifact).spec
    for r in rows:
        ms = r["samples_ms"]
        assert len(ms) == r["n"] == r["repeats_per_cycle"] * len(r["cycle_medians_ms"])
        assert r["median_ms"] == pytest.approx(statistics.median(ms))
        assert r["p99_ms"] == pytest.approx(percentile(ms, 99))
        assert r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_seq_s"] == pytest.approx(r["batch"] / (r["median_ms"] / 1e3))
        assert r["flops"] == bert_flops(spec, r["batch"], r["seq"])
        assert r["gflops_s"] == pytest.approx(r["flops"] / (r["median_ms"] / 1e3) / 1e9)
        assert r["efficiency"] == pytest.approx(r["gflops_s"] / peak["gflops"])
        ref = next(x for x in rows if x["name"] == "torch fp32" and x["batch"] == r["batch"] and x["seq"] == r["seq"])
        assert r["reference"] == "torch fp32 [cpu]"
        assert r["speedup_vs_reference"] == pytest.approx(ref["median_ms"] / r["median_ms"])
        by_cycle = [a / b for a, b in zip(ref["cycle_medians_ms"], r["cycle_medians_ms"])]
        assert r["speedup_by_cycle"] == pytest.approx(by_cycle)
        assert math.isfinite(r["speedup_vs_reference"])
    md = out_md.read_text()
    assert "| contender | device | batch x seq | median ms |" in md and md.count("| ort base |") == 2
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, needle", [
    (["--batch-sizes", "0"], "--batch-sizes '0': 0 is out of range"),
    (["--variants", "nope"], "available variants: base"),
    (["--seq-lens", "9999"], "longer than the model's"),
    (["--device", "tpu"], "--device tpu is not known"),
    (["--plot", "chart.jpg"], "the chart is a PNG"),
])
def test_bad_input_is_exit_2(tiny_artifact, cli, args, needle):
    code, stdout, stderr = cli("bench", tiny_artifact, "--quick", *args)
    assert code == 2, (stdout, stderr)
    assert needle in stderr and "Traceback" not in stderr


def test_missing_artifact_is_exit_2(cli, tmp_path):
    code, _, stderr = cli("bench", tmp_path / "absent")
    assert code == 2 and "does not exist" in stderr


def test_cli_module_is_light():
    code = ("import sys, onnxforge.bench.cli, onnxforge.bench; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cuda_without_cuda_is_exit_1_naming_providers(tiny_artifact, cli):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("this machine has a usable CUDA")
    code, _, stderr = cli("bench", tiny_artifact, "--quick", "--device", "cuda", "--no-torch", "--batch-sizes", "1",
                          "--seq-lens", "8")
    assert code == 1, stderr
    assert "CUDAExecutionProvider" in stderr and "CPUExecutionProvider" in stderr and "Traceback" not in stderr


def test_bench_engine_override_and_low_precision_peaks(tiny_artifact, cli, tmp_path):
    """--engine openvino times the base export on OpenVINO; every CPU row gets an
    efficiency against the int8 (and, where the CPU has it, bf16) GEMM peak of the run."""
    out_json = tmp_path / "b.json"
    code, stdout, stderr = cli("bench", tiny_artifact, "--quick", "--device", "cpu", "--batch-sizes", "2",
                               "--seq-lens", "8", "--no-torch", "--variants", "base", "--engine", "openvino",
                               "--json", out_json)
    assert code == 0, stderr
    report = json.loads(out_json.read_text())
    (row,) = report["rows"]
    assert row["name"] == "openvino base" and row["kind"] == "openvino" and row["provider"] == "OpenVINO CPU (f32)"
    int8 = report["machine"]["cpu_int8_gemm"]
    assert int8["dtype"] == "int8" and int8["gflops"] > 0
    assert row["efficiency_int8"] == pytest.approx(row["gflops_s"] / int8["gflops"])
    bf16 = report["machine"].get("cpu_bf16_gemm")
    if bf16:
        assert row["efficiency_bf16"] == pytest.approx(row["gflops_s"] / bf16["gflops"])
    assert "eff int8 %" in stdout


def test_bench_rejects_an_unknown_engine(tiny_artifact, cli):
    code, _, stderr = cli("bench", tiny_artifact, "--quick", "--engine", "tensorrt")
    assert code == 2 and "--engine tensorrt is not known" in stderr
