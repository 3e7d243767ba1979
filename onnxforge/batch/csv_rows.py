"""Structural CSV reading: every record with its row number, line and byte offset.

Python's csv module in its default (lenient) mode reads a quote that never closes as
one field running to the end of the file: five rows in, two out, no error. Here the
reader runs ``strict`` and a record it cannot parse (an unterminated quoted field, a
stray quote after a closing one, a NUL byte, a field over the csv size limit) becomes a
``BadRecord`` that names the line where the broken field began. Reading then goes on
at the next line, so the rows after a broken one are not swallowed, and

    rows read = records + bad records

holds for any input. Lines are split after each ``\\n`` (so ``\\r\\n`` files work; old
Mac ``\\r``-only files are one long line). Bytes that are not UTF-8 survive as lone
surrogates (``surrogateescape``) so that each row, not the file, can be reported.

Byte offsets let a reader start at a record in the middle of a file (the Ray engine's
shards): ``CsvRecords(stream_at_offset, line=..., offset=..., row=...)``.
"""

from __future__ import annotations

import csv
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Iterator

READ_SIZE = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"
# How much of a broken record a report keeps (its raw text can be a whole file's tail).
RAW_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Record:
    row: int  # 1-based data row number (the header is row 0)
    line: int  # 1-based line where the record begins
    offset: int  # byte offset where the record begins
    fields: list[str]


@dataclass(frozen=True)
class BadRecord:
    """A record the CSV grammar rejects. It still counts as a row read (and reported)."""

    row: int
    line: int  # the line where the broken field began
    first_line: int  # the line where the record began
    offset: int
    reason: str
    fields: tuple[str, ...]  # the fields before the broken one (the id is usually among them)
    raw: str

    def message(self, path: str = "") -> str:
        where = f"{path}: " if path else ""
        return f"{where}line {self.line} (data row {self.row}): {self.reason}"

    def to_dict(self, header: list[str] | None = None) -> dict:
        named = dict(zip(header, self.fields)) if header else {}
        return {"row": self.row, "line": self.line, "first_line": self.first_line, "reason": self.reason,
                "fields": named or list(self.fields), "raw": self.raw[:RAW_LIMIT]}


def iter_lines(stream: BinaryIO, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) for each line of a binary stream, each line ending after ``\\n``."""
    pending = b""
    while True:
        chunk = stream.read(READ_SIZE)
        if not chunk:
            break
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            line = part + b"\n"
            yield offset, line
            offset += len(line)
    if pending:
        yield offset, pending


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class CsvRecords:
    """Iterate a CSV stream as ``Record`` and ``BadRecord`` items, in order.

    ``line``, ``offset`` and ``row`` say where the stream starts (all three from a
    ``Record`` of an earlier pass when seeking into a file). A stream at offset 0 has
    its UTF-8 BOM removed. The first item of a whole file is its header row.
    """

    def __init__(self, stream: BinaryIO, *, delimiter: str = ",", line: int = 1, offset: int = 0, row: int = 0):
        self.delimiter = delimiter
        self._lines = iter_lines(stream, offset)
        self._next_line = line
        self._row = row
        self._pushback: deque[tuple[int, int, str]] = deque()
        self._record: list[tuple[int, int, str]] = []  # (line, offset, text) of the record being read
        self._at_start = offset == 0

    def _source(self) -> Iterator[str]:
        """Lines for csv.reader; each is remembered until its record is complete."""
        while True:
            if self._pushback:
                item = self._pushback.popleft()
            else:
                got = next(self._lines, None)
                if got is None:
                    return
                offset, data = got
                if self._at_start:
                    self._at_start = False
                    if data.startswith(UTF8_BOM):
                        data, offset = data[len(UTF8_BOM):], offset + len(UTF8_BOM)
                item = (self._next_line, offset, _decode(data))
                self._next_line += 1
            self._record.append(item)
            yield item[2]

    def __iter__(self) -> Iterator[Record | BadRecord]:
        while True:
            reader = csv.reader(self._source(), delimiter=self.delimiter, strict=True)
            try:
                for fields in reader:
                    line, offset, _ = self._record[0]
                    self._record.clear()
                    yield Record(self._row, line, offset, fields)
                    self._row += 1
                return
            except csv.Error as e:
                yield self._broken(str(e))
                self._row += 1

    def _broken(self, error: str) -> BadRecord:
        """The bad record, and the lines after the broken field's first line put back to read again."""
        lines = self._record
        self._record = []
        text = "".join(t for _, _, t in lines)
        pos, fields, how = _broken_field(text, self.delimiter)
        # Which buffered line holds character ``pos``.
        index, seen = len(lines) - 1, 0
        if pos is not None:
            for i, (_, _, t) in enumerate(lines):
                if pos < seen + len(t):
                    index = i
                    break
                seen += len(t)
        field_line = lines[index][0]
        self._pushback.extendleft(reversed(lines[index + 1:]))
        if how == "open":
            reason = "a quoted field begins here and is never closed (unterminated quote)"
            if "limit" in error:
                reason += f"; csv stopped after {csv.field_size_limit():,} characters"
        elif how == "after-close" and lines[-1][0] > field_line:
            reason = (f"a quoted field begins here and runs on to line {lines[-1][0]}, where text follows a quote "
                      "(an unterminated quote?)")
        elif how == "after-close":
            reason = "a quoted field begins here, and text follows its closing quote (write a quote inside as \"\")"
        else:
            reason = f"the CSV cannot be read here ({error})"
        return BadRecord(row=self._row, line=field_line, first_line=lines[0][0], offset=lines[0][1], reason=reason,
                         fields=tuple(fields), raw="".join(t for _, _, t in lines[: index + 1]))


def _broken_field(text: str, delimiter: str) -> tuple[int | None, list[str], str | None]:
    """Where the quoted field that broke a record opened, the fields before it, and how it broke.

    A small copy of the csv grammar (quote ``"``, doubled quotes as escapes), enough to
    find the field that ran on: csv.Error only gives the line where reading stopped.
    """
    fields: list[str] = []
    field: list[str] = []
    opened: int | None = None
    state = "start"
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if state == "start":
            if c == '"':
                state, opened, field = "quoted", i, []
            elif c == delimiter:
                fields.append("")
            elif c in "\r\n":
                break
            else:
                state, field = "plain", [c]
        elif state == "plain":
            if c == delimiter:
                fields.append("".join(field))
                state = "start"
            elif c in "\r\n":
                break
            else:
                field.append(c)
        elif state == "quoted":
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    field.append('"')
                    i += 1
                else:
                    state = "closed"
            else:
                field.append(c)
        else:  # closed: only a delimiter or the end of the record may follow a closing quote
            if c == delimiter:
                fields.append("".join(field))
                field, opened, state = [], None, "start"
            elif c in "\r\n":
                break
            else:
                return opened, fields, "after-close"
        i += 1
    if state == "quoted":
        return opened, fields, "open"
    return None, fields, None
