"""What the optimize stage buys, side by side in one run (MiniLM-L6, CPU, sequence 128).

    python benchmarks/bench_optimize.py --json /tmp/optimize.json          # ~2 min on 2 cores
    python benchmarks/bench_optimize.py --artifact DIR --json out.json     # reuse an artifact
    python benchmarks/bench_optimize.py --sweep --json /tmp/int8-sweep.json  # int8 trade-off curve, ~5 min
    python benchmarks/bench_optimize.py --threads 1 --clock cpu               # on a busy machine: CPU time per call

Contenders: PyTorch eager fp32 (the reference), PyTorch bf16 autocast (a strong peer on
CPUs with AMX), ONNX Runtime on the plain export (``base``), on the fused fp32 graph
(``optimized``) and on the int8 graph (``int8``), at batch 1 and 8. Each contender is
timed in a block (warm-up, then repeated calls) and the cycle of blocks is repeated:
alternating PyTorch and ONNX Runtime call by call slows both (their thread pools spin
after each call). Medians of all calls and the per-cycle medians are printed, with
ratios to PyTorch fp32; the targets are fused fp32 >= 1.2x at batch 1 and int8 >= 2x at
batch 8. On a shared machine the per-cycle spread says how much to trust a ratio.

``--sweep`` measures the int8 trade-off instead: for each quantization configuration,
the mean-pooled sentence-embedding cosine vs PyTorch fp32 over 300 real texts (min and
mean) and the ORT time at batch 8 x 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a clone without installing
    sys.path.insert(0, str(ROOT))

from onnxforge.artifact import Artifact  # noqa: E402
from onnxforge.bench.contenders import bench_inputs, ort_contender, torch_contenders  # noqa: E402
from onnxforge.bench.machine import cpu_has_bf16, machine_info  # noqa: E402
from onnxforge.bench.timing import time_blocks  # noqa: E402

SEQ = 128
BATCHES = (1, 8)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _onnxforge(*args: str) -> None:
    """Run an onnxforge command in a child process, so that no session, thread pool or
    allocation from building the model lingers in the process that times it."""
    import subprocess

    cmd = [sys.executable, "-m", "onnxforge.cli", *args]
    say("$ onnxforge " + " ".join(args))
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"onnxforge {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def prepare_artifact(path: Path | None, work: Path) -> Path:
    """An exported MiniLM with the fused fp32 and int8 variants (built when missing)."""
    if path is None:
        path = work / "minilm"
        _onnxforge("export", "--out", str(path))
    art = Artifact.open(path)
    for precision, variant in (("fp32", "optimized"), ("int8", "int8")):
        if variant not in art.variants:
            _onnxforge("optimize", str(path), "--precision", precision)
    return path


class _CpuTiming:
    """Per-call process CPU time by cycle (the same shape as bench.timing.Timing)."""

    def __init__(self):
        self.cycles: list[list[float]] = []

    @property
    def samples(self):
        return [t for c in self.cycles for t in c]

    @property
    def cycle_medians(self):
        return [statistics.median(c) for c in self.cycles]

    @property
    def spread(self):
        m = self.cycle_medians
        return (max(m) - min(m)) / statistics.median(m) if len(m) > 1 else float("inf")


def time_blocks_cpu(fns: dict, *, block_seconds: float, cycles: int) -> dict:
    """Blocks and cycles like time_blocks, but each call's process CPU time: with one
    thread per library this is the work a call does, far less sensitive than wall time
    to other jobs sharing the cores (cache and memory contention still show)."""
    out = {k: _CpuTiming() for k in fns}
    repeats: dict[str, int] = {}
    for cycle in range(cycles):
        keys = list(fns)[cycle % len(fns):] + list(fns)[: cycle % len(fns)]
        for key in keys:
            fn = fns[key]
            for _ in range(2):
                fn()
            if key not in repeats:
                t0 = time.process_time()
                fn()
                repeats[key] = max(3, min(200, int(block_seconds / max(time.process_time() - t0, 1e-4))))
            calls = []
            for _ in range(repeats[key]):
                t0 = time.process_time()
                fn()
                calls.append(time.process_time() - t0)
            out[key].cycles.append(calls)
    return out


def _summary(timing) -> dict:
    samples = timing.samples
    return {
        "median_ms": 1e3 * statistics.median(samples),
        "cycle_medians_ms": [1e3 * m for m in timing.cycle_medians],
        "spread": timing.spread,
        "calls": len(samples),
    }


def run_bench(folder: Path, *, block_seconds: float, cycles: int, threads: int | None, clock: str) -> dict:
    import torch

    from onnxforge.sources import SourceRef, load_source

    if threads:
        torch.set_num_threads(threads)
    art = Artifact.open(folder)
    spec = art.spec
    loaded = load_source(SourceRef.from_dict(art.manifest["source"]))
    contenders = torch_contenders(loaded.module, spec, "cpu", lowp=True, cpu_bf16=cpu_has_bf16())
    for variant in ("base", "optimized", "int8"):
        entry = art.variants[variant]
        contenders.append(ort_contender(art.variant_path(variant), variant, entry.get("precision", "fp32"), "cpu", threads))
    names = {c.key: (c.name if c.kind == "torch" else f"ort {c.variant}") for c in contenders}
    results: dict = {}
    for batch in BATCHES:
        feeds = bench_inputs(spec, batch, SEQ)
        fns = {names[c.key]: c.prepare(feeds) for c in contenders}
        say(f"timing batch {batch} x {SEQ}: {', '.join(fns)}")
        if clock == "cpu":
            timings = time_blocks_cpu(fns, block_seconds=block_seconds, cycles=cycles)
        else:
            timings = time_blocks(fns, warmup_seconds=block_seconds / 2, block_seconds=block_seconds, min_cycles=cycles,
                                  max_cycles=cycles, target_spread=0.0, min_repeats=3, max_repeats=200)
        rows = {name: _summary(t) for name, t in timings.items()}
        ref = rows["torch fp32"]["median_ms"]
        for row in rows.values():
            row["speedup_vs_torch_fp32"] = ref / row["median_ms"]
        results[f"batch{batch}"] = rows
    return results


def print_table(results: dict) -> None:
    print(f"\n{'contender':24s} " + " ".join(f"{'b' + k[5:] + ' ms':>10s} {'x torch':>8s} {'spread':>7s}" for k in results))
    names = list(next(iter(results.values())))
    for name in names:
        cells = []
        for rows in results.values():
            r = rows[name]
            cells.append(f"{r['median_ms']:10.2f} {r['speedup_vs_torch_fp32']:8.2f} {r['spread']:7.0%}")
        print(f"{name:24s} " + " ".join(cells))
    b1, b8 = results.get("batch1"), results.get("batch8")
    if b1 and b8:
        print(f"\ntargets: fused fp32 at batch 1 {b1['ort optimized']['speedup_vs_torch_fp32']:.2f}x (>= 1.2x); "
              f"int8 at batch 8 {b8['ort int8']['speedup_vs_torch_fp32']:.2f}x (>= 2x)")


# -- int8 sweep ------------------------------------------------------------------------------
def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)


def sweep(folder: Path, *, block_seconds: float, cycles: int, work: Path, threads: int | None, clock: str) -> dict:
    """Quality and speed of each int8 configuration, built from the same fused graph."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from onnxforge.data import sample_texts
    from onnxforge.optimize import OptimizeOptions
    from onnxforge.optimize.fusion import fuse
    from onnxforge.optimize.int8 import to_int8
    from onnxforge.optimize.checks import feeds_for
    from onnxforge.runners import run_torch
    from onnxforge.sources import SourceRef, load_source
    from onnxforge.textbatch import encode_texts
    from onnxforge.tokenizer import load_tokenizer

    art = Artifact.open(folder)
    spec = art.spec
    fused = fuse(art.variant_path("base"), spec, art.manifest["export"]["exporter"], folder / "config.json").model
    defaults = OptimizeOptions(precision="int8")
    calib, _ = feeds_for(art, spec, defaults.calibration_texts, defaults.calibration_offset, seed=7)
    x = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    paths: dict[str, Path] = {}

    def copy():
        return onnx.ModelProto.FromString(fused.SerializeToString())

    def save(name, model):
        paths[name] = work / f"sweep_{len(paths)}.onnx"
        onnx.save(model, str(paths[name]))

    save("fp32 fused (reference)", fused)
    ours = [
        ("dynamic per-channel, MatMul + Attention", dict(outlier_method="none")),
        ("dynamic per-channel, MatMul only", dict(outlier_method="none", quantize_attention=False)),
        ("outlier smooth (ratio 6, <=4 ch, to 5x median) [default]", {}),
        ("outlier smooth (ratio 4, <=8 ch, to 5x median)", dict(outlier_ratio=4.0, max_outlier_channels=8)),
        ("outlier split (ratio 6, <=4 ch)", dict(outlier_method="split")),
        ("outlier split (ratio 6, <=4 ch), MatMul only", dict(outlier_method="split", quantize_attention=False)),
    ]
    for name, kw in ours:
        say(f"building {name}")
        save(name, to_int8(copy(), calib, OptimizeOptions(precision="int8", **kw), calibration="sweep")[0])
    for name, kw in [("dynamic per-tensor, MatMul + Attention", dict(per_channel=False)),
                     ("dynamic per-channel, reduce_range", dict(per_channel=True, reduce_range=True))]:
        say(f"building {name}")
        out = work / f"sweep_{len(paths)}.onnx"
        quantize_dynamic(copy(), out, weight_type=QuantType.QInt8, extra_options=x,
                         nodes_to_quantize=[n.name for n in fused.graph.node if n.op_type in ("MatMul", "Attention")], **kw)
        paths[name] = out

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    say("building static QDQ")
    out = work / f"sweep_{len(paths)}.onnx"
    quantize_static(copy(), out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, op_types_to_quantize=["MatMul"], extra_options=x)
    paths["static QDQ MinMax, MatMul (u8/s8)"] = out
    say("building MatMulNBits 8-bit")
    q = MatMulNBitsQuantizer(copy(), algo_config=DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True,
                                                                              accuracy_level=4, bits=8))
    q.process()
    save("MatMulNBits 8-bit block 32, int8 compute", q.model.model)

    # Quality: 300 evaluation texts (offsets 0-299; calibration used offset 1000+).
    say("quality on 300 texts vs PyTorch fp32")
    tokenizer = load_tokenizer(folder)
    texts = sorted(sample_texts(300), key=len)
    batches = [encode_texts(tokenizer, texts[i:i + 25], spec) for i in range(0, len(texts), 25)]
    module = load_source(SourceRef.from_dict(art.manifest["source"])).module
    refs = [_mean_pool(run_torch(module, spec, f)["last_hidden_state"], f["attention_mask"]) for f in batches]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for name, p in paths.items()}
    rows = {}
    for name, s in sessions.items():
        inputs = {i.name for i in s.get_inputs()}
        cos = []
        for f, ref in zip(batches, refs):
            got = _mean_pool(s.run(["last_hidden_state"], {k: v for k, v in f.items() if k in inputs})[0], f["attention_mask"])
            cos.append((ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1))
        c = np.concatenate(cos)
        rows[name] = {"min_cosine": float(c.min()), "mean_cosine": float(c.mean())}
    feeds = bench_inputs(spec, 8, SEQ)

    def call(s):
        inputs = {i.name for i in s.get_inputs()}
        f = {k: v for k, v in feeds.items() if k in inputs}
        return lambda: s.run(None, f)

    say("timing each configuration at batch 8 x 128")
    fns = {n: call(s) for n, s in sessions.items()}
    if clock == "cpu":
        timings = time_blocks_cpu(fns, block_seconds=block_seconds, cycles=cycles)
    else:
        timings = time_blocks(fns, warmup_seconds=block_seconds / 2, block_seconds=block_seconds, min_cycles=cycles,
                              max_cycles=cycles, target_spread=0.0, min_repeats=3, max_repeats=100)
    for name, t in timings.items():
        rows[name].update(_summary(t))
    return rows


def print_sweep(rows: dict) -> None:
    print(f"\n{'int8 configuration':62s} {'min cos':>8s} {'mean cos':>9s} {'b8 ms':>8s} {'spread':>7s}")
    for name, r in rows.items():
        print(f"{name:62s} {r['min_cosine']:8.4f} {r['mean_cosine']:9.4f} {r['median_ms']:8.1f} {r['spread']:7.0%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--artifact", type=Path, help="an exported MiniLM artifact (default: export one to a temporary folder)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--block-seconds", type=float, default=1.0, help="seconds per timed block (default 1.0)")
    p.add_argument("--cycles", type=int, default=3, help="cycles of blocks (default 3)")
    p.add_argument("--sweep", action="store_true", help="measure the int8 quality/speed trade-off instead")
    p.add_argument("--threads", type=int, help="intra-op threads for ORT and PyTorch (default: each library's own)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (default); cpu: process CPU time per call, with --threads 1 "
                        "(robust on a machine shared with other jobs)")
    args = p.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu measures one thread's work: pass --threads 1")
    started = time.time()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        work = Path(tmp)
        folder = prepare_artifact(args.artifact, work)
        if args.sweep:
            results = {"sweep": sweep(folder, block_seconds=args.block_seconds, cycles=args.cycles, work=work,
                                      threads=args.threads, clock=args.clock)}
            print_sweep(results["sweep"])
        else:
            results = run_bench(folder, block_seconds=args.block_seconds, cycles=args.cycles, threads=args.threads,
                                clock=args.clock)
            print_table(results)
    load_end = os.getloadavg()
    print(f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end on {os.cpu_count()} cores"
          + ("  (shared machine: ratios are noisy)" if max(load_start[0], load_end[0]) > (os.cpu_count() or 1) else ""))
    if args.json:
        doc = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
               "clock": args.clock, "threads": args.threads, "sequence": SEQ, "results": results, "seconds": round(time.time() - started, 1),
               "load_average": {"start": load_start, "end": load_end}, "machine": machine_info()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
