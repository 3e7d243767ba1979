"""How long `onnxforge validate` takes on the real MiniLM-L6: fp32 and fp16 (CPU provider),
the default shape plan and 200 real sentences (the issue's budget: under 60 s for both).

Exports the built-in model to a temporary folder, adds a fused fp16 variant the way the
optimize stage does (onnxruntime.transformers optimizer + float16 with fp32 I/O), then
times each `onnxforge validate` as a separate process, imports and model loading included,
and prints one JSON line.

    python benchmarks/validate_minilm.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_fp16(art: Path) -> None:
    from onnxruntime.transformers import optimizer

    manifest = json.loads((art / "onnxforge.json").read_text())
    spec = manifest["spec"]
    model = optimizer.optimize_model(str(art / "model.onnx"), model_type="bert", num_heads=spec["num_heads"],
                                     hidden_size=spec["hidden_size"], opt_level=0)
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(art / "model_fp16.onnx"))
    manifest["variants"]["fp16"] = {"file": "model_fp16.onnx", "precision": "fp16"}
    (art / "onnxforge.json").write_text(json.dumps(manifest, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="reuse or keep the artifact in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="onnxforge-validate-bench-")) / "minilm"
    cli = [sys.executable, "-m", "onnxforge.cli"]
    if not (folder / "onnxforge.json").is_file():
        subprocess.run(cli + ["export", "--out", str(folder), "--force"], check=True, capture_output=True)
    manifest = json.loads((folder / "onnxforge.json").read_text())
    if "fp16" not in manifest["variants"]:
        add_fp16(folder)
    timings = {}
    for variant in ("base", "fp16"):
        report = folder / f"validate-{variant}.json"
        started = time.perf_counter()
        run = subprocess.run(cli + ["validate", str(folder), "--variant", variant, "--json", str(report)],
                             capture_output=True, text=True)
        wall = time.perf_counter() - started
        if run.returncode != 0:
            sys.exit(f"validate --variant {variant} exited {run.returncode}:\n{run.stderr}")
        inner = json.loads(report.read_text())
        timings[variant] = {"wall_s": round(wall, 2), **inner["seconds"],
                            "texts": sum(g.get("texts", 0) for g in inner["groups"]),
                            "samples": sum(g["samples"] for g in inner["groups"])}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({"model": "all-MiniLM-L6-v2", "provider": "CPUExecutionProvider", "cpu_count": os.cpu_count(),
                      "loadavg_1m": load, "total_wall_s": round(sum(t["wall_s"] for t in timings.values()), 2),
                      "variants": timings}))


if __name__ == "__main__":
    main()
