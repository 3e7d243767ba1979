"""No row lost: the bad-row policy, the count check and the bad-row report, for both engines.

Every input row ends in exactly one place: the output (with a result, or with its
``error`` cell set when its text is empty, undecodable or its field count is wrong)
or the bad-row report (records the file format itself rejects, such as a CSV quote
that never closes). So ``rows read = rows written + rows reported`` must hold, and a
job whose counts disagree has lost rows: that is a failed check, never a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import CheckFailed, UserInputError
from ..vocab import BAD_ROW_POLICIES

# How many bad records an error message names (the report has them all).
NAMED = 5


@dataclass(frozen=True)
class BadRowPolicy:
    # fail: a record the format rejects stops the job (exit 2, nothing written);
    # report: it goes to the bad-row report and the job goes on.
    on_bad_rows: str = "fail"
    # Exit 1 when more than this fraction of the rows has no result (None: only when all fail).
    max_bad_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.on_bad_rows not in BAD_ROW_POLICIES:
            raise UserInputError(f"--on-bad-rows {self.on_bad_rows} is not known", hint=f"choose one of {', '.join(BAD_ROW_POLICIES)}")
        if self.max_bad_fraction is not None and not 0.0 <= float(self.max_bad_fraction) <= 1.0:
            raise UserInputError(f"--max-bad-fraction {self.max_bad_fraction} must be between 0 and 1")

    def refuse(self, bad: list[dict[str, Any]], source: str) -> None:
        """Raise (exit 2) when ``bad`` is not empty and the policy is ``fail``."""
        if not bad or self.on_bad_rows != "fail":
            return
        named = "; ".join(f"line {b['line']} (data row {b['row']}): {b['reason']}" for b in bad[:NAMED])
        more = f" (and {len(bad) - NAMED} more)" if len(bad) > NAMED else ""
        raise UserInputError(f"{source}: {len(bad)} record(s) that the file format rejects: {named}{more}",
                             hint="fix the quoting at that line, or pass --on-bad-rows report to write such rows to a "
                                  "bad-row report and go on")


@dataclass(frozen=True)
class RowCounts:
    read: int  # rows the reader saw (records + rejected records)
    written: int  # rows in the output (with a result or an error cell)
    reported: int  # rows in the bad-row report
    ok: int  # rows with a result

    @property
    def without_result(self) -> int:
        return self.read - self.ok

    def to_dict(self) -> dict[str, int]:
        return {"read": self.read, "written": self.written, "reported": self.reported, "ok": self.ok,
                "without_result": self.without_result}


def check_counts(counts: RowCounts) -> None:
    """Raise CheckFailed unless every row read was written or reported exactly once."""
    if counts.read != counts.written + counts.reported:
        raise CheckFailed(f"rows were lost: {counts.read} read but {counts.written} written + {counts.reported} reported "
                          f"= {counts.written + counts.reported}",
                          hint="this is a bug in onnxforge batch; please report it with the input's shape")


def failures(counts: RowCounts, policy: BadRowPolicy) -> list[str]:
    """Why the job failed (exit 1): every row failed, or more than --max-bad-fraction did."""
    out = []
    if counts.read and counts.ok == 0:
        out.append(f"every row failed: none of the {counts.read} row(s) got a result")
    elif policy.max_bad_fraction is not None and counts.read:
        fraction = counts.without_result / counts.read
        if fraction > policy.max_bad_fraction:
            flag = "--strict" if policy.max_bad_fraction == 0 else f"--max-bad-fraction {policy.max_bad_fraction:g}"
            out.append(f"{counts.without_result} of {counts.read} row(s) ({fraction:.1%}) got no result, more than {flag} allows")
    return out


def report_path(out: Path) -> Path:
    """Where the single-file output's bad-row report goes: beside it."""
    out = Path(out)
    return out.with_name(out.name + ".bad-rows.jsonl")


def write_report(target: Path, bad: Iterable[dict[str, Any]]) -> int:
    """Write the bad-row report atomically as JSON Lines; returns how many rows it holds."""
    import orjson

    from ..artifact import atomic_path

    count = 0
    with atomic_path(Path(target)) as tmp, open(tmp, "wb") as f:
        for record in bad:
            f.write(orjson.dumps(record) + b"\n")
            count += 1
    return count
