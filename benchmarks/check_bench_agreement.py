"""Cross-check `onnxforge bench`: are its ratios what a separate, simpler timing finds?

In each round:
1. runs `onnxforge bench ART --json ...` (one process, its block/cycle engine);
2. right after, times the same contenders again with independent code: each contender
   alone in a fresh process (transformers' AutoModel and a bare
   onnxruntime.InferenceSession, its own inputs, a plain warm-up + timed loop).
Both timings of a round are minutes apart at most, so a shared machine's load drifts
less between them. Over the rounds it takes the median of each figure, prints both
medians and both ratios against PyTorch fp32 and their relative difference, and exits
1 if any differs by more than --tolerance.

    python benchmarks/check_bench_agreement.py ART --batch-sizes 1,8 --seq-lens 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _single(args: argparse.Namespace) -> None:
    """Child process: time one contender at one shape, print its median (seconds)."""
    import numpy as np

    art = Path(args.artifact)
    manifest = json.loads((art / "onnxforge.json").read_text())
    spec = manifest["spec"]
    rng = np.random.default_rng(123)
    ids = rng.integers(1000, spec["vocab_size"], size=(args.batch, args.seq), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feeds = {k: v for k, v in feeds.items() if k in spec["input_names"]}
    if args.single.startswith("ort "):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if args.threads:
            so.intra_op_num_threads = args.threads
        variant = args.single.split(" ", 1)[1]
        sess = ort.InferenceSession(str(art / manifest["variants"][variant]["file"]), so, providers=["CPUExecutionProvider"])

        def call():
            sess.run(None, feeds)
    else:
        import torch
        import transformers

        if args.threads:
            torch.set_num_threads(args.threads)
        source = manifest["source"]
        if source["kind"] == "builtin":
            from onnxforge.sources.builtin import builtin_model_dir

            folder = builtin_model_dir()
        else:
            folder = Path(source["location"])
        model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
        bf16 = "bf16" in args.single

        def call():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(**tensors)
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < args.warmup:
        call()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < args.seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    print(json.dumps({"median_s": statistics.median(times), "n": len(times)}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--seq-lens", default="128")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for both timings (1 is steadier on a shared CPU)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (bench, then separate timings)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per process")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--tolerance", type=float, default=0.15, help="largest allowed relative ratio difference")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        _single(args)
        return 0

    bench_runs: list[dict] = []
    separate: dict[tuple, list[float]] = {}
    for rnd in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            bench_json = Path(tmp) / "bench.json"
            cmd = [sys.executable, "-m", "onnxforge.cli", "bench", args.artifact, "--device", "cpu",
                   "--batch-sizes", args.batch_sizes, "--seq-lens", args.seq_lens, "--json", str(bench_json),
                   "--cycles", "2", "--max-cycles", "3", "--block-seconds", "0.3"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print(f"round {rnd + 1}/{args.rounds}: {' '.join(cmd[3:])}", file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            bench_runs.append(json.loads(bench_json.read_text()))
        rows_now = bench_runs[-1]["rows"]
        for r in rows_now:
            print(f"round {rnd + 1}/{args.rounds}: separate timing of {r['name']} {r['batch']}x{r['seq']}", file=sys.stderr)
            out = subprocess.run(
                [sys.executable, __file__, args.artifact, "--single", r["name"], "--batch", str(r["batch"]),
                 "--seq", str(r["seq"]), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
                + (["--threads", str(args.threads)] if args.threads else []),
                check=True, capture_output=True, text=True).stdout
            separate.setdefault((r["name"], r["batch"], r["seq"]), []).append(json.loads(out.strip().splitlines()[-1])["median_s"])

    def bench_ms(run: dict, key: tuple) -> float:
        return next(r["median_ms"] for r in run["rows"] if (r["name"], r["batch"], r["seq"]) == key)

    rows, worst = [], 0.0
    for r in bench_runs[0]["rows"]:
        key = (r["name"], r["batch"], r["seq"])
        ref = ("torch fp32", r["batch"], r["seq"])
        # Ratios within each round (the two methods' neighbours in time), then medians.
        bench_ratios = [bench_ms(run, ref) / bench_ms(run, key) for run in bench_runs]
        sep_ratios = [a / b for a, b in zip(separate[ref], separate[key])]
        bench_ratio, sep_ratio = statistics.median(bench_ratios), statistics.median(sep_ratios)
        diff = bench_ratio / sep_ratio - 1
        if r["name"] != "torch fp32":
            worst = max(worst, abs(diff))
        rows.append({"contender": r["name"], "batch": r["batch"], "seq": r["seq"],
                     "bench_median_ms": statistics.median(bench_ms(run, key) for run in bench_runs),
                     "separate_median_ms": statistics.median(separate[key]) * 1e3,
                     "bench_ratio": bench_ratio, "separate_ratio": sep_ratio, "ratio_difference": diff,
                     "bench_ratios_by_round": bench_ratios, "separate_ratios_by_round": sep_ratios})
    print(f"{'contender':22} {'shape':>7} {'bench ms':>9} {'sep. ms':>9} {'bench x':>8} {'sep. x':>8} {'diff':>7}")
    for r in rows:
        print(f"{r['contender']:22} {r['batch']:>3}x{r['seq']:<3} {r['bench_median_ms']:9.2f} {r['separate_median_ms']:9.2f} "
              f"{r['bench_ratio']:8.2f} {r['separate_ratio']:8.2f} {100 * r['ratio_difference']:+6.1f}%")
    loads = [run["machine"].get("load_average", [None])[0] for run in bench_runs]
    print(f"largest ratio difference: {100 * worst:.1f}% (tolerance {100 * args.tolerance:.0f}%); "
          f"1-minute load at each round's start: {loads}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "worst": worst, "tolerance": args.tolerance, "rounds": args.rounds,
                                         "threads": args.threads, "machine": bench_runs[0]["machine"]}, indent=2) + "\n")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
