"""Low-precision CPU routes side by side: quality on real text and speed, in one run.

    python benchmarks/sweep_ov_int8.py --artifact DIR [--configs a,b] [--json out.json]

DIR is an exported MiniLM (``onnxforge export``) with the ``optimized`` and ``int8``
variants (``onnxforge optimize --precision fp32|int8``). Contenders: ONNX Runtime fp32
(fused) and int8 (onnxforge's outlier-smoothed dynamic int8), OpenVINO on the base export
in f32 and bf16, and each NNCF int8 configuration of ``onnxforge.optimize.ov_int8.CONFIGS``
run with OpenVINO's bf16 (the CPU default: unquantized ops in bf16) and f32 precision.
Quality: min / mean cosine of mean-pooled sentence embeddings vs PyTorch fp32 over 300
real texts (onnxforge.data offsets 0-299; calibration uses 128 texts at offset 1000+).
Speed: block timing (warm-up, repeats, cycles rotated; medians) at batch 1 x 128 and
8 x 128 in this one process. The CPU is shared on the development machine: compare
within a run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxforge.artifact import Artifact  # noqa: E402
from onnxforge.bench.contenders import bench_inputs  # noqa: E402


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    return (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)


def time_blocks_clock(fns: dict, *, clock, block_seconds: float, cycles: int) -> dict[str, list[list[float]]]:
    """Block timing on ``clock`` (perf_counter or process_time): per contender, per cycle,
    a warm-up then repeats sized from the warm-up; the cycle order rotates."""
    keys = list(fns)
    samples: dict[str, list[list[float]]] = {k: [] for k in keys}
    repeats: dict[str, int] = {}
    for cycle in range(cycles):
        for key in keys[cycle % len(keys):] + keys[:cycle % len(keys)]:
            fn = fns[key]
            start = time.perf_counter()
            warm = 0
            while warm < 2 or time.perf_counter() - start < block_seconds / 3:
                fn()
                warm += 1
            per_call = (time.perf_counter() - start) / warm
            repeats.setdefault(key, max(3, min(400, int(block_seconds / max(per_call, 1e-6)))))
            block = []
            for _ in range(repeats[key]):
                t0 = clock()
                fn()
                block.append(clock() - t0)
            samples[key].append(block)
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--configs", default="", help="comma-separated names from ov_int8.CONFIGS (default: all)")
    p.add_argument("--work", type=Path, default=None, help="folder for the quantized IRs (default: DIR/.sweep)")
    p.add_argument("--block-seconds", type=float, default=1.5)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every engine (1 on a busy machine)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time per call (steadier than wall time when others share the CPU)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import openvino as ov

    from onnxforge.data import sample_texts
    from onnxforge.optimize.checks import feeds_for
    from onnxforge.optimize.ov_int8 import CONFIGS, quantize
    from onnxforge.runners import make_session, run_torch
    from onnxforge.runtime.openvino import OpenVINOEngine, OpenVINOOptions
    from onnxforge.sources import SourceRef, load_source
    from onnxforge.textbatch import encode_texts
    from onnxforge.tokenizer import load_tokenizer

    art = Artifact.open(args.artifact)
    spec = art.spec
    work = args.work or (args.artifact / ".sweep")
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.configs.split(",") if n] or list(CONFIGS)

    say("reference: PyTorch fp32 on 300 texts")
    tokenizer = load_tokenizer(args.artifact)
    texts = sorted(sample_texts(300), key=len)
    batches = [encode_texts(tokenizer, texts[i:i + 25], spec) for i in range(0, len(texts), 25)]
    module = load_source(SourceRef.from_dict(art.manifest["source"])).module
    refs = [pooled(run_torch(module, spec, f)["last_hidden_state"], f["attention_mask"]) for f in batches]
    del module

    calib, _ = feeds_for(art, spec, 128, 1000, seed=7)
    check, _ = feeds_for(art, spec, 64, 1500, seed=7)
    base = ov.Core().read_model(str(art.variant_path("base")))

    def metric(compiled, items) -> float:
        # Accuracy control's metric: min pooled cosine vs the fp32 base on held-out text.
        worst = 1.0
        for feeds, ref in zip(items, check_refs):
            out = compiled(feeds)[compiled.output("last_hidden_state")]
            worst = min(worst, float(cosines(ref, pooled(out, feeds["attention_mask"])).min()))
        return worst

    base_engine = OpenVINOEngine.open(art.variant_path("base"), options=OpenVINOOptions(precision="f32"))
    check_refs = [pooled(base_engine.run(f)["last_hidden_state"], f["attention_mask"]) for f in check]

    irs: dict[str, Path] = {}
    facts: dict[str, dict] = {}
    for name in names:
        xml = work / f"{name}.xml"
        if not xml.is_file():
            say(f"quantizing {name}")
            t0 = time.perf_counter()
            model, info = quantize(base.clone(), calib, CONFIGS[name], validation=check, metric=metric)
            ov.save_model(model, str(xml), compress_to_fp16=False)
            info["seconds"] = round(time.perf_counter() - t0, 1)
            (work / f"{name}.json").write_text(json.dumps(info, indent=1))
        irs[name] = xml
        facts[name] = json.loads((work / f"{name}.json").read_text())

    engines = {
        "ORT fp32 fused": ("ort", art.variant_path("optimized")),
        "ORT int8 (onnxforge smooth)": ("ort", art.variant_path("int8")),
        "OV f32 base": ("ov-f32", art.variant_path("base")),
        "OV bf16 base": ("ov-bf16", art.variant_path("base")),
    }
    for name, xml in irs.items():
        engines[f"NNCF {name} (+bf16)"] = ("ov-bf16", xml)
        engines[f"NNCF {name} (+f32)"] = ("ov-f32", xml)

    def runner(kind: str, path: Path):
        if kind == "ort":
            session, _ = make_session(path, "cpu", threads=args.threads)
            inputs = {i.name for i in session.get_inputs()}
            return lambda f: session.run(["last_hidden_state"], {k: v for k, v in f.items() if k in inputs})[0]
        engine = OpenVINOEngine.open(path, options=OpenVINOOptions(precision=kind.split("-")[1], threads=args.threads))
        return lambda f: engine.run(f, ["last_hidden_state"])["last_hidden_state"]

    rows: dict[str, dict] = {}
    fns: dict[str, dict] = {1: {}, 8: {}}
    for label, (kind, path) in engines.items():
        say(f"quality: {label}")
        run = runner(kind, path)
        c = np.concatenate([cosines(ref, pooled(run(f), f["attention_mask"])) for f, ref in zip(batches, refs)])
        rows[label] = {"min_cosine": float(c.min()), "mean_cosine": float(c.mean())}
        for b in (1, 8):
            feeds = bench_inputs(spec, b, 128)
            fns[b][label] = (lambda r, f: (lambda: r(f)))(run, feeds)
    for b in (8, 1):
        say(f"timing batch {b} x 128")
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        timings = time_blocks_clock(fns[b], clock=clock, block_seconds=args.block_seconds, cycles=args.cycles)
        for label, cycles in timings.items():
            medians = [statistics.median(c) for c in cycles]
            rows[label][f"b{b}_ms"] = 1000 * statistics.median([t for c in cycles for t in c])
            rows[label][f"b{b}_spread"] = (max(medians) - min(medians)) / statistics.median(medians)
    result = {"rows": rows, "facts": facts}
    print(f"\n{'contender':44s} {'min cos':>8s} {'mean cos':>9s} {'b1 ms':>7s} {'b8 ms':>7s} {'b8 spread':>9s}")
    for label, r in rows.items():
        print(f"{label:44s} {r['min_cosine']:8.5f} {r['mean_cosine']:9.5f} {r['b1_ms']:7.2f} {r['b8_ms']:7.2f} "
              f"{r['b8_spread']:9.0%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
