"""The batch progress bar: rows, rows/s and ETA on a terminal; silent elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from onnxforge.batch.progress import batch_progress, rows_rate


def test_bar_shows_rows_rate_and_eta_on_a_terminal():
    console = Console(file=io.StringIO(), force_terminal=True, width=140)
    with batch_progress(console) as update:
        for done in (0, 250, 500):
            update(done, done, 1000)
    drawn = console.file.getvalue()
    assert "500 rows" in drawn and "rows/s" in drawn and "ETA" in drawn and "50%" in drawn


def test_bar_is_silent_when_stderr_is_not_a_terminal_or_disabled():
    for console, enabled in ((Console(file=io.StringIO(), force_terminal=False), True),
                             (Console(file=io.StringIO(), force_terminal=True), False)):
        with batch_progress(console, enabled) as update:
            update(10, 10, 10)
        assert console.file.getvalue() == ""


def test_rate_text():
    assert rows_rate(1000, 2.0) == "500 rows/s"
    assert rows_rate(5, None) == "- rows/s"
