"""The 10k-row CSV job, single-process vs Ray local, in one run: the Ray engine's overhead.

    python benchmarks/bench_batch_ray.py                       # MiniLM, 10,000 rows, 2 rounds
    python benchmarks/bench_batch_ray.py --rows 2000 --rounds 1 # quick

Both engines run as the user runs them, one `onnxforge batch` process each, timed
end to end (process start, model load, Ray start-up and shutdown included), on the
same CSV (``onnxforge.data.sample_texts()`` cycled to --rows) with the same variant.
Rounds alternate local, ray, local, ray... so a load change on a shared machine hits
both; the medians and their ratio are printed (the issue's target: ray/local <= 1.3
on 2 cores). Each engine writes its natural output (local: one Parquet file; Ray: a
folder of Parquet shards with its manifest). The Ray run's manifest gives each shard's busy time, from which the
per-actor throughput is computed (rows per busy actor-second): the figure the scale
plan in docs/batch.md multiplies. The outputs are compared row by row (max abs), so
neither engine is faster by computing something else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.artifacts import prepare  # noqa: E402
from harness.csvjob import write_csv  # noqa: E402

ONNXFORGE = [sys.executable, "-m", "onnxforge.cli"]


def run(cmd: list[str], timeout: float) -> float:
    started = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    wall = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return wall


def max_abs(local: Path, ray: Path) -> float:
    import numpy as np
    import pyarrow.parquet as pq

    a = np.array(pq.read_table(local).column("embedding").to_pylist(), dtype=np.float64)
    shards = pq.read_table(sorted(ray.glob("part-*.parquet"))).sort_by("row")
    b = np.array(shards.column("embedding").to_pylist(), dtype=np.float64)
    return float(np.abs(a - b).max())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=2, help="local+ray pairs (alternating)")
    p.add_argument("--work", type=Path, default=HERE / ".work")
    p.add_argument("--artifact", type=Path, help="an existing artifact folder (default: MiniLM exported into --work)")
    p.add_argument("--variant", default=None, help="variant for both engines (default: the CPU default)")
    p.add_argument("--actors", type=int, default=None, help="--actors for the Ray run (default: one per CPU)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    from onnxforge.data import sample_texts

    args.work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    art = Path(prepare("minilm", args.work, given=args.artifact, optimize=False, log=log)["artifact"])
    src = write_csv(args.work / f"rows_{args.rows}.csv", sample_texts(), args.rows)
    common = ["--column", "text", "--no-progress"] + (["--variant", args.variant] if args.variant else [])
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    # Each engine writes its natural output: one Parquet file; a folder of Parquet shards.
    out_local, out_ray = args.work / "bench_local.parquet", args.work / "bench_ray_shards"
    summary = args.work / "bench_ray.json"
    for r in range(args.rounds):
        walls["local"].append(run(ONNXFORGE + ["batch", str(art), str(src), "--out", str(out_local)] + common, 3600))
        log(f"round {r + 1}: local {walls['local'][-1]:.1f}s")
        ray_cmd = ONNXFORGE + ["batch", str(art), str(src), "--out", str(out_ray), "--engine", "ray", "--json", str(summary)]
        ray_cmd += common + (["--actors", str(args.actors)] if args.actors else [])
        walls["ray"].append(run(ray_cmd, 3600))
        log(f"round {r + 1}: ray   {walls['ray'][-1]:.1f}s")
    ray_report = json.loads(summary.read_text())
    # Per-actor throughput: rows over the actors' busy seconds (read + infer + write of each shard).
    manifest = json.loads((out_ray / "_manifest.json").read_text())
    busy = sum(sum(s["worker"].values()) for s in manifest["shards"])
    per_actor = manifest["rows"]["written"] / busy if busy else 0.0
    local_med, ray_med = statistics.median(walls["local"]), statistics.median(walls["ray"])
    figures = {
        "rows": args.rows, "rounds": args.rounds, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "local_s": walls["local"], "ray_s": walls["ray"], "local_median_s": local_med, "ray_median_s": ray_med,
        "ratio_ray_over_local": ray_med / local_med, "ray_actors": ray_report.get("actors"),
        "ray_plan_s": ray_report.get("plan_seconds"), "ray_cluster_s": ray_report.get("cluster_seconds"),
        "per_actor_rows_per_busy_s": per_actor, "max_abs_local_vs_ray": max_abs(out_local, out_ray),
    }
    print(f"rows {args.rows}, {args.rounds} round(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':8} {'median s':>9} {'rows/s':>8}   runs")
    for name, med in (("local", local_med), ("ray", ray_med)):
        print(f"{name:8} {med:9.1f} {args.rows / med:8.0f}   {', '.join(f'{w:.1f}' for w in walls[name])}")
    print(f"ray / local: {figures['ratio_ray_over_local']:.2f}x  (target <= 1.3x on 2 cores)")
    print(f"ray: {figures['ray_actors']} actor(s), plan {figures['ray_plan_s']:.1f}s, cluster {figures['ray_cluster_s']:.1f}s; "
          f"per-actor throughput {per_actor:.0f} rows per busy second")
    print(f"max abs difference, local vs ray embeddings: {figures['max_abs_local_vs_ray']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
