"""The 10k-row CSV job: `onnxforge batch` against the seed-style naive pipeline and
against the model's pure compute time on the same rows.

Rows: ``onnxforge.data.sample_texts()`` (2,000 real Debian package descriptions)
cycled to the row count (5 times for 10,000). Each pipeline runs as its own process
under a wrapper that reads its peak resident memory from ``os.wait4``. `onnxforge batch`
reports its own phases (--json); the naive pipeline prints the seed's phases. The two
outputs are compared row by row (cosine), so the faster pipeline is not faster by
computing something else.
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
        from onnxforge.runtime import choose_variant

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
    import json

    work.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(work / f"texts_{rows}.csv", texts, rows)
    all_rows = [texts[i % len(texts)] for i in range(rows)]
    variant = default_variant(art)
    result: dict[str, Any] = {
        "rows": rows, "data": f"onnxforge.data.sample_texts(): {len(texts)} real texts cycled to {rows} rows",
        "variant": variant, "batch_size": batch_size,
    }
    of_out = work / f"onnxforge_out_{rows}.csv"
    if has_command("onnxforge.batch.cli", "batch"):
        report_path = work / "onnxforge_batch_report.json"
        cmd = ONNXFORGE + ["batch", str(art), str(csv_path), "--column", "text", "--out", str(of_out), "--format", "csv",
                           "--batch-size", str(batch_size), "--variant", variant, "--no-progress", "--json", str(report_path)]
        log(f"onnxforge batch on {rows} rows")
        full = measured(cmd, timeout=timeout)
        info = _summ(full)
        info["command"] = " ".join(cmd[2:])
        if full.get("returncode") == 0:
            rep = json.loads(report_path.read_text())
            stages = rep.get("stage_seconds", {})
            # Boot: interpreter, imports and CLI (wall minus the job's own clock) plus
            # loading the runtime (session + tokenizer), which the job's clock includes.
            info["phases"] = {
                "boot_s": full["wall_s"] - rep["seconds"] + rep.get("load_seconds", 0.0),
                "read_tokenize_s": stages.get("read_tokenize"), "inference_s": stages.get("infer"),
                "write_s": stages.get("write"), "job_s": rep["seconds"], "rows": rep.get("rows"),
                "note": "read+tokenize and write run on their own threads, overlapping inference",
            }
            info["output_rows"] = _count_rows(of_out)
        result["onnxforge"] = info
    else:
        result["onnxforge"] = {"skipped": "onnxforge batch is not available in this checkout"}

    # Right after the pipeline it is compared with, so a drifting machine load moves both alike.
    log(f"pure compute of {variant} on {rows} rows")
    result["pure_compute"] = pure_compute(art, variant, all_rows, batch_size, log)

    naive_out = work / "naive_out.csv"
    log(f"naive pipeline on {naive_rows} rows (fixed padding to {naive_max_length})")
    naive_cmd = [sys.executable, str(HERE / "naive_pipeline.py"), "--model", str(art / "model.onnx"), "--tokenizer", str(art),
                 "--csv", str(csv_path), "--out", str(naive_out), "--rows", str(naive_rows),
                 "--chunk-size", str(naive_chunk), "--max-length", str(naive_max_length)]
    naive = measured(naive_cmd, timeout=timeout)
    naive_info = _summ(naive)
    naive_info["command"] = " ".join([Path(naive_cmd[1]).name] + naive_cmd[2:])
    if naive.get("returncode") == 0:
        phases = json.loads(naive["stdout"].strip().splitlines()[-1])
        naive_info["phases"] = phases
        # Fixed padding makes every row cost the same: scale the per-row phases to the
        # full row count when the naive run was shorter, and say so.
        scale = rows / naive_rows
        naive_info["scale"] = scale
        naive_info["estimated_total_s"] = naive["wall_s"] + (scale - 1) * (phases["total_s"] - phases["boot_s"])
        if result["onnxforge"].get("returncode") == 0:
            result["agreement"] = _agreement(of_out, naive_out, art, all_rows[:naive_rows], naive_max_length)
    result["naive"] = naive_info

    return result


def _agreement(of_out: Path, naive_out: Path, art: Path, texts: list[str], max_length: int) -> dict[str, Any]:
    """Both pipelines computed the same embeddings: cosine per row, over the rows the
    naive pipeline's fixed length did not truncate."""
    import json

    from .inference import token_lengths

    with open(of_out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        ours = {int(r["id"]): np.array(json.loads(r["embedding"]), dtype=np.float32) for r in reader if r.get("embedding")}
    with open(naive_out, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        theirs = {int(r[0]): np.array(r[1:], dtype=np.float32) for r in reader}
    lengths = token_lengths(art, texts)
    cos = []
    for i, n in enumerate(lengths):
        if n <= max_length and i in ours and i in theirs:
            a, b = ours[i], theirs[i]
            cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return {"rows_compared": len(cos), "rows_truncated_by_naive": sum(n > max_length for n in lengths),
            "min_cosine": min(cos) if cos else None, "mean_cosine": float(np.mean(cos)) if cos else None}
def _count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)
