"""Texts through the model in length-sorted calls, results gathered back in text order (both engines)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from ..runtime.engine import parallel_calls
from ..runtime.results import needed_outputs, shape_results


def run_groups(runtime, encodings: Sequence[Any], groups: list[np.ndarray], normalize: bool,
               columns: list[str]) -> tuple[dict[str, Any], int]:
    """Results by column, one entry per encoding, and how many texts were truncated.

    ``groups``: index arrays from ``length_groups`` (one model call each). The values
    come from ``shape_results``, the one place that pools, normalizes and labels. When
    the engine runs several calls at once (``parallel_calls``: OpenVINO streams), that
    many groups are in flight from a thread pool; results land by index, so the order
    of completion does not matter.
    """
    n = len(encodings)
    results: dict[str, Any] = {}
    truncated = 0

    fetch = needed_outputs(runtime.spec)

    def call(group: np.ndarray):
        enc = runtime.pad([encodings[i] for i in group])
        return group, int(enc.truncated.sum()), shape_results(runtime.spec, enc, runtime.run(enc.feeds, fetch),
                                                             normalize=normalize)

    workers = min(parallel_calls(runtime.engine), len(groups))
    if workers > 1:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnxforge-infer")
        done = pool.map(call, groups)
    else:
        pool, done = None, map(call, groups)
    try:
        for group, cut, shaped in done:
            truncated += cut
            for name in columns:
                values = shaped.columns[name]
                if isinstance(values, np.ndarray):
                    results.setdefault(name, np.zeros((n, *values.shape[1:]), dtype=values.dtype))[group] = values
                else:  # labels, or raw outputs of per-text shapes
                    store = results.setdefault(name, [None] * n)
                    for j, i in enumerate(group):
                        store[i] = values[j]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results, truncated


def run_texts(runtime, texts: list[str], batch_size: int, normalize: bool, columns: list[str]) -> tuple[dict[str, Any], int]:
    """Tokenize ``texts`` in one call, then ``run_groups`` over length-sorted groups of ``batch_size``."""
    from ..runtime.texts import length_groups

    if not texts:
        return {}, 0
    encodings = runtime.tokenize(texts)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
    return run_groups(runtime, encodings, length_groups(lengths, batch_size), normalize, columns)
