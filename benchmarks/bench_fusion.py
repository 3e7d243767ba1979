"""Fused fp32 graph vs the plain export on ONNX Runtime CPU, both exporters, one run.

    python benchmarks/bench_fusion.py --json /tmp/fusion.json                  # MiniLM + BERT-base
    python benchmarks/bench_fusion.py --models minilm --cycles 6               # MiniLM only, ~5 min
    python benchmarks/bench_fusion.py --work DIR                               # keep / reuse the artifacts

For each model (the built-in MiniLM-L6 and a random BERT-base-sized encoder: 12 layers,
hidden 768, 12 heads) and each exporter (torchscript, dynamo), the artifact is exported
and optimized (fp32, built for CPU) by onnxforge in child processes; then every graph
(plain export and fused variant, both exporters) is timed in the same process at
batch 1, 8 and 32 x 128, full-length rows, ORT's default CPU session (all graph
optimizations, default threads), exactly as ``onnxforge.runners.make_session`` builds it.

Timing: blocks of repeated calls after a warm-up, the cycle of blocks repeated with the
contenders in rotating order (other jobs share the cores); medians over all calls.
On a busy machine use ``--threads 1 --clock cpu``: per-call process CPU time with one
ORT thread, the work a call does, far less sensitive to other jobs than wall time.
Printed ratios: fused / plain of the same exporter, and each graph / the plain
TorchScript export (the fastest plain graph on ORT CPU). Ratios < 1 mean faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a clone without installing
    sys.path.insert(0, str(ROOT))

SEQ = 128
BATCHES = (1, 8, 32)
EXPORTERS = ("torchscript", "dynamo")
MODELS = ("minilm", "bert-base")


def build_bert_base():
    """A BERT-base-sized encoder with random (seeded) weights, no pooler."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    return BertModel(config, add_pooling_layer=False).eval()


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _onnxforge(*args: str) -> None:
    """A child process per build: no session or thread pool lingers in the timing process."""
    cmd = [sys.executable, "-m", "onnxforge.cli", *args]
    say("$ onnxforge " + " ".join(args))
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"onnxforge {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def prepare(model: str, exporter: str, work: Path) -> Path:
    from onnxforge.artifact import Artifact

    folder = work / f"{model}-{exporter}"
    if not (folder / "onnxforge.json").is_file():
        source = [] if model == "minilm" else ["bench_fusion:build_bert_base", "--app-dir", str(ROOT / "benchmarks")]
        _onnxforge("export", *source, "--out", str(folder), "--exporter", exporter, "--force")
    if "optimized" not in Artifact.open(folder).variants:
        _onnxforge("optimize", str(folder), "--precision", "fp32", "--device", "cpu")
    return folder


def contenders(folder: Path, exporter: str, batch: int, threads: int | None) -> dict:
    from onnxforge.artifact import Artifact
    from onnxforge.bench.contenders import bench_inputs
    from onnxforge.runners import make_session

    art = Artifact.open(folder)
    feeds = bench_inputs(art.spec, batch, SEQ)
    out = {}
    for variant, label in (("base", "plain"), ("optimized", "fused")):
        session, _ = make_session(art.variant_path(variant), "cpu", threads=threads)
        mine = {i.name: feeds[i.name] for i in session.get_inputs()}
        out[f"{exporter}/{label}"] = (lambda s=session, f=mine: s.run(None, f))
    return out


def fusion_summary(folder: Path) -> dict:
    from onnxforge.artifact import Artifact

    record = Artifact.open(folder).stage("optimize.optimized") or {}
    fusion = record.get("fusion", {})
    return {"achieved": fusion.get("achieved"), "emitted": record.get("fused_ops"),
            "route": fusion.get("route"), "kernel_choices": fusion.get("kernel_choices")}


def time_cycles(fns: dict, *, cycles: int, block_seconds: float, clock: str) -> dict[str, list[list[float]]]:
    """Per contender, per cycle: the per-call times of one block (after one warm-up call)."""
    import time

    now = time.process_time if clock == "cpu" else time.perf_counter
    keys, samples, repeats = list(fns), {k: [] for k in fns}, {}
    for cycle in range(cycles):
        for key in keys[cycle % len(keys):] + keys[: cycle % len(keys)]:
            fns[key]()  # warm-up: the previous block belonged to another graph
            if key not in repeats:
                t0 = time.perf_counter()
                fns[key]()
                repeats[key] = max(2, min(50, round(block_seconds / max(time.perf_counter() - t0, 1e-4))))
            block = []
            for _ in range(repeats[key]):
                t0 = now()
                fns[key]()
                block.append(now() - t0)
            samples[key].append(block)
    return samples


def run(models, batches, cycles: int, block_seconds: float, work: Path, threads: int | None, clock: str) -> dict:
    from onnxforge.bench.machine import machine_info

    results = {"machine": machine_info(), "seq": SEQ, "threads": threads or "ORT default", "clock": clock,
               "models": {}}
    for model in models:
        folders = {ex: prepare(model, ex, work) for ex in EXPORTERS}
        entry = {"fusion": {ex: fusion_summary(f) for ex, f in folders.items()}, "batches": {}}
        for batch in batches:
            fns = {}
            for ex, folder in folders.items():
                fns.update(contenders(folder, ex, batch, threads))
            say(f"timing {model} batch {batch} x {SEQ}: {', '.join(fns)}")
            timings = time_cycles(fns, cycles=cycles, block_seconds=block_seconds, clock=clock)
            ms = {k: 1000 * statistics.median([t for c in v for t in c]) for k, v in timings.items()}
            # Spread: (max - min) / median of the per-cycle medians; says how far to trust a ratio.
            meds = {k: [statistics.median(c) for c in v] for k, v in timings.items()}
            spread = {k: (max(m) - min(m)) / statistics.median(m) for k, m in meds.items()}
            entry["batches"][batch] = {"ms": ms, "spread": spread}
            del fns, timings
        results["models"][model] = entry
    return results


def print_table(results: dict) -> None:
    for model, entry in results["models"].items():
        print(f"\n{model} (sequence {results['seq']}, threads {results['threads']}, {results['clock']} clock; "
              "ms = median per call; ratio < 1 is faster)")
        print(f"{'batch':>5}  {'graph':<18} {'ms':>9}  {'vs plain same exporter':>22}  {'vs plain torchscript':>20}  spread")
        for batch, row in entry["batches"].items():
            ms = row["ms"]
            ref = ms["torchscript/plain"]
            for key, value in ms.items():
                exporter = key.split("/")[0]
                same = value / ms[f"{exporter}/plain"]
                print(f"{batch:>5}  {key:<18} {value:9.2f}  {same:22.3f}  {value / ref:20.3f}  {row['spread'][key]:.2f}")
        for ex, f in entry["fusion"].items():
            print(f"  {ex}: fused {f['achieved']}; emitted {f['emitted']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--cycles", type=int, default=5, help="cycles of blocks (more on a busy machine)")
    parser.add_argument("--block-seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, help="ORT intra-op threads (default: ORT's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: per-call process CPU time (use with --threads 1 on a busy machine)")
    parser.add_argument("--work", type=Path, help="artifact folder to keep and reuse (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {MODELS}")
    batches = [int(b) for b in args.batches.split(",") if b]
    with tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run(models, batches, args.cycles, args.block_seconds, work, args.threads, args.clock)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
