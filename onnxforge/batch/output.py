"""The Ray engine's output side: the shard folder (resume, manifest, _SUCCESS) and single-file joins.

Shards hold the ``row`` (and ``file``) columns that identify each row; a single-file
output is in input order, so it drops them and has the same columns as the local
engine's output (carried columns, results, ``error``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..errors import CheckFailed, UserInputError
from .bad_rows import RowCounts, check_counts
from .shard_worker import META_JOB, META_SUMMARY, TEMPORARY
from .shards import FILE_COLUMN, ROW_COLUMN, InputPlan, file_system, join_uri

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
BAD_ROWS = "bad_rows.jsonl"


def put_bytes(fs, path: str, data: bytes) -> None:
    """Write ``data`` under a temporary name beside ``path``, then move it into place."""
    folder, _, name = path.rpartition("/")
    tmp = join_uri(folder, f".{name}.{uuid.uuid4().hex}.partial")
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def join_shards(fs, folder: str, names: list[str], out: str, fmt: str) -> None:
    """Concatenate the shards (already in input order) into ``out`` as csv, jsonl or parquet."""
    import pyarrow.parquet as pq

    from .shards import file_system

    out_fs, out_path = file_system(out)
    folder_out, _, base = out_path.rpartition("/")
    tmp = join_uri(folder_out, f".{base}.{uuid.uuid4().hex}.partial")
    writer = None
    try:
        with out_fs.open_output_stream(tmp) as sink:
            for i, name in enumerate(names):
                table = pq.read_table(join_uri(folder, name), filesystem=fs)
                table = table.drop_columns([c for c in (ROW_COLUMN, FILE_COLUMN) if c in table.column_names])
                table = table.replace_schema_metadata(None)
                if fmt == "parquet":
                    if writer is None:
                        writer = pq.ParquetWriter(sink, table.schema)
                    writer.write_table(table)
                elif fmt == "jsonl":
                    sink.write(_jsonl(table))
                else:
                    sink.write(_csv(table, header=i == 0))
            if writer is not None:
                writer.close()
                writer = None
        out_fs.move(tmp, out_path)
    except BaseException:
        if writer is not None:
            writer.close()
        try:
            out_fs.delete_file(tmp)
        except OSError:
            pass
        raise


def _jsonl(table) -> bytes:
    import orjson

    return b"".join(orjson.dumps(row) + b"\n" for row in table.to_pylist())


def _csv(table, *, header: bool) -> bytes:
    """RFC 4180 rows, CRLF-terminated like the local engine; list cells as JSON arrays."""
    import csv
    import io

    import orjson

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if v is None else orjson.dumps(v).decode() if isinstance(v, list) else
                         repr(v) if isinstance(v, float) else v for v in row.values()])
    return buf.getvalue().encode("utf-8")


def prepare_output(fs, path: str, plan: InputPlan, job: str, resume: bool) -> dict[str, dict[str, Any]]:
    """Summaries of the shards already written and verified (``--resume``); without it, old job files go."""
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise UserInputError(f"--out {path} is a file; the Ray engine writes a folder of shards there",
                             hint="name a folder, or a .csv/.jsonl/.parquet file with --format for one file")
    fs.create_dir(path, recursive=True)
    names = {s.name: s for s in plan.shards}
    done: dict[str, dict[str, Any]] = {}
    existing = [e for e in fs.get_file_info(pafs.FileSelector(path, recursive=False)) if e.type == pafs.FileType.File]
    for entry in existing:
        base = entry.base_name
        if not resume:
            if base.startswith("part-") and base.endswith(".parquet") or base in (MANIFEST, SUCCESS, BAD_ROWS):
                fs.delete_file(entry.path)
            continue
        if base == SUCCESS or base == MANIFEST:
            fs.delete_file(entry.path)  # rewritten at the end
            continue
        name = base[: -len(".parquet")] if base.endswith(".parquet") else None
        if name not in names:
            continue
        try:
            meta = pq.read_metadata(entry.path, filesystem=fs)
            kv = meta.metadata or {}
            summary = json.loads(kv.get(META_SUMMARY, b"{}"))
        except (OSError, ValueError):  # unreadable footer (pyarrow's errors are OSError/ValueError): rewritten
            continue
        if kv.get(META_JOB) != job.encode():
            raise UserInputError(f"{entry.path} was written by a different job (another model, options or input)",
                                 hint="rerun without --resume (it replaces the old shards), or write to another --out")
        if summary.get("rows") == names[name].rows and meta.num_rows == summary.get("written"):
            done[name] = summary
    _remove_temporary(fs, path)
    return done


def _remove_temporary(fs, path: str) -> None:
    """Drop the workers' temporary folder (what a killed run left half-written)."""
    from pyarrow import fs as pafs

    if fs.get_file_info(join_uri(path, TEMPORARY)).type == pafs.FileType.Directory:
        fs.delete_dir(join_uri(path, TEMPORARY))


def finish(report, fs, path: str, plan: InputPlan, summaries: dict, job: str, single: str | None) -> None:
    """Count check, bad-row report, manifest, _SUCCESS (and the single file when asked) for a ``RayBatchReport``.

    Rows written are counted from the shard files' footers, not from the actors' own
    summaries, so the check compares the reader's count with what is really on disk.
    """
    import pyarrow.parquet as pq

    missing = [s.name for s in plan.shards if s.name not in summaries]
    written = sum(pq.read_metadata(join_uri(path, f"{s.name}.parquet"), filesystem=fs).num_rows
                  for s in plan.shards if s.name in summaries)
    ok = sum(summaries[s.name]["ok"] for s in plan.shards if s.name in summaries)
    counts = RowCounts(read=plan.rows, written=written, reported=len(plan.bad), ok=ok)
    report.row_counts = counts
    report.error_count = written - ok
    report.truncated_count = sum(summaries[n].get("truncated", 0) for n in summaries)
    if missing:
        raise CheckFailed(f"{len(missing)} shard(s) were not written ({', '.join(missing[:5])})",
                          hint="rerun with --resume to write only those")
    check_counts(counts)
    _remove_temporary(fs, path)
    import orjson

    bad_lines = b"".join(orjson.dumps(b) + b"\n" for b in plan.bad)
    manifest = {"job": job, "engine": "ray", "input": {"files": plan.files, "format": plan.format},
                "artifact": {"variant": report.variant, "sha256": report.artifact_sha256, "kind": report.kind},
                "rows": counts.to_dict(), "error_rows": report.error_count, "bad_rows_report": BAD_ROWS if plan.bad else None,
                "shards": [{"file": f"{s.name}.parquet", "first_row": s.row, **summaries[s.name]} for s in plan.shards]}
    if single is None:
        if plan.bad:
            put_bytes(fs, join_uri(path, BAD_ROWS), bad_lines)
            report.bad_rows_path = join_uri(report.output, BAD_ROWS)
        put_bytes(fs, join_uri(path, MANIFEST), json.dumps(manifest, indent=2).encode())
        put_bytes(fs, join_uri(path, SUCCESS), b"")
        return
    join_shards(fs, path, [f"{s.name}.parquet" for s in plan.shards], report.output, single)
    if plan.bad:
        bad_path = report.output + ".bad-rows.jsonl"  # as bad_rows.report_path names it for the local engine
        put_bytes(*file_system(bad_path), bad_lines)
        report.bad_rows_path = bad_path
    fs.delete_dir(path)
