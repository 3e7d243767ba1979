"""The server: `onnxforge serve` against the seed-style naive FastAPI server.

Both run as their own processes on a loopback port and answer POST /embed with
{"texts": [one phrase]} (the seed sent one phrase per request). The load generator
(``loadgen``) keeps 1 or 16 connections busy for a bounded number of requests; every
response must be 200, and the first one of each run is checked to hold one embedding
of the model's hidden size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .artifacts import has_command
from .loadgen import run_load
from .proc import ONNXFORGE, free_port, server

HERE = Path(__file__).resolve().parent.parent


def _embedding_checker(hidden: int):
    def check(payload: dict, body: Any) -> None:
        vectors = body.get("embeddings") if isinstance(body, dict) else None
        if not (isinstance(vectors, list) and len(vectors) == len(payload["texts"]) and len(vectors[0]) == hidden):
            raise AssertionError(f"unexpected response for {len(payload['texts'])} text(s): {str(body)[:300]}")

    return check


def _measure(label: str, cmd: list[str], port: int, ready: str, payloads: list[dict], loads: list[tuple[int, int]],
             hidden: int, log_path: Path, log) -> dict[str, Any]:
    log(f"starting {label}")
    shown = " ".join(cmd[3:] if cmd[:3] == ONNXFORGE else [Path(cmd[1]).name] + cmd[2:])
    try:
        with server(cmd, port, ready, log=log_path) as (_, boot_s):
            runs = []
            for concurrency, total in loads:
                log(f"{label}: {total} requests at concurrency {concurrency}")
                runs.append(run_load("127.0.0.1", port, "/embed", payloads, concurrency=concurrency, total=total,
                                     warmup=5, check=_embedding_checker(hidden)))
    except (RuntimeError, AssertionError, OSError) as e:
        log(f"{label} failed: {e}")
        return {"error": str(e)[-2000:], "command": shown}
    return {"boot_s": boot_s, "runs": runs, "command": shown}


def components(art: Path, texts: list[str], *, variant: str, naive_max_length: int, quick: bool) -> dict[str, Any]:
    """The seed's server breakdown (encoding, inference) for one phrase, measured
    in-process for each server's own way: BertTokenizerFast + model.onnx padded to the
    fixed length (naive), the tokenizers library + the served variant at the phrase's
    own length (onnxforge). Blocks and cycles as in `onnxforge bench`."""
    import statistics

    import numpy as np
    from transformers import BertTokenizerFast

    from onnxforge.artifact import Artifact
    from onnxforge.bench.timing import time_blocks
    from onnxforge.runners import make_session
    from onnxforge.tokenizer import load_tokenizer

    artifact = Artifact.open(art)
    spec = artifact.spec
    phrase = sorted(texts, key=len)[len(texts) // 2]  # a phrase of median length in characters
    fast = BertTokenizerFast.from_pretrained(str(art))
    rust = load_tokenizer(art)
    rust.no_padding()
    rust.enable_truncation(max_length=spec.max_positions)
    naive_feeds = dict(fast([phrase], max_length=naive_max_length, padding="max_length", truncation=True,
                            return_token_type_ids=True, return_tensors="np"))
    ids = np.array([rust.encode(phrase).ids], dtype=np.int64)
    own_feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    base, _ = make_session(artifact.variant_path("base"), "cpu")
    served, _ = make_session(artifact.variant_path(variant), "cpu")
    names_b = [i.name for i in base.get_inputs()]
    names_s = [i.name for i in served.get_inputs()]
    fns = {
        "naive encode": lambda: fast([phrase], max_length=naive_max_length, padding="max_length", truncation=True,
                                     return_token_type_ids=True, return_tensors="np"),
        "naive inference": lambda: base.run(None, {k: naive_feeds[k] for k in names_b}),
        "onnxforge encode": lambda: rust.encode_batch([phrase]),
        "onnxforge inference": lambda: served.run(None, {k: own_feeds[k] for k in names_s}),
    }
    timings = time_blocks(fns, warmup_seconds=0.05 if quick else 0.2, block_seconds=0.05 if quick else 0.4,
                          min_cycles=2 if quick else 3, max_cycles=2 if quick else 5, target_spread=0.05,
                          min_repeats=3, max_repeats=2000)
    out = {k: statistics.median(t.samples) * 1e3 for k, t in timings.items()}
    return {"phrase_tokens": int(ids.shape[1]), "naive_padded_to": naive_max_length, "variant": variant,
            "ms": out}


def run(art: Path, texts: list[str], *, loads: list[tuple[int, int]], max_batch: int | None,
        naive_max_length: int, work: Path, log, quick: bool = False) -> dict[str, Any]:
    from onnxforge.artifact import Artifact

    hidden = Artifact.open(art).spec.hidden_size
    payloads = [{"texts": [t]} for t in texts]
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"requests": "one phrase per request, cycling through the real texts", "loads": loads}
    from .csvjob import default_variant

    result["components"] = components(art, texts, variant=default_variant(art), naive_max_length=naive_max_length,
                                      quick=quick)
    if has_command("onnxforge.serve.cli", "serve"):
        port = free_port()
        cmd = ONNXFORGE + ["serve", str(art), "--host", "127.0.0.1", "--port", str(port)]
        if max_batch:
            cmd += ["--max-batch", str(max_batch)]
        result["onnxforge"] = _measure("onnxforge serve", cmd, port, "/ready", payloads, loads, hidden,
                                       work / "serve.log", log)
    else:
        result["onnxforge"] = {"skipped": "onnxforge serve is not available in this checkout"}
    port = free_port()
    cmd = [sys.executable, str(HERE / "naive_server.py"), "--model", str(art / "model.onnx"), "--tokenizer", str(art),
           "--port", str(port), "--max-length", str(naive_max_length)]
    result["naive"] = _measure("naive server", cmd, port, "/health", payloads, loads, hidden, work / "naive_server.log", log)
    return result
