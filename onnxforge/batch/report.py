"""The batch report: rows written, rows without a result (each listed by number), timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bad_rows import RowCounts

# How many error row numbers a report lists (all are counted).
LISTED_ROWS = 50


@dataclass
class BatchReport:
    input: str
    output: str
    format: str
    kind: str
    variant: str
    device: str
    rows: int = 0
    ok_rows: int = 0
    empty_rows: list[int] = field(default_factory=list)
    empty_count: int = 0
    undecodable_rows: list[int] = field(default_factory=list)
    undecodable_count: int = 0
    truncated_count: int = 0
    ragged_rows: list[int] = field(default_factory=list)
    ragged_count: int = 0
    result_columns: list[str] = field(default_factory=list)
    # Records the CSV grammar rejected (--on-bad-rows report), as the bad-row report has them.
    bad: list[dict[str, Any]] = field(default_factory=list)
    bad_rows_path: str | None = None
    written: int = 0  # rows the writer wrote (counted apart from ``rows``, for the count check)
    seconds: float = 0.0
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return self.empty_count + self.undecodable_count + self.ragged_count + len(self.bad)

    def counts(self) -> RowCounts:
        """Rows read (written or rejected), written, reported, and with a result."""
        return RowCounts(read=self.rows + len(self.bad), written=self.written, reported=len(self.bad), ok=self.ok_rows)

    @property
    def passed(self) -> bool:
        """True when every row got a result."""
        return self.error_count == 0

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        found = [(self.empty_count, "empty", self.empty_rows), (self.undecodable_count, "undecodable", self.undecodable_rows),
                 (self.ragged_count, "ragged", self.ragged_rows),
                 (len(self.bad), "rejected (see the bad-row report)", [b["row"] for b in self.bad[:LISTED_ROWS]])]
        return [f"{count} {what} row(s) without a result (data rows {', '.join(map(str, rows))}"
                f"{' ...' if count > len(rows) else ''})" for count, what, rows in found if count]

    def summary(self) -> str:
        """One line: rows written, rows without a result, speed."""
        errors = f", {self.error_count} without a result" if self.error_count else ""
        return f"{self.rows:,} rows to {self.format}{errors}, {self.rows_per_s:,.0f} rows/s"

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "input": self.input,
            "output": self.output,
            "format": self.format,
            "kind": self.kind,
            "variant": self.variant,
            "device": self.device,
            "rows": self.rows,
            "ok_rows": self.ok_rows,
            "empty": {"count": self.empty_count, "rows": self.empty_rows},
            "undecodable": {"count": self.undecodable_count, "rows": self.undecodable_rows},
            "truncated_rows": self.truncated_count,
            "ragged": {"count": self.ragged_count, "rows": self.ragged_rows},
            "reported": {"count": len(self.bad), "rows": [b["row"] for b in self.bad[:LISTED_ROWS]],
                         "report": self.bad_rows_path},
            "counts": self.counts().to_dict(),
            "result_columns": self.result_columns,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }
