"""The Ray engine's input side: one structural pass cuts the input into shards; any node reads one.

A shard is a run of consecutive input rows of one file, named by where it starts, so a
rerun cuts the same input into the same shards (``--resume`` trusts a written shard by
its name and row count). The pass that cuts them also finds the rows the format
rejects (a CSV quote that never closes, a JSONL line that is not a JSON object) before
any model runs, so ``--on-bad-rows fail`` stops in seconds with nothing written.

CSV shards start at a byte offset (``csv_rows`` gives each record's offset and line),
JSONL shards at a line's offset, Parquet shards at a row of a row group. Files are
local paths or any URI pyarrow's file systems open (s3://, gs://, hdfs://, file://).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserInputError
from ..textbatch import is_blank
from .csv_rows import BadRecord, CsvRecords, Record, iter_lines
from .reader import clean, valid_utf8

INPUT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# Columns the Ray engine adds to every output row.
ROW_COLUMN = "row"
FILE_COLUMN = "file"


def file_system(uri: str):
    """(pyarrow FileSystem, path) for a local path or a URI."""
    from pyarrow import fs as pafs

    if "://" in uri:
        try:
            return pafs.FileSystem.from_uri(uri)
        except Exception as e:  # pyarrow raises ArrowInvalid/ArrowNotImplementedError/OSError here
            raise UserInputError(f"cannot open {uri}: {e}", hint="use a local path or a URI pyarrow can open (s3://, gs://, hdfs://)") from None
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def join_uri(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def input_files(uri: str, fmt: str | None) -> tuple[list[str], str]:
    """The input files (sorted) under ``uri`` (a file or a folder), and their format."""
    from pyarrow import fs as pafs

    fs, path = file_system(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise UserInputError(f"input {uri} does not exist", hint="pass a CSV, JSONL or Parquet file, or a folder of them")
    if info.type == pafs.FileType.Directory:
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        paths = sorted(e.path for e in entries if e.type == pafs.FileType.File and not Path(e.path).name.startswith((".", "_"))
                       and (fmt is not None or Path(e.path).suffix.lower() in INPUT_SUFFIXES))
        if not paths:
            raise UserInputError(f"input folder {uri} holds no .csv, .jsonl or .parquet file")
    else:
        paths = [path]
    prefix = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    files = [prefix + p if prefix and "://" not in p else p for p in paths]
    formats = {fmt or INPUT_SUFFIXES.get(Path(p).suffix.lower()) for p in paths}
    if None in formats:
        raise UserInputError(f"cannot tell the input format of {uri}", hint="name it .csv, .jsonl or .parquet, or pass --input-format")
    if len(formats) > 1:
        raise UserInputError(f"input {uri} mixes formats {sorted(formats)}", hint="put one format per folder")
    return files, formats.pop()


@dataclass(frozen=True)
class Shard:
    name: str
    file: str
    file_index: int
    format: str
    row: int  # data row number of the shard's first row (1-based, as the reports count)
    rows: int  # rows in the shard, bad records included
    line: int = 0  # csv/jsonl: the line and byte offset where the first row begins
    offset: int = 0
    row_group: int = 0  # parquet: where the first row is
    skip: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Shard":
        return cls(**json.loads(text))


@dataclass
class InputPlan:
    files: list[str]
    format: str
    columns: list[str]  # the input's columns, as the first file has them
    shards: list[Shard]
    bad: list[dict[str, Any]] = field(default_factory=list)  # bad-row reports, in input order

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


def shard_name(file_index: int, row: int) -> str:
    return f"part-{file_index:05d}-{row:010d}"


def plan_input(uri: str, fmt: str | None, *, shard_rows: int, delimiter: str = ",") -> InputPlan:
    """Read every input file once and cut it into shards of ``shard_rows`` rows."""
    files, fmt = input_files(uri, fmt)
    plan = InputPlan(files=files, format=fmt, columns=[], shards=[])
    for index, path in enumerate(files):
        columns = _index_file(plan, path, index, fmt, shard_rows, delimiter)
        if index == 0:
            plan.columns = columns
        elif columns != plan.columns and fmt == "csv":
            raise UserInputError(f"{path} has the columns {columns}, {files[0]} has {plan.columns}",
                                 hint="every input file must have the same header")
    return plan


def _open(path: str):
    fs, p = file_system(path)
    return fs.open_input_file(p)


def _index_file(plan: InputPlan, path: str, index: int, fmt: str, shard_rows: int, delimiter: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with _open(path) as f:
            meta = pq.ParquetFile(f).metadata
            columns = list(meta.schema.names)
            row = 1
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                for skip in range(0, n, shard_rows):
                    count = min(shard_rows, n - skip)
                    plan.shards.append(Shard(shard_name(index, row), path, index, fmt, row, count, row_group=g, skip=skip))
                    row += count
        return columns
    with _open(path) as f:
        items = CsvRecords(f, delimiter=delimiter) if fmt == "csv" else jsonl_records(f)
        columns: list[str] = []
        if fmt == "csv":
            header = next(iter_items := iter(items), None)
            if header is None:
                raise UserInputError(f"{path} is empty: no header row", hint="the first row must name the columns")
            if isinstance(header, BadRecord):
                raise UserInputError(f"{path}: its header row cannot be read: {header.message()}")
            columns = header.fields
        else:
            iter_items = iter(items)
        start: Record | BadRecord | None = None
        count = 0
        for item in iter_items:
            if start is None:
                start, count = item, 0
            count += 1
            if isinstance(item, BadRecord):
                plan.bad.append({FILE_COLUMN: path, **item.to_dict(columns or None)})
            elif fmt == "jsonl" and not columns and isinstance(item.fields, dict):
                columns = list(item.fields)
            if count == shard_rows:
                plan.shards.append(_text_shard(start, path, index, fmt, count))
                start = None
        if start is not None:
            plan.shards.append(_text_shard(start, path, index, fmt, count))
    return columns


def _text_shard(start, path: str, index: int, fmt: str, count: int) -> Shard:
    first_line = start.first_line if isinstance(start, BadRecord) else start.line
    return Shard(shard_name(index, start.row), path, index, fmt, start.row, count, line=first_line, offset=start.offset)


def jsonl_records(stream, *, line: int = 1, offset: int = 0, row: int = 1) -> Iterator[Record | BadRecord]:
    """JSON Lines as records (``fields`` is the object); blank lines are skipped, not rows."""
    import orjson

    for number, (start, data) in enumerate(iter_lines(stream, offset), start=line):
        if not data.strip():
            continue
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            yield BadRecord(row, number, number, start, f"not valid JSON ({e})", (), data.decode("utf-8", "replace"))
        else:
            if isinstance(value, dict):
                yield Record(row, number, start, value)
            else:
                yield BadRecord(row, number, number, start, f"a JSON {type(value).__name__}, not an object",
                                (), data.decode("utf-8", "replace"))
        row += 1


# -- reading one shard ---------------------------------------------------------------
def text_error(cell: Any) -> str | None:
    """Why a cell gives no text to run (the local engine's wording), or None."""
    if cell is None:
        return "empty: no text in this row"
    if not isinstance(cell, str):
        return f"not text: the cell holds a {type(cell).__name__}"
    if not valid_utf8(cell):
        return "undecodable: the text is not valid UTF-8"
    if is_blank(cell):
        return "empty: no text in this row"
    return None


@dataclass
class ShardRows:
    """The rows of one shard that go to the output (bad records are in the plan's report)."""

    rows: list[int]
    texts: list[str | None]
    errors: list[str | None]
    carried: dict[str, Any]  # column -> list of str (csv, jsonl) or a pyarrow array (parquet)
    bad: int = 0


def read_shard(shard: Shard, columns: list[str], text_column: str, keep: list[str], delimiter: str = ",") -> ShardRows:
    if shard.format == "parquet":
        return _read_parquet_shard(shard, text_column, keep)
    out = ShardRows(rows=[], texts=[], errors=[], carried={k: [] for k in keep})
    n_cols = len(columns)
    positions = [columns.index(k) for k in keep] if shard.format == "csv" else []
    col = columns.index(text_column) if shard.format == "csv" else -1
    with _open(shard.file) as f:
        f.seek(shard.offset)
        if shard.format == "csv":
            items = CsvRecords(f, delimiter=delimiter, line=shard.line, offset=shard.offset, row=shard.row)
        else:
            items = jsonl_records(f, line=shard.line, offset=shard.offset, row=shard.row)
        taken = 0
        for item in items:
            if taken == shard.rows:
                break
            taken += 1
            if isinstance(item, BadRecord):
                out.bad += 1
                continue
            out.rows.append(item.row)
            if shard.format == "csv":
                fields = item.fields
                cell = fields[col] if col < len(fields) else None
                error = text_error(cell)
                if len(fields) != n_cols:
                    # A field too many or too few: an unquoted delimiter or a lost cell, so the
                    # text may be the wrong field. Carried columns are padded or cut to fit.
                    error = (f"ragged: the row has {len(fields)} field(s), the header {n_cols}; "
                             "quote fields that contain the delimiter")
                for k, p in zip(keep, positions):
                    out.carried[k].append(clean(fields[p]) if p < len(fields) else "")
            else:
                obj = item.fields
                cell = obj.get(text_column)
                error = text_error(cell)
                for k in keep:
                    value = obj.get(k)
                    out.carried[k].append(value if value is None or isinstance(value, str) else json.dumps(value))
            out.texts.append(None if error else cell)
            out.errors.append(error)
    if taken != shard.rows:
        raise UserInputError(f"{shard.file} changed since it was indexed: shard {shard.name} expected {shard.rows} rows, "
                             f"found {taken}", hint="rerun without --resume, or restore the input")
    return out


def _read_parquet_shard(shard: Shard, text_column: str, keep: list[str]) -> ShardRows:
    import pyarrow.parquet as pq

    with _open(shard.file) as f:
        table = pq.ParquetFile(f).read_row_group(shard.row_group, columns=[text_column, *keep])
    table = table.slice(shard.skip, shard.rows)
    if table.num_rows != shard.rows:
        raise UserInputError(f"{shard.file} changed since it was indexed (shard {shard.name})")
    texts, errors = [], []
    for cell in table.column(text_column).to_pylist():
        error = text_error(cell)
        texts.append(None if error else cell)
        errors.append(error)
    return ShardRows(rows=list(range(shard.row, shard.row + shard.rows)), texts=texts, errors=errors,
                     carried={k: table.column(k).combine_chunks() for k in keep})
