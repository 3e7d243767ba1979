"""Which faithful variant is fastest on this machine: measured, then recorded as the default.

``build`` calls ``record_fastest`` after the variants are validated and smoke-tested;
serve and batch then run the recorded variant when none is named
(``runtime.default_variant``). Faithful means: built for this device, not kept as lossy,
and every recorded check of it (optimize, validate, smoke) passed. Each candidate runs
on its own engine (ONNX Runtime or OpenVINO) over a pass of the batch job's own work
(128 held-out real texts, length-sorted, in calls of 32 each padded to its longest text:
what ``onnxforge batch`` runs) and at 1 x 128 (serving), block-timed in one process
(``bench.timing``); the fastest job pass wins (a more precise variant within the
noise margin of it goes first: ``choose``), batch 1 is recorded beside it. A fixed
8 x 128 shape ranked ov-int8 and bf16 equal while the real job, with its short
sequences, ran bf16 30% faster. Speed depends on the machine, so the record names the
CPU it was measured on.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from ..artifact import Artifact
from ..errors import UserInputError
from ..vocab import OPTIMIZE, SMOKE, VALIDATE, stage_key

SHAPES = ((1, 128),)
JOB_TEXTS, JOB_OFFSET, JOB_BATCH = 128, 1500, 32
JOB = "job_ms"
# fp16 graphs are built for CUDA (ORT's CPU provider casts them back to fp32).
NOT_FOR_CPU = ("fp16",)
# A lower precision is chosen only when it beats the most precise variant that is
# close to it by more than this: build-to-build, the job pass of one variant moved by
# up to 11% on a 2-core VM (int8 1430 then 1280 ms), so a smaller lead is noise, and on
# noise the variant closer to fp32 should win.
NOISE_MARGIN = 0.10
# Closer to fp32 first (lower rank): what a tie goes to.
PRECISION_RANK = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}


def choose(timings: dict[str, float], precisions: dict[str, str], margin: float = NOISE_MARGIN) -> str:
    """The variant to record: the most precise one whose time is within ``margin`` of the fastest
    (the fastest itself when none is); among equally precise ones, the faster."""
    fastest = min(timings.values())
    close = [n for n, t in timings.items() if t <= fastest * (1 + margin)]
    return min(close, key=lambda n: (PRECISION_RANK.get(precisions.get(n, "fp32"), 3), timings[n]))


def faithful_variants(art: Artifact, device: str = "cpu") -> tuple[list[str], dict[str, str]]:
    """(candidates, {excluded variant: why}) for ``device``."""
    candidates, excluded = [], {}
    for name, entry in art.variants.items():
        if device == "cpu" and entry.get("precision") in NOT_FOR_CPU:
            excluded[name] = f"{entry.get('precision')} is built for CUDA"
            continue
        if entry.get("lossy"):
            excluded[name] = "kept with --allow-lossy: misses its quality gates"
            continue
        failed = [stage for stage in (OPTIMIZE, VALIDATE, SMOKE)
                  if (art.stage(stage_key(stage, name)) or {}).get("passed") is False]
        if failed:
            excluded[name] = f"its {', '.join(failed)} record did not pass"
            continue
        candidates.append(name)
    return candidates, excluded


def _callables(art: Artifact, names: list[str], threads: int | None) -> dict[str, dict[Any, Callable]]:
    from ..runtime.engine import open_engine, openvino_precision, variant_engine
    from .contenders import bench_inputs

    job = job_feeds(art)
    out: dict[str, dict[Any, Callable]] = {}
    for name in names:
        entry = art.variants[name]
        engine_name = variant_engine(entry, name)
        options = {"threads": threads}
        if engine_name == "openvino":
            options["precision"] = openvino_precision(entry)
        engine = open_engine(art.variant_path(name), "cpu", engine=engine_name, **options)
        calls = {}
        for batch, seq in SHAPES:
            feeds = bench_inputs(art.spec, batch, seq)
            mine = {k: v for k, v in feeds.items() if k in engine.input_names}
            calls[(batch, seq)] = (lambda e, f: (lambda: e.run(f)))(engine, mine)
        if job:
            batches = [{k: v for k, v in f.items() if k in engine.input_names} for f in job]
            calls[JOB] = (lambda e, fs: (lambda: [e.run(f) for f in fs]))(engine, batches)
        out[name] = calls
    return out


def job_feeds(art: Artifact) -> list[dict]:
    """The batch job's calls over held-out real text, or [] when the artifact has no tokenizer."""
    if not (art.root / "tokenizer.json").is_file():
        return []
    from ..data import sample_texts
    from ..textbatch import encode_texts
    from ..tokenizer import load_tokenizer

    tokenizer = load_tokenizer(art.root)
    texts = sample_texts(JOB_TEXTS, offset=JOB_OFFSET)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    ordered = [t for _, t in sorted(zip(lengths, texts), key=lambda p: p[0])]
    return [encode_texts(tokenizer, ordered[i:i + JOB_BATCH], art.spec) for i in range(0, len(ordered), JOB_BATCH)]


def measure(art: Artifact, names: list[str], *, block_seconds: float = 0.5, cycles: int = 3,
            threads: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """Median ms per call of each variant at each of ``SHAPES``."""
    from .timing import time_blocks

    calls = _callables(art, names, threads)
    result: dict[str, dict[str, float]] = {n: {} for n in names}
    for shape in [*([JOB] if JOB in calls[names[0]] else []), *SHAPES]:
        fns = {n: calls[n][shape] for n in names}
        timings = time_blocks(fns, warmup_seconds=block_seconds / 2, block_seconds=block_seconds, min_cycles=cycles,
                              max_cycles=cycles, target_spread=0.5, min_repeats=2, max_repeats=500,
                              progress=progress)
        label = shape if shape == JOB else f"b{shape[0]}x{shape[1]}_ms"
        for n, t in timings.items():
            result[n][label] = round(1000 * statistics.median(t.samples), 3)
    return result


def record_fastest(artifact_dir: str | Path, device: str = "cpu", *, block_seconds: float = 0.5, cycles: int = 2,
                   threads: int | None = None, progress: Callable[[str], None] | None = None,
                   key: str | None = None) -> dict[str, Any]:
    """Measure the faithful variants, record the fastest as ``default_variants[device]``, return the record.

    ``key``: the caller's content key for this choice (build keeps the record while it holds)."""
    if device != "cpu":
        raise UserInputError(f"choosing the fastest variant by measurement is done for the CPU, not {device}",
                             hint="on CUDA the static order (fp16, optimized, base) applies")
    from .machine import _cpu_model

    art = Artifact.open(artifact_dir)
    candidates, excluded = faithful_variants(art, device)
    if not candidates:
        raise UserInputError(f"{art.root} has no faithful {device} variant to choose from",
                             hint=f"excluded: {excluded}" if excluded else "run `onnxforge optimize` first")
    timings = measure(art, candidates, block_seconds=block_seconds, cycles=cycles, threads=threads, progress=progress)
    metric = JOB if JOB in timings[candidates[0]] else f"b{SHAPES[0][0]}x{SHAPES[0][1]}_ms"
    best = choose({n: timings[n][metric] for n in candidates},
                  {n: art.variants[n].get("precision", "fp32") for n in candidates})
    from ..runtime.engine import variant_engine

    record = {
        "variant": best, "engine": variant_engine(art.variants[best], best),
        "criterion": (f"fastest median {metric}: " + (f"{JOB_TEXTS} held-out texts in length-sorted calls of {JOB_BATCH}"
                      if metric == JOB else "batch 1 x 128") + ", among the faithful variants; a more precise "
                      f"one within {NOISE_MARGIN:.0%} of the fastest goes first"),
        "measured_ms": timings, "excluded": excluded,
        "cpu": _cpu_model(), "key": key,
    }
    art = Artifact.open(artifact_dir)  # re-read: another stage may have saved meanwhile
    art.manifest.setdefault("default_variants", {})[device] = record
    art.save()
    return record
