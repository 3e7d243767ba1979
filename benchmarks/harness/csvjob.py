"""The 10k-row CSV job: `onnxforge batch` against the seed-style naive pipeline and
against the model's pure compute time on the same rows.

Rows: ``onnxforge.data.sample_texts()`` (2,000 real Debian package descriptions)
cycled to the row count (5 times for 10,000). Each pipeline runs as its own process
under a wrapper that reads its peak resident memory from ``os.wait4``. Boot time of
`onnxforge batch` is the wall time of the same command on a one-row CSV.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import has_command
from .proc import ONNXFORGE, measured

HERE = Path(__file__).resolve().parent.parent


def write_csv(path: Path, texts: list[str], rows: int) -> Path:
    if path.is_file():
        return path
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(rows):
            w.writerow([i, texts[i % len(texts)]])
    tmp.replace(path)
    return path


def default_variant(art: Path) -> str:
    """The variant `onnxforge batch` uses on CPU when none is named."""
    from onnxforge.artifact import Artifact

    variants = Artifact.open(art).variants
    try:
        from onnxforge.serve_smoke.runtime import choose_variant

        return choose_variant(variants, "cpu")
    except ImportError:
        return "optimized" if "optimized" in variants else "base"


def pure_compute(art: Path, variant: str, texts: list[str], batch_size: int, log) -> dict[str, Any]:
    """Model time alone: the rows tokenized beforehand, sorted by length (the least
    padding any batching can reach), one ORT call per batch, only the calls timed."""
    from onnxforge.artifact import Artifact
    from onnxforge.runners import make_session
    from onnxforge.tokenizer import load_tokenizer

    artifact = Artifact.open(art)
    spec = artifact.spec
    session, _ = make_session(artifact.variant_path(variant), "cpu")
    tok = load_tokenizer(art)
    tok.no_padding()
    tok.enable_truncation(max_length=spec.max_positions)
    t0 = time.perf_counter()
    encodings = tok.encode_batch(texts)
    encode_s = time.perf_counter() - t0
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(lengths, kind="stable")
    inputs = [i.name for i in session.get_inputs()]
    batches = []
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, j in enumerate(idx):
            ids[row, : lengths[j]] = encodings[j].ids
            mask[row, : lengths[j]] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        batches.append({k: v for k, v in feeds.items() if k in inputs})
    session.run(None, batches[len(batches) // 2])  # warm-up
    log(f"pure compute: {len(batches)} batches of {batch_size}")
    total = 0.0
    for feeds in batches:
        t = time.perf_counter()
        session.run(None, feeds)
        total += time.perf_counter() - t
    return {"variant": variant, "batch_size": batch_size, "inference_s": total, "encode_s": encode_s,
            "tokens": int(lengths.sum()), "padded_tokens": int(sum(len(b["input_ids"].ravel()) for b in batches))}


def _summ(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("returncode", "timed_out", "wall_s", "peak_rss_mib", "user_s", "sys_s")
    out = {k: r.get(k) for k in keep}
    if r.get("returncode") not in (0, None) or r.get("timed_out"):
        out["stderr_tail"] = r.get("stderr", "")[-1500:]
    return out


def run(art: Path, texts: list[str], *, rows: int, naive_rows: int, batch_size: int, naive_max_length: int,
        naive_chunk: int, work: Path, log, timeout: float = 3600) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(work / f"texts_{rows}.csv", texts, rows)
    one_row = write_csv(work / "texts_1.csv", texts, 1)
    all_rows = [texts[i % len(texts)] for i in range(rows)]
    variant = default_variant(art)
    result: dict[str, Any] = {
        "rows": rows, "data": f"onnxforge.data.sample_texts(): {len(texts)} real texts cycled to {rows} rows",
        "variant": variant, "batch_size": batch_size,
    }

    if has_command("onnxforge.serve_smoke.cli", "batch"):
        def batch_cmd(src: Path, out: Path) -> list[str]:
            return ONNXFORGE + ["batch", str(art), str(src), "--column", "text", "--out", str(out), "--format", "csv",
                                "--batch-size", str(batch_size), "--variant", variant]

        log("onnxforge batch on a one-row CSV (boot time)")
        boot = measured(batch_cmd(one_row, work / "out_1.csv"), timeout=timeout)
        log(f"onnxforge batch on {rows} rows")
        full = measured(batch_cmd(csv_path, work / f"out_{rows}.csv"), timeout=timeout)
        result["onnxforge"] = {"boot": _summ(boot), "run": _summ(full)}
        if full.get("returncode") == 0:
            result["onnxforge"]["output_rows"] = _count_rows(work / f"out_{rows}.csv")
    else:
        result["onnxforge"] = {"skipped": "onnxforge batch is not available in this checkout"}

    log(f"naive pipeline on {naive_rows} rows (fixed padding to {naive_max_length})")
    naive_cmd = [sys.executable, str(HERE / "naive_pipeline.py"), "--model", str(art / "model.onnx"), "--tokenizer", str(art),
                 "--csv", str(csv_path), "--out", str(work / "naive_out.csv"), "--rows", str(naive_rows),
                 "--chunk-size", str(naive_chunk), "--max-length", str(naive_max_length)]
    naive = measured(naive_cmd, timeout=timeout)
    naive_info = _summ(naive)
    if naive.get("returncode") == 0:
        import json

        phases = json.loads(naive["stdout"].strip().splitlines()[-1])
        naive_info["phases"] = phases
        # Fixed padding makes every row cost the same: scale the per-row phases to the
        # full row count when the naive run was shorter, and say so.
        scale = rows / naive_rows
        naive_info["scaled_to_rows"] = rows
        naive_info["scale"] = scale
        naive_info["estimated_total_s"] = naive["wall_s"] + (scale - 1) * (phases["total_s"] - phases["boot_s"])
    result["naive"] = naive_info

    log(f"pure compute of {variant} on {rows} rows")
    result["pure_compute"] = pure_compute(art, variant, all_rows, batch_size, log)
    return result


def _count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)
