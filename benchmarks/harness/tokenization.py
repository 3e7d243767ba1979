"""Tokenizer time per phrase on real texts: the seed's three rows and two more.

In transformers 5 the name ``BertTokenizer`` is the Rust-backed tokenizer; the pure
Python WordPiece tokenizer the seed measured is ``BertTokenizerLegacy``. Each contender
encodes every text (special tokens, truncation to the model's maximum, no padding);
passes are repeated in cycles and the median pass is reported. The ids every
contender produces are checked equal, so the rows compare the same work.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def run(art: Path, texts: list[str], *, cycles: int, log) -> dict[str, Any]:
    from tokenizers import Tokenizer
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from onnxforge.artifact import Artifact

    max_len = Artifact.open(art).spec.max_positions
    slow = BertTokenizerLegacy.from_pretrained(str(art))
    fast = BertTokenizerFast.from_pretrained(str(art))
    rust = Tokenizer.from_file(str(art / "tokenizer.json"))
    rust.no_padding()
    rust.enable_truncation(max_length=max_len)
    kw = dict(truncation=True, max_length=max_len)

    contenders = {
        "python BertTokenizer (pure Python, per phrase)": lambda: [slow(t, **kw)["input_ids"] for t in texts],
        "BertTokenizerFast (per phrase)": lambda: [fast(t, **kw)["input_ids"] for t in texts],
        "BertTokenizerFast (one call, all phrases)": lambda: fast(texts, **kw)["input_ids"],
        "tokenizers.Tokenizer.encode (per phrase)": lambda: [rust.encode(t).ids for t in texts],
        "tokenizers.Tokenizer.encode_batch (one call, all phrases)": lambda: [e.ids for e in rust.encode_batch(texts)],
    }
    reference_ids = None
    mismatches = {}
    passes: dict[str, list[float]] = {k: [] for k in contenders}
    for cycle in range(cycles):
        for name, fn in contenders.items():
            log(f"tokenizers cycle {cycle + 1}/{cycles}: {name}")
            t0 = time.perf_counter()
            ids = fn()
            passes[name].append(time.perf_counter() - t0)
            if cycle == 0:
                ids = [list(x) for x in ids]
                if reference_ids is None:
                    reference_ids = ids
                mismatches[name] = sum(a != b for a, b in zip(reference_ids, ids))
    slow_name = next(iter(contenders))
    base = statistics.median(passes[slow_name])
    rows = []
    for name, times in passes.items():
        med = statistics.median(times)
        rows.append({"contender": name, "us_per_phrase": med / len(texts) * 1e6,
                     "speedup_vs_pure_python": base / med, "passes_s": times, "ids_differ_from_pure_python": mismatches[name]})
    return {"texts": len(texts), "cycles": cycles, "max_length": max_len, "rows": rows}
