"""Reading the input CSV: RFC 4180 rows in chunks, each text checked (empty, undecodable, ragged).

A bad row is kept with the reason it gets no result (``Chunk.errors``) and counted in
the report; it is never dropped. A record the CSV grammar rejects (``csv_rows``: an
unterminated quote) stops the job, or with ``--on-bad-rows report`` goes to the
bad-row report; the rows after it are read, not swallowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserInputError
from ..textbatch import is_blank
from .bad_rows import BadRowPolicy
from .csv_rows import BadRecord, CsvRecords
from .report import LISTED_ROWS, BatchReport

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def valid_utf8(cell: str) -> bool:
    """False for text that held undecodable bytes (read with surrogateescape)."""
    if cell.isascii():
        return True
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean(cell: str) -> str:
    """Undecodable bytes in carried columns become U+FFFD, so every output is valid UTF-8."""
    return cell if valid_utf8(cell) else cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class Chunk:
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
    """(binary file, record iterator, header) with clear errors for files that are not UTF-8 CSV.

    Records come from ``CsvRecords``: strict RFC 4180, each with its data row number; a
    record the grammar rejects (an unterminated quote) is a ``BadRecord`` naming its line.
    """
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
        # Undecodable bytes become lone surrogates (surrogateescape): a marker we can find
        # per row, instead of an exception that stops the whole file at an unknown row.
        records = iter(CsvRecords(raw, delimiter=delimiter))
        header = next(records, None)
        if header is None:
            raise UserInputError(f"{path} is empty: no header row", hint="the first row must name the columns")
        if isinstance(header, BadRecord):
            raise UserInputError(f"{path}: the header row cannot be read: {header.message()}")
        header = header.fields
        if not all(valid_utf8(h) for h in header) or "\x00" in "".join(header):
            raise UserInputError(f"{path} does not look like UTF-8 text: its header row holds undecodable bytes",
                                 hint="re-save the file as UTF-8 CSV")
        return raw, records, header
    except BaseException:
        raw.close()
        raise


def read_chunks(records, raw, path: Path, header: list[str], col: int, chunk_rows: int, report: BatchReport,
                policy: BadRowPolicy) -> Iterator[Chunk]:
    """Chunks of ``chunk_rows`` good records; rejected records go to ``report.bad`` (or stop the job)."""
    n_cols = len(header)
    first = True
    while True:
        rows: list[list[str]] = []
        numbers: list[int] = []
        for item in records:
            if isinstance(item, BadRecord):
                bad = item.to_dict(header)
                policy.refuse([bad], str(path))
                report.bad.append(bad)
                continue
            rows.append(item.fields)
            numbers.append(item.row)
            if len(rows) >= chunk_rows:
                break
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
                    report.ragged_rows.append(numbers[i])
                if len(row) < n_cols:
                    row.extend([""] * (n_cols - len(row)))
                else:
                    del row[n_cols:]
            elif not valid_utf8(cell):
                errors[i] = "undecodable: the text is not valid UTF-8"
                report.undecodable_count += 1
                if len(report.undecodable_rows) < LISTED_ROWS:
                    report.undecodable_rows.append(numbers[i])
            elif is_blank(cell):
                errors[i] = "empty: no text in this row"
                report.empty_count += 1
                if len(report.empty_rows) < LISTED_ROWS:
                    report.empty_rows.append(numbers[i])
            else:
                texts.append(cell)
                idx.append(i)
        if first:
            first = False
            bad = report.undecodable_count
            if bad >= 5 and bad * 2 > len(rows) - report.empty_count:
                # Most rows undecodable: the file is in another encoding, not a few bad rows.
                raise UserInputError(
                    f"{path} does not look like UTF-8: {bad} of the first {len(rows)} rows hold bytes that are not valid UTF-8",
                    hint="re-save it as UTF-8 (e.g. iconv -f latin1 -t UTF-8 in.csv > out.csv)",
                )
        yield Chunk(first_row=numbers[0], rows=rows, texts=texts, text_rows=np.asarray(idx, dtype=np.int64),
                    errors=errors, bytes_read=raw.tell())
