"""``run_bench``: plan the contenders, measure the GEMM peak, time every shape, report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..artifact import Artifact
from ..errors import UserInputError
from .options import BenchOptions
from ..vocab import DEFAULT_ENGINE, ENGINE_OF_VARIANT
from .report import BenchReport, BenchRow

# Where a variant is meant to run, by its precision, when the manifest does not say.
# fp16 graphs exist for the GPU: ORT's CPU provider has few fp16 kernels and wraps the
# rest in casts. Dynamic int8 quantization (DynamicQuantizeLinear + MatInteger) is a
# CPU provider technique. Naming a variant in --variants times it anyway.
_TARGET_BY_PRECISION = {"fp16": "cuda", "int8": "cpu", "bf16": "cpu"}


def _resolve_devices(requested: tuple[str, ...]) -> list[str]:
    from ..cuda import cuda_unavailable_reason

    devices: list[str] = []
    for d in requested:
        if d == "auto":
            wanted = ["cpu"] + (["cuda"] if cuda_unavailable_reason() is None else [])
        else:
            wanted = [d]
        devices += [w for w in wanted if w not in devices]
    return devices


def _variant_precision(name: str, entry: dict) -> str:
    precision = str(entry.get("precision") or "")
    if precision:
        return precision
    return next((p for p in ("fp16", "int8", "bf16") if p in name), "fp32")


def _plan_variants(art: Artifact, named: tuple[str, ...], devices: list[str]):
    variants = art.variants
    unknown = [v for v in named if v not in variants]
    if unknown:
        raise UserInputError(
            f"--variants {','.join(unknown)}: not in {art.root}",
            hint=f"available variants: {', '.join(sorted(variants)) or 'none'} (run `onnxforge optimize` to add more)",
        )
    plan, skipped = [], []
    for name in named or tuple(variants):
        entry = variants[name]
        precision = _variant_precision(name, entry)
        target = entry.get("device") or _TARGET_BY_PRECISION.get(precision)
        for device in devices:
            if not named and target and target != device:
                skipped.append({
                    "contender": f"ort {name}", "device": device,
                    "reason": f"a {precision} variant is built for {target}; name it in --variants to time it on {device} anyway",
                })
                continue
            plan.append((name, precision, device))
    return plan, skipped


def _model_info(art: Artifact) -> dict:
    spec = art.spec
    source = art.source_record or {}
    location = str(source.get("location", art.root))
    return {
        "name": location if source.get("kind") == "builtin" else Path(location).name or str(art.root),
        "source": source, "layers": spec.num_layers, "hidden": spec.hidden_size, "heads": spec.num_heads,
        "intermediate": spec.intermediate_size or 4 * spec.hidden_size, "vocab": spec.vocab_size,
        "max_positions": spec.max_positions, "inputs": list(spec.input_names), "outputs": list(spec.output_names),
    }


def _load_reference(art: Artifact):
    from ..sources import SourceRef, load_source

    source = art.source_record
    if not source:
        raise UserInputError(f"{art.root} records no model source, so PyTorch cannot be rebuilt for the reference row",
                             hint="pass --no-torch to time the ONNX variants alone")
    try:
        return load_source(SourceRef.from_dict(source))
    except UserInputError as e:
        raise UserInputError(f"cannot rebuild the PyTorch reference from the manifest's source: {e.message}",
                             hint="pass --no-torch to time the ONNX variants alone") from None


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_bench(artifact_dir: str | Path, options: BenchOptions | None = None, *,
              progress: Callable[[str], None] | None = None) -> BenchReport:
    """Time every planned contender at every (batch, sequence) and return the report."""
    options = options or BenchOptions()
    say = progress or (lambda message: None)
    art = Artifact.open(artifact_dir)
    spec = art.spec
    too_long = [s for s in options.seq_lens if s > spec.max_positions]
    if too_long:
        raise UserInputError(
            f"--seq-lens {','.join(map(str, too_long))}: longer than the model's {spec.max_positions} positions",
            hint=f"use sequence lengths up to {spec.max_positions}",
        )
    devices = _resolve_devices(options.devices)
    plan, skipped = _plan_variants(art, options.variants, devices)
    if not plan and not options.torch_reference:
        raise UserInputError("nothing to time: every variant was skipped for these devices and --no-torch was given",
                             hint="name the variants with --variants or drop --no-torch")
    started = time.perf_counter()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    from . import contenders as cmod
    from .flops import bert_flops
    from .machine import cpu_has_bf16, machine_info
    from .peak import measure_gemm_peak
    from .timing import time_blocks

    machine = machine_info()
    with _torch_threads(options.threads):
        # Contenders first (sessions, weights), so the peak is measured with everything loaded.
        by_device: dict[str, list] = {d: [] for d in devices}
        if options.torch_reference:
            say("loading the PyTorch reference")
            loaded = _load_reference(art)
            for device in devices:
                if device == "cuda":
                    import torch

                    if not torch.cuda.is_available():
                        skipped.append({"contender": "torch fp32", "device": "cuda",
                                        "reason": f"this PyTorch ({torch.__version__}) has no CUDA; ratios on cuda are not available"})
                        continue
                by_device[device] += cmod.torch_contenders(
                    loaded.module, spec, device, lowp=options.torch_lowp, cpu_bf16=cpu_has_bf16())
        for name, precision, device in plan:
            entry = art.variants[name]
            engine = options.engine or entry.get("engine") or ENGINE_OF_VARIANT.get(name, DEFAULT_ENGINE)
            say(f"loading {name} on {device} ({engine})")
            if engine == "openvino":
                if device != "cpu":
                    skipped.append({"contender": f"openvino {name}", "device": device,
                                    "reason": "OpenVINO runs on the CPU only here"})
                    continue
                hint = entry.get("inference_precision") or ("f32" if precision == "fp32" else None)
                by_device[device].append(cmod.openvino_contender(art.variant_path(name), name, precision, hint,
                                                                 options.threads))
            else:
                by_device[device].append(cmod.ort_contender(art.variant_path(name), name, precision, device,
                                                            options.threads))

        peaks: dict[str, dict] = {}
        quick = options.block_seconds < 0.2

        def measure_peaks(when: str) -> None:
            # Measured before and after the timings; the better of the two is the peak,
            # so a machine that got busier (or quieter) mid-run does not skew efficiency.
            for device in devices:
                say(f"measuring the {device} GEMM peak ({when})")
                if device == "cuda":
                    found = measure_gemm_peak("cuda", n=4096 if quick else 8192, seconds=0.2 if quick else 1.0)
                else:
                    found = measure_gemm_peak("cpu", "fp32", n=1024 if quick else 2048, seconds=0.2 if quick else 1.0)
                found[f"gflops_{when}"] = found["gflops"]
                old = peaks.get(device)
                if old is not None:
                    found["gflops_start"] = old["gflops_start"]
                    if old["gflops"] > found["gflops"]:
                        found = {**old, f"gflops_{when}": found["gflops"]}
                peaks[device] = found

        measure_peaks("start")
        lowp: dict[str, float] = {}
        if "cpu" in devices and options.measure_peak:
            # The ceilings of bf16 and int8 variants: AMX's bf16 and int8 peaks are
            # several times the fp32 one, so their rows get an efficiency of their own.
            for dtype in (("bf16", "int8") if cpu_has_bf16() else ("int8",)):
                say(f"measuring the cpu {dtype} GEMM peak")
                machine[f"cpu_{dtype}_gemm"] = measure_gemm_peak("cpu", dtype, n=1024 if quick else 2048,
                                                                 seconds=0.2 if quick else 1.0)
                lowp[dtype] = machine[f"cpu_{dtype}_gemm"]["gflops"]
        rows: list[BenchRow] = []
        for batch in options.batch_sizes:
            for seq in options.seq_lens:
                feeds = cmod.bench_inputs(spec, batch, seq, seed=options.seed)
                flops = bert_flops(spec, batch, seq)
                for device in devices:
                    group = by_device[device]
                    if not group:
                        continue
                    fns = {c.key: c.prepare(feeds) for c in group}
                    timings = time_blocks(
                        fns, warmup_seconds=options.warmup_seconds, block_seconds=options.block_seconds,
                        min_cycles=options.min_cycles, max_cycles=options.max_cycles,
                        target_spread=options.target_spread, min_repeats=options.min_repeats,
                        max_repeats=options.max_repeats,
                        progress=lambda m, b=batch, s=seq, d=device: say(f"{d} batch {b} x seq {s}: {m}"),
                    )
                    del fns
                    group_rows = []
                    for c in group:
                        t = timings[c.key]
                        group_rows.append(BenchRow(
                            name=c.name, kind=c.kind, variant=c.variant, precision=c.precision, device=c.device,
                            provider=c.provider, batch=batch, seq=seq, flops=flops, samples_s=t.samples,
                            cycle_medians_s=t.cycle_medians, repeats=t.repeats, warmup_calls=t.warmup_calls,
                            notes=c.notes, peak_gflops=peaks.get(device, {}).get("gflops"),
                            lowp_peaks=lowp if device == "cpu" else {},
                        ))
                    reference = next((r for r in group_rows if r.kind == "torch" and r.precision == "fp32"), None)
                    for r in group_rows:
                        r.reference = reference
                    rows += group_rows
        measure_peaks("end")
        for r in rows:
            r.peak_gflops = peaks.get(r.device, {}).get("gflops")
    return BenchReport(
        artifact=str(art.root), model=_model_info(art), options=options.to_dict(), machine=machine, peaks=peaks,
        rows=rows, skipped=skipped, seconds=time.perf_counter() - started, created=created,
        machine_after={"load_average": machine_info_load()},
    )


def machine_info_load():
    import os

    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
