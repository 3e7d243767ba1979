"""One Ray actor of the batch job: loads the runtime once, then turns shards into Parquet files.

Each call reads one shard (``shards.read_shard``), tokenizes its texts in one call,
runs them in length-sorted groups (``length_groups``: short texts are not padded to
long ones), and writes the shard's Parquet file under a temporary name that is renamed
into place only when complete. A shard file therefore either exists whole or not at
all, which is what ``--resume`` relies on. Its footer records the job's fingerprint
and the shard's counts, so a later run can verify it without reading it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np

from .infer import run_texts
from .shards import FILE_COLUMN, ROW_COLUMN, Shard, file_system, join_uri, read_shard
from .writer import ERROR_COLUMN

META_JOB = b"onnxforge.job"
META_SUMMARY = b"onnxforge.summary"
TEMPORARY = "_temporary"


def result_arrays(kind: str, names: list[str], results: dict[str, Any], ok: np.ndarray, widths: dict[str, int]) -> dict[str, Any]:
    """Arrow columns with a value for each row that ran and a null for each that did not.

    ``widths``: the vector columns' sizes, so a shard where no row ran has the same schema.
    """
    import pyarrow as pa

    n = len(ok)
    where = np.flatnonzero(ok)

    def vectors(name: str):
        values, width = results.get(name), widths[name]
        full = np.zeros((n, width), dtype=np.float32)
        if values is not None:
            full[where] = values.reshape(len(values), -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), width, mask=pa.array(~ok))

    if kind == "embedding":
        return {"embedding": vectors("embedding")}
    if kind == "classification":
        labels = np.full(n, None, dtype=object)
        scores = np.zeros(n, dtype=np.float32)
        if where.size:
            labels[where] = results["label"]
            scores[where] = results["score"]
        return {"label": pa.array(labels.tolist(), type=pa.string()), "score": pa.array(scores, mask=~ok),
                "scores": vectors("scores")}
    arrays = {}
    for name in names:
        column = [None] * n
        for j, i in enumerate(where):
            column[i] = results[name][j].tolist()
        arrays[name] = pa.array(column)
    return arrays


class ShardWorker:
    """The Ray Data actor (``map_batches(ShardWorker, compute=ActorPoolStrategy(...))``)."""

    # Set on a per-job subclass (see ray_job._run_shards): the keyword arguments of ``setup``.
    settings: dict[str, Any] = {}

    def __init__(self) -> None:
        self.setup(**self.settings)

    def setup(self, *, artifact_dir: str, variant: str, device: str, engine: str | None, prompt_name: str | None, max_length: int | None, threads: int | None,
              batch_size: int, normalize: bool, out: str, job: str, columns: list[str], text_column: str,
              keep: list[str], delimiter: str, with_file: bool) -> None:
        from ..runtime import Runtime
        from ..runtime.prompts import prompt_prefix
        from ..runtime.results import result_columns

        started = time.perf_counter()
        self.runtime = Runtime.load(artifact_dir, variant, device, max_length=max_length, threads=threads, engine=engine,
                                    throughput=True)
        self.load_seconds = time.perf_counter() - started
        self.prefix = prompt_prefix(self.runtime.artifact, prompt_name)
        self.names = result_columns(self.runtime.spec)
        self.batch_size, self.normalize = batch_size, normalize
        # One text through the model: warms the session and gives the vector widths.
        warm, _ = run_texts(self.runtime, ["onnxforge"], batch_size, normalize, self.names)
        self.widths = {k: int(v.shape[1]) for k, v in warm.items() if isinstance(v, np.ndarray) and v.ndim == 2}
        self.out, self.job = out, job
        self.columns, self.text_column, self.keep, self.delimiter = columns, text_column, keep, delimiter
        self.with_file = with_file
        self.fs, self.out_path = file_system(out)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        return {"summary": [json.dumps(self.process(Shard.from_json(str(s)))) for s in batch["shard"]]}

    def process(self, shard: Shard) -> dict[str, Any]:
        import pyarrow as pa

        started = time.perf_counter()
        got = read_shard(shard, self.columns, self.text_column, self.keep, self.delimiter)
        ok = np.array([t is not None for t in got.texts], dtype=bool)
        texts = [self.prefix + t for t in got.texts if t is not None]
        read_done = time.perf_counter()
        results, truncated = run_texts(self.runtime, texts, self.batch_size, self.normalize, self.names)
        infer_done = time.perf_counter()
        arrays: dict[str, Any] = {}
        if self.with_file:
            arrays[FILE_COLUMN] = pa.array([shard.file] * len(got.rows), type=pa.string())
        arrays[ROW_COLUMN] = pa.array(got.rows, type=pa.int64())
        for name in self.keep:
            values = got.carried[name]
            arrays[name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=pa.string())
        arrays.update(result_arrays(self.runtime.kind, self.names, results, ok, self.widths))
        arrays[ERROR_COLUMN] = pa.array(got.errors, type=pa.string())
        summary = {"name": shard.name, "rows": shard.rows, "written": len(got.rows), "ok": int(ok.sum()),
                   "errors": len(got.rows) - int(ok.sum()), "bad": got.bad, "truncated": truncated,
                   "worker": {"read_s": round(read_done - started, 4), "infer_s": round(infer_done - read_done, 4)}}
        table = pa.table(arrays).replace_schema_metadata({META_JOB: self.job.encode(), META_SUMMARY: json.dumps(summary).encode()})
        self._write(shard.name, table)
        summary["worker"]["write_s"] = round(time.perf_counter() - infer_done, 4)
        return summary

    def _write(self, name: str, table) -> None:
        """Write under a unique temporary name, then move into place (a rename on local disks)."""
        import pyarrow.parquet as pq

        tmp = join_uri(self.out_path, f"{TEMPORARY}/{name}.{uuid.uuid4().hex}.parquet")
        self.fs.create_dir(join_uri(self.out_path, TEMPORARY), recursive=True)
        try:
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, join_uri(self.out_path, f"{name}.parquet"))
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise
