"""Structural CSV reading: broken quotes are named by the line where the field began, and no row is swallowed."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge.batch.csv_rows import BadRecord, CsvRecords, Record


def items(data: str | bytes, **kw):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return list(CsvRecords(io.BytesIO(raw), **kw))


def test_unterminated_quote_is_named_and_the_rows_after_it_are_kept():
    # The file: row 2 opens a quote that never closes. The lenient csv module
    # returns 2 rows; here all 5 are accounted for and the broken one names line 3.
    data = 'id,text\n1,one\n2,"never closes\n3,three\n4,four\n5,five\n'
    assert len(list(csv.reader(io.StringIO(data)))) == 3  # header + 2: the loss this module exists for
    got = items(data)
    header, rows = got[0], got[1:]
    assert header.fields == ["id", "text"]
    assert len(rows) == 5
    bad = [r for r in rows if isinstance(r, BadRecord)]
    assert len(bad) == 1
    assert bad[0].line == 3 and bad[0].row == 2 and bad[0].fields == ("2",)
    assert "never closed" in bad[0].reason
    assert [r.fields for r in rows if isinstance(r, Record)] == [["1", "one"], ["3", "three"], ["4", "four"], ["5", "five"]]
    assert [r.row for r in rows] == [1, 2, 3, 4, 5]


def test_the_line_named_is_where_the_field_began_not_where_reading_stopped():
    # The record starts on line 2 with a valid multi-line field; the broken field opens on line 4.
    data = 'id,a,b\n1,"multi\nline ok","opens here\nand runs\non\n'
    bad = [r for r in items(data) if isinstance(r, BadRecord)]
    assert len(bad) == 1
    assert bad[0].first_line == 2 and bad[0].line == 3
    assert bad[0].fields == ("1", "multi\nline ok")


def test_a_quote_that_closes_lines_later_is_caught():
    # The run-on field ends at a later quote followed by text: strict parsing stops there.
    data = 'id,text\n1,"opens\n2,two\n3,"quoted, text",x\n4,four\n'
    got = items(data)[1:]
    bad = [r for r in got if isinstance(r, BadRecord)]
    assert len(bad) == 1 and bad[0].line == 2 and "runs on to line 4" in bad[0].reason
    assert [r.fields[0] for r in got if isinstance(r, Record)] == ["2", "3", "4"]


def test_text_after_a_closing_quote_on_one_line():
    got = items('id,text\n1,"bad"x\n2,ok\n')[1:]
    assert isinstance(got[0], BadRecord) and got[0].line == 2 and 'write a quote inside as ""' in got[0].reason
    assert isinstance(got[1], Record) and got[1].fields == ["2", "ok"]


def test_offsets_and_lines_let_a_reader_start_mid_file():
    data = '\ufeffid,text\r\n1,"a\r\nb"\r\n2,"x"y\r\n3,"c ""q"""\r\n4,d\r\n'.encode("utf-8")
    whole = items(data)
    assert whole[0].fields == ["id", "text"] and whole[0].offset == 3  # after the BOM
    for start in whole[1:]:
        first_line = start.first_line if isinstance(start, BadRecord) else start.line
        stream = io.BytesIO(data)
        stream.seek(start.offset)
        tail = list(CsvRecords(stream, line=first_line, offset=start.offset, row=start.row))
        assert tail == whole[whole.index(start):]


def test_undecodable_bytes_survive_per_row():
    got = items(b"id,text\n1,caf\xe9\n2,ok\n")
    assert got[1].fields[1] == "caf\udce9" and got[2].fields == ["2", "ok"]


cells = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\u00e9')), max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=8))
def test_well_formed_csv_reads_as_the_csv_module_reads_it(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    got = items(buf.getvalue())
    assert all(isinstance(r, Record) for r in got)
    assert [r.fields for r in got] == list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
