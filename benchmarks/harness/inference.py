"""Inference time per phrase: every variant and PyTorch, at batch 1 (the seed's figure)
and batched, at the median token length of the real texts, timed by `onnxforge bench`'s
own engine (blocks, cycles, medians)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def token_lengths(art: Path, texts: list[str]) -> list[int]:
    from onnxforge.artifact import Artifact
    from onnxforge.tokenizer import load_tokenizer

    spec = Artifact.open(art).spec
    tok = load_tokenizer(art)
    tok.no_padding()
    tok.enable_truncation(max_length=spec.max_positions)
    return [len(e.ids) for e in tok.encode_batch(texts)]


def run(art: Path, texts: list[str], *, devices: tuple[str, ...], batched: int, quick: bool, log) -> dict[str, Any]:
    from onnxforge.bench import BenchOptions, run_bench

    lengths = token_lengths(art, texts)
    seq = int(statistics.median(lengths))
    common = dict(batch_sizes=(1, batched), seq_lens=(seq,), devices=devices)
    # Bounded: a noisy machine must not stretch the harness past its ~10 minutes.
    options = BenchOptions.quick(**common) if quick else BenchOptions(min_repeats=3, max_cycles=4, block_seconds=0.3, **common)
    report = run_bench(art, options, progress=log)
    data = report.to_dict()
    rows = []
    for r in data["rows"]:
        if r["batch"] != 1:
            continue
        batched_row = next((b for b in data["rows"] if b["batch"] == batched and b["name"] == r["name"]
                            and b["device"] == r["device"]), None)
        rows.append({
            "contender": r["name"], "device": r["device"], "precision": r["precision"],
            "per_phrase_ms_batch1": r["median_ms"], "p99_ms_batch1": r["p99_ms"],
            "speedup_batch1": r["speedup_vs_reference"],
            "per_phrase_ms_batched": batched_row["median_ms"] / batched if batched_row else None,
            "speedup_batched": batched_row["speedup_vs_reference"] if batched_row else None,
            "noise_batch1": r["spread"],
        })
    for r in data["rows"]:
        r.pop("samples_ms", None)  # the bench report keeps them; the harness summary need not
    return {"median_tokens": seq, "mean_tokens": statistics.fmean(lengths), "texts": len(texts),
            "batched": batched, "rows": rows, "bench": data}
