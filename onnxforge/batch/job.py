"""``onnxforge batch``: a CSV column through the model, streamed, in input order, written atomically.

Three stages overlap so the model is never waiting: a reader thread parses the next
chunk of CSV rows (RFC 4180 via the csv module: quoted multi-line fields, a UTF-8 BOM,
empty cells) and tokenizes it in one parallel Rust call; the calling thread runs the
model on length-sorted batches of that chunk (ONNX Runtime releases the GIL); a writer
thread formats and writes the previous chunk. Memory is bounded by a few chunks.

Rows come out in input order with the input's other columns. A row whose text is
empty or not valid UTF-8, or whose field count differs from the header's, is kept,
with an ``error`` cell saying why, and counted in the report; it is never dropped. A
record the CSV grammar rejects (an unterminated quote) stops the job (exit 2), or with
``--on-bad-rows report`` goes to ``OUT.bad-rows.jsonl``; then rows read = rows written
+ rows reported is checked. The output appears only when complete (``atomic_path``):
a failure or Ctrl-C leaves no partial file.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifact import atomic_path
from ..errors import UserInputError
from ..runtime.results import result_columns as model_result_columns
from ..runtime.prompts import prompt_prefix
from ..runtime.texts import length_groups
from .bad_rows import check_counts, report_path, write_report
from .infer import run_groups
from .options import BatchOptions
from .reader import Chunk, open_csv, read_chunks
from .report import BatchReport
from .writer import ERROR_COLUMN, Writer


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
    announce: Callable[[str], None] | None = None,
) -> BatchReport:
    """Run ``options.column`` of ``input_path`` through the model into ``out``.

    ``runtime``: an already loaded ``Runtime`` (else one is loaded from artifact_dir).
    ``progress(rows_done, bytes_read, total_bytes)`` is called after each chunk.
    """
    from ..runtime import Runtime

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
    raw, records, header = open_csv(input_path, options.delimiter)
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
                                   threads=options.threads, engine=options.runtime_engine, throughput=True)
            if announce:
                announce(f"batch: model '{runtime.variant}' ({runtime.precision}) on {runtime.device} "
                         f"via {runtime.engine.engine}")
        load_seconds = time.perf_counter() - load_started
        prompt_prefix(runtime.artifact, options.prompt_name)  # an unknown prompt: exit 2 before any row is written
        result_columns = model_result_columns(runtime.spec)
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
        with atomic_path(out) as tmp, Writer(tmp, fmt, columns, result_columns, runtime.kind, None) as writer:
            _pipeline(runtime, records, raw, input_path, header, col, keep_idx, writer, options, report, progress, total_bytes)
            # Inside the atomic block: lost rows or an unwritable report leave no output.
            check_counts(report.counts())
            _write_bad_rows(out, report)
    finally:
        raw.close()
    report.seconds = time.perf_counter() - started
    return report


def _write_bad_rows(out: Path, report: BatchReport) -> None:
    """The rows the CSV grammar rejected, beside the output (a stale report from an earlier run goes)."""
    target = report_path(out)
    if report.bad:
        write_report(target, report.bad)
        report.bad_rows_path = str(target)
    elif target.is_file():
        target.unlink()


def _pipeline(runtime, records, raw, input_path, header, col, keep_idx, writer, options, report, progress, total_bytes):
    stop = threading.Event()
    ready: queue.Queue = queue.Queue(maxsize=1)
    done: queue.Queue = queue.Queue(maxsize=1)
    timings = {"read_tokenize": 0.0, "infer": 0.0, "write": 0.0}
    batch = options.batch_size
    prefix = prompt_prefix(runtime.artifact, options.prompt_name)

    def produce() -> None:
        chunks = read_chunks(records, raw, input_path, header, col, options.chunk_rows, report, options.bad_rows)
        while not stop.is_set():
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            if chunk.texts:
                chunk.encodings = runtime.tokenize([prefix + t for t in chunk.texts] if prefix else chunk.texts)
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
            report.written += len(chunk.rows)
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
            chunk.results = _infer(runtime, chunk, options.normalize, report, writer.result_columns)
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


def _infer(runtime, chunk: Chunk, normalize: bool, report: BatchReport, columns: list[str]) -> dict[str, Any]:
    """The chunk's results by column, one entry per text, gathered from its length-sorted calls."""
    if not chunk.texts:
        return {}
    results, truncated = run_groups(runtime, chunk.encodings, chunk.groups, normalize, columns)
    report.truncated_count += truncated
    return results
