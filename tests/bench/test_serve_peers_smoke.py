"""A smoke run of benchmarks/bench_serve_peers.py (onnxforge and the naive server; infinity-emb
needs its own venv and minutes to install, so it is left to real runs). No timing assertions:
every request answered 200, the same embeddings, and the fields the report is built from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_serve_peers_runs_end_to_end(tiny_artifact, tmp_path):
    art = tmp_path / "tiny"
    shutil.copytree(tiny_artifact, art)
    cfg = json.loads((art / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 128  # the tiny BERT's positions (it borrows MiniLM's tokenizer files)
    (art / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_serve_peers.py"), "--artifact", str(art),
           "--servers", "onnxforge,naive", "--loads", "1:4,4:8", "--naive-loads", "1:3", "--work", str(tmp_path / "work"),
           "--out", str(out), "--serve-args=", "--serve-args=--performance throughput"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    ours, naive = results["servers"]["onnxforge"], results["servers"]["naive"]
    assert "error" not in results["servers"]["onnxforge --performance throughput"]
    assert set(ours["endpoints"]) == {"/v1/embeddings", "/embed"} and set(naive["endpoints"]) == {"/embed"}
    for server in (ours, naive):
        assert server["min_cosine_vs_onnxforge_embed"] > 0.9999
        for runs in server["endpoints"].values():
            for run in runs:
                assert run["errors"] == 0 and run["ok"] == run["requests"] and run["server_cpu_ms_per_request"] > 0
    assert "server" in proc.stdout and "/v1/embeddings" in proc.stdout
