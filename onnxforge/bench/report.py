"""Bench results: one row per (contender, device, batch, sequence), with every sample kept.

Every derived number (median, p90, p99, throughput, efficiency, speedup) is computed
here from the stored samples, so a reader of the JSON can recompute each of them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .timing import percentile


@dataclass
class BenchRow:
    name: str
    kind: str
    variant: str | None
    precision: str
    device: str
    provider: str
    batch: int
    seq: int
    flops: int
    samples_s: list[float]
    cycle_medians_s: list[float]
    repeats: int
    warmup_calls: int
    notes: str = ""
    peak_gflops: float | None = None
    # The CPU's bf16 and int8 GEMM peaks (GFLOP/s, GOP/s) measured in the same run.
    lowp_peaks: dict[str, float] = field(default_factory=dict)
    reference: "BenchRow | None" = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.name} [{self.device}]"

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def spread(self) -> float:
        meds = self.cycle_medians_s
        if len(meds) < 2:
            return math.inf
        return (max(meds) - min(meds)) / statistics.median(meds)

    @property
    def throughput(self) -> float:
        """Sequences per second at the median latency."""
        return self.batch / self.median_s

    @property
    def gflops(self) -> float:
        return self.flops / self.median_s / 1e9

    @property
    def efficiency(self) -> float | None:
        return self.gflops / self.peak_gflops if self.peak_gflops else None

    def efficiency_vs(self, dtype: str) -> float | None:
        """Model GFLOP/s over the ``dtype`` (bf16 or int8) GEMM peak of this device."""
        peak = self.lowp_peaks.get(dtype)
        return self.gflops / peak if peak else None

    @property
    def speedup(self) -> float | None:
        """Reference median / this median: above 1 is faster than PyTorch fp32."""
        if self.reference is None:
            return None
        return self.reference.median_s / self.median_s

    @property
    def speedup_by_cycle(self) -> list[float]:
        """The same ratio, cycle by cycle: each cycle's reference block against this
        row's block in that cycle (neighbours in time, so slow drift cancels)."""
        if self.reference is None:
            return []
        return [r / m for r, m in zip(self.reference.cycle_medians_s, self.cycle_medians_s)]

    def to_dict(self) -> dict[str, Any]:
        ms = [s * 1e3 for s in self.samples_s]
        by_cycle = self.speedup_by_cycle
        return {
            "name": self.name, "kind": self.kind, "variant": self.variant, "precision": self.precision,
            "device": self.device, "provider": self.provider, "batch": self.batch, "seq": self.seq,
            "median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
            "mean_ms": statistics.fmean(ms), "min_ms": min(ms), "n": len(ms),
            "throughput_seq_s": self.throughput, "tokens_s": self.throughput * self.seq,
            "flops": self.flops, "gflops_s": self.gflops, "peak_gflops": self.peak_gflops,
            "efficiency": self.efficiency,
            "efficiency_bf16": self.efficiency_vs("bf16"), "efficiency_int8": self.efficiency_vs("int8"),
            "reference": self.reference.key if self.reference is not None else None,
            "speedup_vs_reference": self.speedup,
            "speedup_by_cycle": by_cycle,
            "cycle_medians_ms": [m * 1e3 for m in self.cycle_medians_s],
            "spread": self.spread if math.isfinite(self.spread) else None,
            "repeats_per_cycle": self.repeats, "warmup_calls": self.warmup_calls,
            "notes": self.notes, "samples_ms": ms,
        }


@dataclass
class BenchReport:
    artifact: str
    model: dict[str, Any]
    options: dict[str, Any]
    machine: dict[str, Any]
    peaks: dict[str, dict[str, Any]]
    rows: list[BenchRow]
    skipped: list[dict[str, str]]
    seconds: float = 0.0
    created: str = ""
    machine_after: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """What makes these numbers less trustworthy, said next to them."""
        out = []
        cores = self.machine.get("usable_cores") or 0
        for when, m in (("start", self.machine), ("end", self.machine_after)):
            la = (m or {}).get("load_average")
            if la and cores and la[0] > cores + 0.5:
                out.append(f"the machine was busy at the {when} (1-minute load {la[0]:.1f} on {cores} cores): "
                           "figures are noisy, and PyTorch's OpenMP threads slow down sharply when cores are shared")
        unstable = sorted({r.key for r in self.rows if r.spread > float(self.options.get("target_spread", 0.05))})
        if unstable:
            out.append(f"per-cycle medians did not agree within {100 * self.options.get('target_spread', 0.05):.0f}% "
                       f"for: {', '.join(unstable)} (see the noise column)")
        return out

    def __bool__(self) -> bool:
        return bool(self.rows) and all(r.samples_s for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "onnxforge-bench", "schema": 1, "created": self.created, "seconds": self.seconds,
            "artifact": self.artifact, "model": self.model, "options": self.options,
            "machine": self.machine, "machine_after": self.machine_after, "peaks": self.peaks,
            "rows": [r.to_dict() for r in self.rows], "skipped": self.skipped, "warnings": self.warnings,
        }

    # -- rendering --------------------------------------------------------------------
    HEADERS = ("contender", "device", "batch x seq", "median ms", "p90 ms", "p99 ms", "seq/s",
               "GFLOP/s", "eff %", "eff bf16 %", "eff int8 %", "vs torch", "noise %")

    def table_rows(self) -> list[tuple[str, ...]]:
        out = []
        for r in self.rows:
            d = r.to_dict()
            eff = f"{100 * d['efficiency']:.1f}" if d["efficiency"] is not None else "-"
            eff_bf16 = f"{100 * d['efficiency_bf16']:.1f}" if d["efficiency_bf16"] is not None else "-"
            eff_int8 = f"{100 * d['efficiency_int8']:.1f}" if d["efficiency_int8"] is not None else "-"
            speed = f"{d['speedup_vs_reference']:.2f}x" if d["speedup_vs_reference"] is not None else "-"
            noise = f"{100 * d['spread']:.0f}" if d["spread"] is not None else "-"
            out.append((
                r.name, r.device, f"{r.batch} x {r.seq}", f"{d['median_ms']:.2f}", f"{d['p90_ms']:.2f}",
                f"{d['p99_ms']:.2f}", f"{d['throughput_seq_s']:.1f}", f"{d['gflops_s']:.1f}", eff, eff_bf16, eff_int8,
                speed, noise,
            ))
        return out

    def _legend(self) -> list[str]:
        lines = []
        for dev, peak in self.peaks.items():
            lines.append(f"- eff %: model GFLOP/s over the {peak['dtype']} GEMM peak measured on {dev} in this run "
                         f"({peak['gflops']:.0f} GFLOP/s, {peak['library']}, n={peak['n']}).")
        for dtype, label in (("bf16", "bf16 GEMM (AMX/AVX512-BF16)"), ("int8", "int8 GEMM (s8 x s8, torch._int_mm)")):
            peak = self.machine.get(f"cpu_{dtype}_gemm")
            if peak:
                lines.append(f"- eff {dtype} %: model GFLOP/s over the CPU's {label} peak measured in this run "
                             f"({peak['gflops']:.0f} G/s, n={peak['n']}): the ceiling for {dtype} variants, which can "
                             "pass 100% of the fp32 peak.")
        lines.append("- vs torch: PyTorch eager fp32 median / this median, same device and shape (above 1 is faster).")
        lines.append("- noise %: spread of the per-cycle medians, (max - min) / median.")
        for s in self.skipped:
            lines.append(f"- skipped {s['contender']} on {s['device']}: {s['reason']}")
        for w in self.warnings:
            lines.append(f"- warning: {w}")
        return lines

    def markdown(self) -> str:
        m = self.machine
        cpu = f"{m.get('cpu')} ({m.get('usable_cores')} usable cores, flags: {' '.join(m.get('cpu_flags', [])) or '-'})"
        gpu = ", ".join(g["name"] for g in m.get("gpus", [])) or "none"
        v = m.get("versions", {})
        lines = [
            f"# onnxforge bench: {self.model.get('name', self.artifact)}",
            "",
            f"Model: {self.model.get('layers')} layers, hidden {self.model.get('hidden')}, {self.model.get('heads')} heads; "
            f"measured {self.created}, {self.seconds:.0f} s.",
            f"CPU: {cpu}. GPU: {gpu}. Load average at start: {_load(m)}, at end: {_load(self.machine_after)}.",
            f"Versions: onnxruntime {v.get('onnxruntime')}, torch {v.get('torch')}, transformers {v.get('transformers')}, "
            f"python {v.get('python')}.",
            "",
            "| " + " | ".join(self.HEADERS) + " |",
            "|" + "|".join("---" for _ in self.HEADERS) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.table_rows()]
        lines += [""] + self._legend()
        return "\n".join(lines) + "\n"

    def render(self, console) -> None:
        from rich.table import Table

        table = Table(title=f"onnxforge bench: {self.model.get('name', self.artifact)}", title_justify="left")
        for h in self.HEADERS:
            table.add_column(h, justify="left" if h in ("contender", "device") else "right", no_wrap=True)
        for row in self.table_rows():
            table.add_row(*row)
        if not console.is_terminal:
            # Piped output (CI logs, files) gets the full table rather than an 80-column
            # squeeze (rich caps print(width=...) at the console's own width).
            from rich.console import Console

            console = Console(file=console.file, width=max(console.width, 170), highlight=False, soft_wrap=True)
        console.print(table)
        m = self.machine
        console.print(f"{m.get('cpu')}, {m.get('usable_cores')} usable cores; GPU: "
                      f"{', '.join(g['name'] for g in m.get('gpus', [])) or 'none'}; load {_load(m)} -> {_load(self.machine_after)}")
        for line in self._legend():
            console.print(line, markup=False)


def _load(m: dict[str, Any]) -> str:
    la = m.get("load_average") if m else None
    return "/".join(f"{x:.1f}" for x in la) if la else "?"
