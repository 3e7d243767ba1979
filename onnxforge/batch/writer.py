"""Writing results: CSV, JSON lines or Parquet, one chunk at a time, rows in input order."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from .reader import Chunk, clean

ERROR_COLUMN = "error"


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def _csv_cell(cell: str) -> str:
    """One field as csv.writer's QUOTE_MINIMAL writes it (RFC 4180)."""
    return '"' + cell.replace('"', '""') + '"' if _CSV_SPECIAL.search(cell) else cell



class Writer:
    """Writes chunks in one format; ``columns`` are the carried input columns."""

    def __init__(self, path: Path, fmt: str, columns: list[str], result_columns: list[str], kind: str, dim: int | None):
        self.path, self.fmt, self.columns, self.result_columns, self.kind, self.dim = path, fmt, columns, result_columns, kind, dim
        self._file = None
        self._csv = None
        self._parquet = None

    def __enter__(self):
        if self.fmt == "csv":
            self._file = open(self.path, "w", encoding="utf-8", newline="")
            self._csv = csv.writer(self._file, lineterminator="\r\n")
            self._csv.writerow(self.columns + self.result_columns + [ERROR_COLUMN])
        elif self.fmt == "jsonl":
            self._file = open(self.path, "wb")
        return self

    def __exit__(self, *exc):
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None:
            self._file.flush()
            import os

            os.fsync(self._file.fileno())
            self._file.close()

    def write(self, chunk: Chunk, keep_idx: list[int]) -> None:
        getattr(self, f"_write_{self.fmt}")(chunk, keep_idx)

    def _results_by_row(self, chunk: Chunk) -> list[int]:
        """For each row of the chunk, its position among the texts, or -1."""
        where = np.full(len(chunk.rows), -1, dtype=np.int64)
        where[chunk.text_rows] = np.arange(len(chunk.text_rows))
        return where.tolist()

    def _write_csv(self, chunk: Chunk, keep_idx: list[int]) -> None:
        """Rows joined by hand: csv.writer scans every character of each ~4 kB embedding
        (about 100 us a row); a JSON array of numbers never needs escaping, only quotes."""
        import orjson

        res = chunk.results
        where = self._results_by_row(chunk)
        dumps, opt = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        empty = ",".join([""] * len(self.result_columns))
        lines = []
        for i, row in enumerate(chunk.rows):
            kept = [_csv_cell(clean(row[c])) for c in keep_idx]
            j = where[i]
            if j < 0:
                cells = kept + [empty, _csv_cell(chunk.errors[i])]
            elif self.kind == "embedding":
                cells = kept + ['"' + dumps(res["embedding"][j], option=opt).decode() + '"', ""]
            elif self.kind == "classification":
                cells = kept + [_csv_cell(res["label"][j]), repr(float(res["score"][j])),
                                '"' + dumps(res["scores"][j], option=opt).decode() + '"', ""]
            else:
                cells = kept + ['"' + dumps(res[n][j], option=opt).decode() + '"' for n in self.result_columns] + [""]
            lines.append(",".join(cells))
        lines.append("")
        self._file.write("\r\n".join(lines))

    def _write_jsonl(self, chunk: Chunk, keep_idx: list[int]) -> None:
        import orjson

        res = chunk.results
        where = self._results_by_row(chunk)
        lines = []
        for i, row in enumerate(chunk.rows):
            record: dict[str, Any] = {n: clean(row[c]) for n, c in zip(self.columns, keep_idx)}
            j = where[i]
            if j < 0:
                record.update({n: None for n in self.result_columns})
                record[ERROR_COLUMN] = chunk.errors[i]
            else:
                if self.kind == "classification":
                    record.update(label=res["label"][j], score=float(res["score"][j]), scores=res["scores"][j])
                else:
                    record.update({n: res[n][j] for n in self.result_columns})
                record[ERROR_COLUMN] = None
            lines.append(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
        lines.append(b"")
        self._file.write(b"\n".join(lines))

    def _write_parquet(self, chunk: Chunk, keep_idx: list[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        res = chunk.results
        n = len(chunk.rows)
        ok = np.zeros(n, dtype=bool)
        ok[chunk.text_rows] = True
        arrays: dict[str, Any] = {}
        for name, c in zip(self.columns, keep_idx):
            arrays[name] = pa.array([clean(r[c]) for r in chunk.rows], type=pa.string())

        def scatter(values: np.ndarray) -> np.ndarray:
            full = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
            full[chunk.text_rows] = values
            return full

        def vectors(values: np.ndarray):
            full = scatter(values.reshape(len(values), -1).astype(np.float32))
            return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), full.shape[1], mask=pa.array(~ok))

        if self.kind == "embedding":
            arrays["embedding"] = vectors(res["embedding"])
        elif self.kind == "classification":
            labels = np.empty(n, dtype=object)
            labels[chunk.text_rows] = res["label"]
            arrays["label"] = pa.array(labels.tolist(), type=pa.string())
            arrays["score"] = pa.array(scatter(res["score"].astype(np.float32)), mask=~ok)
            arrays["scores"] = vectors(res["scores"])
        else:
            for name in self.result_columns:
                arrays[name] = pa.array([res[name][j] if j >= 0 else None for j in self._results_by_row(chunk)])
        errors = [chunk.errors.get(i) for i in range(n)]
        arrays[ERROR_COLUMN] = pa.array(errors, type=pa.string())
        table = pa.table(arrays)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        self._parquet.write_table(table)
