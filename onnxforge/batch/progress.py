"""The batch progress bar (both engines): rows done, rows/s and ETA, on stderr.

The local engine knows its progress in bytes of input read (it streams and does not
count rows first); the Ray engine in rows (its plan counts them). Either way the
bar's fraction and ETA come from ``done / total`` and the rate shown is rows per
second. Off when stderr is not a terminal (CI logs stay clean) or with --no-progress.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

# update(rows_done, done, total): done/total in the engine's unit (bytes or rows).
Update = Callable[[int, int, int], None]


def _noop(rows: int, done: int, total: int) -> None:
    return None


def rows_rate(rows: int, elapsed: float | None) -> str:
    if not elapsed:
        return "- rows/s"
    return f"{rows / elapsed:,.0f} rows/s"


@contextmanager
def batch_progress(console, enabled: bool = True, label: str = "batch") -> Iterator[Update]:
    """Yield an ``update(rows_done, done, total)`` callable that draws a rich bar on ``console``."""
    if not enabled or console is None or not console.is_terminal:
        yield _noop
        return
    from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            return Text(rows_rate(task.fields.get("rows", 0), task.elapsed), style="progress.data.speed")

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[rows]:,} rows"),
                  RowsPerSecond(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, rows=0)

        def update(rows: int, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None, rows=rows)

        yield update
