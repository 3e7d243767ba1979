"""A smoke run of the benchmark harness (benchmarks/run_all.py --quick) on the tiny BERT.

Not a benchmark: it checks that every section runs end to end (subprocesses, servers,
load generator), that the JSON holds what the tables are built from, and that the
ratios in the Markdown are the ones the measurements give. No timing assertions.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tiny_artifact, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("harness")
    # The tiny BERT has 128 positions but carries MiniLM's tokenizer_config (512), which
    # serve rightly refuses: give the copy a tokenizer that fits.
    art = tmp / "tiny"
    shutil.copytree(tiny_artifact, art)
    cfg = json.loads((art / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 128
    (art / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--label", "smoke",
           "--artifact", f"minilm={art}", "--models", "minilm", "--out", str(out), "--work", str(tmp / "work"),
           "--csv-rows", "64", "--naive-csv-rows", "32", "--server-loads", "1:6,16:32", "--tokenizer-texts", "40"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "smoke.json").read_text()), (out / "smoke.md").read_text()


def test_inference_section(smoke):
    results, md = smoke
    inf = results["sections"]["inference"]["minilm"]
    names = {r["contender"] for r in inf["rows"]}
    assert {"torch fp32", "ort base"} <= names
    bench_rows = inf["bench"]["rows"]
    for row in inf["rows"]:
        b1 = next(b for b in bench_rows if b["name"] == row["contender"] and b["batch"] == 1 and b["device"] == row["device"])
        ref = next(b for b in bench_rows if b["name"] == "torch fp32" and b["batch"] == 1 and b["device"] == row["device"])
        assert row["per_phrase_ms_batch1"] == b1["median_ms"]
        assert row["speedup_batch1"] == pytest.approx(ref["median_ms"] / b1["median_ms"])
    assert "## 1. Inference time per phrase" in md and "seed: BERT (bert-base-cased)" in md


def test_tokenizer_section(smoke):
    results, _ = smoke
    tok = results["sections"]["tokenizers"]
    assert tok["texts"] == 40 and len(tok["rows"]) == 5
    base = tok["rows"][0]
    assert "pure Python" in base["contender"]
    for r in tok["rows"]:
        assert r["ids_differ_from_pure_python"] == 0, r  # every tokenizer did the same work
        assert r["us_per_phrase"] > 0
        assert r["speedup_vs_pure_python"] == pytest.approx(statistics.median(base["passes_s"]) / statistics.median(r["passes_s"]))


def test_csv_section(smoke):
    results, md = smoke
    job = results["sections"]["csv"]["minilm"]
    assert job["rows"] == 64 and "cycled" in job["data"]
    of, naive, pure = job["onnxforge"], job["naive"], job["pure_compute"]
    assert of["returncode"] == 0 and of["output_rows"] == 64 and of["peak_rss_mib"] > 0
    assert naive["returncode"] == 0 and naive["phases"]["rows"] == 32 and naive["scale"] == 2
    assert naive["peak_rss_mib"] > 0 and pure["inference_s"] > 0
    assert job["agreement"]["rows_compared"] > 0 and job["agreement"]["min_cosine"] > 0.999
    vs_pure = re.search(r"total <= 1.15x pure compute: \*\*([\d.]+)x\*\*", md).group(1)
    assert float(vs_pure) == pytest.approx(of["wall_s"] / pure["inference_s"], abs=0.006)
    vs_naive = re.search(r"faster than the naive pipeline: \*\*([\d.]+)x\*\*", md).group(1)
    assert float(vs_naive) == pytest.approx(naive["estimated_total_s"] / of["wall_s"], abs=0.006)


def test_server_section(smoke):
    results, md = smoke
    srv = results["sections"]["server"]["minilm"]
    for side in ("onnxforge", "naive"):
        runs = {r["concurrency"]: r for r in srv[side]["runs"]}
        assert set(runs) == {1, 16}
        for c, total in ((1, 6), (16, 32)):
            assert runs[c]["ok"] == total and runs[c]["errors"] == 0
            assert runs[c]["requests_per_s"] == pytest.approx(total / runs[c]["wall_s"])
    gain = re.search(r">= 3x the naive server: \*\*([\d.]+)x\*\*", md).group(1)
    rps = {s: next(r for r in srv[s]["runs"] if r["concurrency"] == 16)["requests_per_s"] for s in ("onnxforge", "naive")}
    assert float(gain) == pytest.approx(rps["onnxforge"] / rps["naive"], abs=0.006)
    assert set(srv["components"]["ms"]) == {"naive encode", "naive inference", "onnxforge encode", "onnxforge inference"}


def test_results_carry_machine_and_command(smoke):
    results, md = smoke
    assert results["command"].startswith("python benchmarks/run_all.py --quick")
    assert results["machine"]["cpu_flags"] is not None and results["machine"]["versions"]["onnxruntime"]
    assert "quick mode" in md and "Seed figures" in md
