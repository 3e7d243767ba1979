"""Reading the input CSV: RFC 4180 rows in chunks, each text checked (empty, undecodable, ragged).

A bad row is kept with the reason it gets no result (``Chunk.errors``) and counted in
the report; it is never dropped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserInputError
from ..textbatch import is_blank
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
        if not all(valid_utf8(h) for h in header) or "\x00" in "".join(header):
            raise UserInputError(f"{path} does not look like UTF-8 text: its header row holds undecodable bytes",
                                 hint="re-save the file as UTF-8 CSV")
        return raw, text, reader, header
    except BaseException:
        raw.close()
        raise


def read_chunks(reader, raw, path: Path, n_cols: int, col: int, chunk_rows: int, report: BatchReport) -> Iterator[Chunk]:
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
            elif not valid_utf8(cell):
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
        yield Chunk(first_row=row_no + 1, rows=rows, texts=texts, text_rows=np.asarray(idx, dtype=np.int64),
                     errors=errors, bytes_read=raw.tell())
        row_no += len(rows)
