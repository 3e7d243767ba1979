"""A PNG of latency and throughput per contender: one column per sequence length,
bars grouped by batch size (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from ..artifact import atomic_path
from .report import BenchReport


def write_plot(report: BenchReport, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")

    rows = [r.to_dict() for r in report.rows]
    seqs = sorted({r["seq"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    keys = list(dict.fromkeys(f"{r['name']} [{r['device']}]" for r in rows))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, len(seqs), figsize=(max(6.0, 5.2 * len(seqs)), 8.0), squeeze=False)
    width = 0.8 / max(len(keys), 1)
    x = np.arange(len(batches))
    for col, seq in enumerate(seqs):
        lat_ax, thr_ax = axes[0][col], axes[1][col]
        for k, key in enumerate(keys):
            by_batch = {r["batch"]: r for r in rows if r["seq"] == seq and f"{r['name']} [{r['device']}]" == key}
            med = np.array([by_batch[b]["median_ms"] if b in by_batch else np.nan for b in batches])
            p99 = np.array([by_batch[b]["p99_ms"] if b in by_batch else np.nan for b in batches])
            thr = np.array([by_batch[b]["throughput_seq_s"] if b in by_batch else np.nan for b in batches])
            offset = (k - (len(keys) - 1) / 2) * width
            err = np.vstack([np.zeros_like(med), np.nan_to_num(p99 - med)])
            lat_ax.bar(x + offset, med, width, yerr=err, capsize=2, color=colors(k % 10), label=key)
            thr_ax.bar(x + offset, thr, width, color=colors(k % 10), label=key)
        for ax, ylabel in ((lat_ax, "latency ms (bar: median, whisker: p99)"), (thr_ax, "throughput, sequences/s")):
            ax.set_xticks(x, [f"batch {b}" for b in batches])
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
            ax.set_ylabel(ylabel)
            ax.grid(axis="y", which="both", alpha=0.3)
        lat_ax.set_title(f"sequence length {seq}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(keys), 4), fontsize=8, frameon=False)
    m = report.machine
    gpu = ", ".join(g["name"] for g in m.get("gpus", [])) or "no GPU"
    fig.suptitle(f"{report.model.get('name')}: {m.get('cpu')} ({m.get('usable_cores')} cores), {gpu}, "
                 f"onnxruntime {m.get('versions', {}).get('onnxruntime')}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * ((len(keys) - 1) // 4), 1, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
