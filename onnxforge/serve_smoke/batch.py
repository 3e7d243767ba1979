"""``onnxforge batch``: a CSV column through the model, streamed, in input order, written atomically.

Three stages overlap so the model is never waiting: a reader thread parses the next
chunk of CSV rows (RFC 4180 via the csv module: quoted multi-line fields, a UTF-8 BOM,
empty cells) and tokenizes it in one parallel Rust call; the calling thread runs the
model on length-sorted batches of that chunk (ONNX Runtime releases the GIL); a writer
thread formats and writes the previous chunk. Memory is bounded by a few chunks.

Rows come out in input order with the input's other columns. A row whose text is
empty or not valid UTF-8, or whose field count differs from the header's, is kept,
with an ``error`` cell saying why, and counted in the report; it is never dropped. The output appears only when complete
(``atomic_path``): a failure or Ctrl-C leaves no partial file.
"""

from __future__ import annotations

import csv
import io
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..artifact import atomic_path
from ..errors import UserInputError
from ..runners import DEVICES
from ..textbatch import is_blank
from .runtime import length_groups

FORMATS = ("csv", "jsonl", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
ERROR_COLUMN = "error"
# How many error row numbers a report lists (all are counted).
LISTED_ROWS = 50
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


@dataclass(frozen=True)
class BatchOptions:
    column: str = "text"
    # csv, jsonl or parquet; None: from the output's suffix.
    format: str | None = None
    batch_size: int = 32
    # Rows read, tokenized and sorted by length together (bounds memory).
    chunk_rows: int = 4096
    # Input columns to carry to the output; None: all but the text column.
    keep: tuple[str, ...] | None = None
    normalize: bool = True
    delimiter: str = ","
    variant: str | None = None
    device: str = "cpu"
    max_length: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.column:
            raise UserInputError("--column must name the CSV column that holds the texts")
        if self.format is not None and self.format not in FORMATS:
            raise UserInputError(f"--format {self.format} is not known", hint=f"choose one of {', '.join(FORMATS)}")
        if not 1 <= int(self.batch_size) <= 4096:
            raise UserInputError(f"--batch-size {self.batch_size} must be between 1 and 4096")
        if int(self.chunk_rows) < int(self.batch_size):
            raise UserInputError(f"chunk_rows ({self.chunk_rows}) must be at least --batch-size ({self.batch_size})")
        if len(self.delimiter) != 1 or self.delimiter in "\r\n\"":
            raise UserInputError(f"--delimiter {self.delimiter!r} must be one character other than a quote or newline")
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        if self.keep is not None:
            object.__setattr__(self, "keep", tuple(self.keep))

    def output_format(self, out: Path) -> str:
        if self.format:
            return self.format
        fmt = SUFFIX_FORMATS.get(Path(out).suffix.lower())
        if fmt is None:
            raise UserInputError(f"cannot tell the output format from {Path(out).name}",
                                 hint="name the file .csv, .jsonl or .parquet, or pass --format")
        return fmt


@dataclass
class BatchReport:
    input: str
    output: str
    format: str
    kind: str
    variant: str
    device: str
    rows: int = 0
    ok_rows: int = 0
    empty_rows: list[int] = field(default_factory=list)
    empty_count: int = 0
    undecodable_rows: list[int] = field(default_factory=list)
    undecodable_count: int = 0
    truncated_count: int = 0
    ragged_rows: list[int] = field(default_factory=list)
    ragged_count: int = 0
    result_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return self.empty_count + self.undecodable_count + self.ragged_count

    def __bool__(self) -> bool:
        """True when every row got a result."""
        return self.error_count == 0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": bool(self),
            "input": self.input,
            "output": self.output,
            "format": self.format,
            "kind": self.kind,
            "variant": self.variant,
            "device": self.device,
            "rows": self.rows,
            "ok_rows": self.ok_rows,
            "empty": {"count": self.empty_count, "rows": self.empty_rows},
            "undecodable": {"count": self.undecodable_count, "rows": self.undecodable_rows},
            "truncated_rows": self.truncated_count,
            "ragged": {"count": self.ragged_count, "rows": self.ragged_rows},
            "result_columns": self.result_columns,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


# -- reading ------------------------------------------------------------------------
def _valid_utf8(cell: str) -> bool:
    """False for text that held undecodable bytes (read with surrogateescape)."""
    if cell.isascii():
        return True
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def _csv_cell(cell: str) -> str:
    """One field as csv.writer's QUOTE_MINIMAL writes it (RFC 4180)."""
    return '"' + cell.replace('"', '""') + '"' if _CSV_SPECIAL.search(cell) else cell


def _clean(cell: str) -> str:
    """Undecodable bytes in carried columns become U+FFFD, so every output is valid UTF-8."""
    return cell if _valid_utf8(cell) else cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class _Chunk:
    first_row: int  # 1-based data row number of rows[0]
    rows: list[list[str]]
    texts: list[str]
    text_rows: np.ndarray  # index in rows of each text
    errors: dict[int, str]  # index in rows -> why it has no result
    encodings: list | None = None
    groups: list[np.ndarray] | None = None
    bytes_read: int = 0
    results: dict[str, Any] | None = None


def open_csv(path: Path, delimiter: str):
    """(binary file, csv reader, header) with clear errors for files that are not UTF-8 CSV."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"input {path} does not exist", hint="pass the path of a CSV file")
    if not path.is_file():
        raise UserInputError(f"input {path} is not a file", hint="pass the path of a CSV file")
    raw = open(path, "rb")
    try:
        head = raw.read(4)
        raw.seek(0)
        for bom, name in _BOMS.items():
            if head.startswith(bom):
                raise UserInputError(f"{path} is {name}-encoded; batch reads UTF-8 CSV",
                                     hint=f"re-save it as UTF-8 (e.g. iconv -f {name} -t UTF-8)")
        # surrogateescape: a bad byte becomes a marker we can find per row, instead of
        # an exception that stops the whole file at an unknown row.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise UserInputError(f"{path} is empty: no header row", hint="the first row must name the columns") from None
        except csv.Error as e:
            raise UserInputError(f"{path} is not a readable CSV file ({e})") from None
        if not all(_valid_utf8(h) for h in header) or "\x00" in "".join(header):
            raise UserInputError(f"{path} does not look like UTF-8 text: its header row holds undecodable bytes",
                                 hint="re-save the file as UTF-8 CSV")
        return raw, text, reader, header
    except BaseException:
        raw.close()
        raise


def _read_chunks(reader, raw, path: Path, n_cols: int, col: int, chunk_rows: int, report: BatchReport) -> Iterator[_Chunk]:
    row_no = 0
    while True:
        rows: list[list[str]] = []
        try:
            for row in reader:
                rows.append(row)
                if len(rows) >= chunk_rows:
                    break
        except csv.Error as e:
            raise UserInputError(f"{path}: CSV error at line {reader.line_num} (data row {row_no + len(rows) + 1}): {e}",
                                 hint="check the quoting around that line") from None
        if not rows:
            return
        texts, idx, errors = [], [], {}
        for i, row in enumerate(rows):
            cell = row[col] if col < len(row) else ""
            if len(row) != n_cols:
                # A field too many or too few: an unquoted delimiter or a lost cell, so the
                # text may be the wrong field. Carried columns are padded or cut to fit.
                errors[i] = (f"ragged: the row has {len(row)} field(s), the header {n_cols}; "
                             "quote fields that contain the delimiter")
                report.ragged_count += 1
                if len(report.ragged_rows) < LISTED_ROWS:
                    report.ragged_rows.append(row_no + i + 1)
                if len(row) < n_cols:
                    row.extend([""] * (n_cols - len(row)))
                else:
                    del row[n_cols:]
            elif not _valid_utf8(cell):
                errors[i] = "undecodable: the text is not valid UTF-8"
                report.undecodable_count += 1
                if len(report.undecodable_rows) < LISTED_ROWS:
                    report.undecodable_rows.append(row_no + i + 1)
            elif is_blank(cell):
                errors[i] = "empty: no text in this row"
                report.empty_count += 1
                if len(report.empty_rows) < LISTED_ROWS:
                    report.empty_rows.append(row_no + i + 1)
            else:
                texts.append(cell)
                idx.append(i)
        if row_no == 0:
            bad = report.undecodable_count
            if bad >= 5 and bad * 2 > len(rows) - report.empty_count:
                # Most rows undecodable: the file is in another encoding, not a few bad rows.
                raise UserInputError(
                    f"{path} does not look like UTF-8: {bad} of the first {len(rows)} rows hold bytes that are not valid UTF-8",
                    hint="re-save it as UTF-8 (e.g. iconv -f latin1 -t UTF-8 in.csv > out.csv)",
                )
        yield _Chunk(first_row=row_no + 1, rows=rows, texts=texts, text_rows=np.asarray(idx, dtype=np.int64),
                     errors=errors, bytes_read=raw.tell())
        row_no += len(rows)


# -- writing ------------------------------------------------------------------------
class _Writer:
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

    def write(self, chunk: _Chunk, keep_idx: list[int]) -> None:
        getattr(self, f"_write_{self.fmt}")(chunk, keep_idx)

    def _results_by_row(self, chunk: _Chunk) -> list[int]:
        """For each row of the chunk, its position among the texts, or -1."""
        where = np.full(len(chunk.rows), -1, dtype=np.int64)
        where[chunk.text_rows] = np.arange(len(chunk.text_rows))
        return where.tolist()

    def _write_csv(self, chunk: _Chunk, keep_idx: list[int]) -> None:
        """Rows joined by hand: csv.writer scans every character of each ~4 kB embedding
        (about 100 us a row); a JSON array of numbers never needs escaping, only quotes."""
        import orjson

        res = chunk.results
        where = self._results_by_row(chunk)
        dumps, opt = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        empty = ",".join([""] * len(self.result_columns))
        lines = []
        for i, row in enumerate(chunk.rows):
            kept = [_csv_cell(_clean(row[c])) for c in keep_idx]
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

    def _write_jsonl(self, chunk: _Chunk, keep_idx: list[int]) -> None:
        import orjson

        res = chunk.results
        where = self._results_by_row(chunk)
        lines = []
        for i, row in enumerate(chunk.rows):
            record: dict[str, Any] = {n: _clean(row[c]) for n, c in zip(self.columns, keep_idx)}
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

    def _write_parquet(self, chunk: _Chunk, keep_idx: list[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        res = chunk.results
        n = len(chunk.rows)
        ok = np.zeros(n, dtype=bool)
        ok[chunk.text_rows] = True
        arrays: dict[str, Any] = {}
        for name, c in zip(self.columns, keep_idx):
            arrays[name] = pa.array([_clean(r[c]) for r in chunk.rows], type=pa.string())

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


# -- the job ------------------------------------------------------------------------
def _result_columns(runtime) -> list[str]:
    if runtime.kind == "embedding":
        return ["embedding"]
    if runtime.kind == "classification":
        return ["label", "score", "scores"]
    return list(runtime.spec.output_names)


class _Stage(threading.Thread):
    """A pipeline thread whose exception is re-raised in the caller."""

    def __init__(self, name: str, target: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # handed to the calling thread, which raises it
            self.error = e


_END = object()


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the job is stopping (so a stopped consumer never blocks a producer)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: _Stage | None = None) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END
            if producer is not None and not producer.is_alive() and q.empty():
                return _END


def batch_file(
    artifact_dir: str | Path,
    input_path: str | Path,
    out: str | Path,
    options: BatchOptions = BatchOptions(),
    *,
    runtime=None,
    progress: Callable[[int, int, int], None] | None = None,
) -> BatchReport:
    """Run ``options.column`` of ``input_path`` through the model into ``out``.

    ``runtime``: an already loaded ``Runtime`` (else one is loaded from artifact_dir).
    ``progress(rows_done, bytes_read, total_bytes)`` is called after each chunk.
    """
    from .runtime import Runtime

    started = time.perf_counter()
    input_path, out = Path(input_path), Path(out)
    fmt = options.output_format(out)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserInputError("--format parquet needs pyarrow", hint="pip install 'onnxforge[parquet]'") from None
    if out.exists() and input_path.exists() and out.resolve() == input_path.resolve():
        raise UserInputError(f"--out {out} is the input file", hint="write the results to another file")
    raw, text, reader, header = open_csv(input_path, options.delimiter)
    try:
        if options.column not in header:
            raise UserInputError(f"{input_path} has no column {options.column!r}; its columns are {header}",
                                 hint="pass --column NAME with one of those")
        if header.count(options.column) > 1:
            raise UserInputError(f"{input_path} has {header.count(options.column)} columns named {options.column!r}",
                                 hint="rename one of them")
        col = header.index(options.column)
        if options.keep is None:
            keep_idx = [i for i, h in enumerate(header) if i != col]
        else:
            missing = [k for k in options.keep if k not in header]
            if missing:
                raise UserInputError(f"--keep names {missing}, which {input_path.name} does not have; its columns are {header}")
            keep_idx = [header.index(k) for k in options.keep]
        columns = [header[i] for i in keep_idx]
        load_started = time.perf_counter()
        if runtime is None:
            runtime = Runtime.load(artifact_dir, options.variant, options.device, max_length=options.max_length,
                                   threads=options.threads)
        load_seconds = time.perf_counter() - load_started
        result_columns = _result_columns(runtime)
        clash = sorted(set(columns) & set(result_columns + [ERROR_COLUMN]))
        if clash:
            raise UserInputError(f"input column(s) {clash} would clash with the result columns {result_columns + [ERROR_COLUMN]}",
                                 hint="leave them out with --keep (list the columns to carry)")
        if len(set(columns)) != len(columns) and fmt != "csv":
            raise UserInputError(f"the carried columns repeat a name ({columns}); {fmt} needs unique names",
                                 hint="choose the columns with --keep, or write --format csv")
        report = BatchReport(input=str(input_path), output=str(out), format=fmt, kind=runtime.kind,
                             variant=runtime.variant, device=runtime.device, result_columns=result_columns,
                             load_seconds=load_seconds)
        total_bytes = input_path.stat().st_size
        with atomic_path(out) as tmp, _Writer(tmp, fmt, columns, result_columns, runtime.kind, None) as writer:
            _pipeline(runtime, reader, raw, input_path, header, col, keep_idx, writer, options, report, progress, total_bytes)
    finally:
        text.close()  # closes raw too
    report.seconds = time.perf_counter() - started
    return report


def _pipeline(runtime, reader, raw, input_path, header, col, keep_idx, writer, options, report, progress, total_bytes):
    stop = threading.Event()
    ready: queue.Queue = queue.Queue(maxsize=1)
    done: queue.Queue = queue.Queue(maxsize=1)
    timings = {"read_tokenize": 0.0, "infer": 0.0, "write": 0.0}
    batch = options.batch_size

    def produce() -> None:
        chunks = _read_chunks(reader, raw, input_path, len(header), col, options.chunk_rows, report)
        while not stop.is_set():
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            if chunk.texts:
                chunk.encodings = runtime.tokenize(chunk.texts)
                lengths = np.fromiter((len(e.ids) for e in chunk.encodings), dtype=np.int64, count=len(chunk.texts))
                # Batches over the length-sorted chunk: neighbours have nearly the same
                # length, so calls are full and padding is small.
                chunk.groups = length_groups(lengths, batch)
            timings["read_tokenize"] += time.perf_counter() - t0
            if not _put(ready, chunk, stop):
                return
        _put(ready, _END, stop)

    def consume() -> None:
        rows_done = 0
        while True:
            chunk = _get(done, stop)
            if chunk is _END:
                return
            t0 = time.perf_counter()
            writer.write(chunk, keep_idx)
            timings["write"] += time.perf_counter() - t0
            rows_done += len(chunk.rows)
            if progress is not None:
                progress(rows_done, chunk.bytes_read, total_bytes)

    reader_thread = _Stage("onnxforge-batch-read", produce)
    writer_thread = _Stage("onnxforge-batch-write", consume)
    reader_thread.start()
    writer_thread.start()
    try:
        while True:
            chunk = _get(ready, stop, reader_thread)
            if chunk is _END:
                break
            if writer_thread.error is not None:
                stop.set()
                break
            t0 = time.perf_counter()
            chunk.results = _infer(runtime, chunk, options.normalize, report)
            chunk.encodings = chunk.groups = None  # the writer needs only the rows and results
            timings["infer"] += time.perf_counter() - t0
            report.rows += len(chunk.rows)
            report.ok_rows += len(chunk.texts)
            if not _put(done, chunk, stop):
                break
        _put(done, _END, stop)
        writer_thread.join()
    finally:
        stop.set()
        reader_thread.join()
        writer_thread.join()
    for stage in (reader_thread, writer_thread):
        if stage.error is not None:
            raise stage.error
    report.stage_seconds = timings


def _infer(runtime, chunk: _Chunk, normalize: bool, report: BatchReport) -> dict[str, Any]:
    n = len(chunk.texts)
    kind = runtime.kind
    results: dict[str, Any] = {}
    if n == 0:
        return results
    for group in chunk.groups:
        enc = runtime.pad([chunk.encodings[i] for i in group])
        report.truncated_count += int(enc.truncated.sum())
        outputs = runtime.run(enc.feeds)
        if kind == "embedding":
            vec = runtime.pooled(outputs, enc.mask, normalize=normalize)
            results.setdefault("embedding", np.zeros((n, vec.shape[1]), dtype=np.float32))[group] = vec
        elif kind == "classification":
            labels, scores, probs = runtime.classes(outputs)
            results.setdefault("label", np.empty(n, dtype=object))[group] = labels
            results.setdefault("score", np.zeros(n, dtype=np.float32))[group] = scores
            results.setdefault("scores", np.zeros((n, probs.shape[1]), dtype=np.float32))[group] = probs
        else:
            for o in runtime.spec.outputs:
                store = results.setdefault(o.name, [None] * n)
                for j, i in enumerate(group):
                    value = outputs[o.name][j]
                    if o.is_token_level and o.axes[1] == "sequence":
                        value = value[: int(enc.lengths[j])]
                    store[i] = np.ascontiguousarray(value)
    if kind == "classification":
        results["label"] = results["label"].tolist()
    return results
