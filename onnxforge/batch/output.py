"""The Ray engine's output side: small files put atomically, and shards joined into one file.

Shards hold the ``row`` (and ``file``) columns that identify each row; a single-file
output is in input order, so it drops them and has the same columns as the local
engine's output (carried columns, results, ``error``).
"""

from __future__ import annotations

import uuid

from .shards import FILE_COLUMN, ROW_COLUMN, join_uri


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
