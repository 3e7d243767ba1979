"""Options of ``onnxforge batch``: the text column, output format, batch size and runtime settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..vocab import DEVICES
from .bad_rows import BadRowPolicy

FORMATS = ("csv", "jsonl", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class BatchOptions:
    column: str = "text"
    # csv, jsonl or parquet; None: from the output's suffix.
    format: str | None = None
    batch_size: int = 32
    # Rows read, tokenized and sorted by length together (bounds memory).
    chunk_rows: int = 4096
    # Input columns to carry to the output; None: all but the text column.
    keep: tuple[str, ...] | None = None
    normalize: bool = True
    delimiter: str = ","
    variant: str | None = None
    device: str = "cpu"
    max_length: int | None = None
    threads: int | None = None
    # Inference engine (ort or openvino); None: the engine the variant records.
    runtime_engine: str | None = None
    # The model's prompt put in front of every text (sentence-transformers' prompt_name);
    # None: the model's default prompt, if it has one, as SentenceTransformer.encode does.
    prompt_name: str | None = None
    # What a record the input format rejects (a CSV quote that never closes) does:
    # "fail" stops the job (exit 2), "report" writes it to the bad-row report.
    on_bad_rows: str = "fail"
    # Exit 1 when more than this fraction of the rows gets no result (None: only when all fail).
    max_bad_fraction: float | None = None

    def __post_init__(self) -> None:
        if not self.column:
            raise UserInputError("--column must name the CSV column that holds the texts")
        if self.format is not None and self.format not in FORMATS:
            raise UserInputError(f"--format {self.format} is not known", hint=f"choose one of {', '.join(FORMATS)}")
        if not 1 <= int(self.batch_size) <= 4096:
            raise UserInputError(f"--batch-size {self.batch_size} must be between 1 and 4096")
        if int(self.chunk_rows) < int(self.batch_size):
            raise UserInputError(f"chunk_rows ({self.chunk_rows}) must be at least --batch-size ({self.batch_size})")
        if len(self.delimiter) != 1 or self.delimiter in "\r\n\"":
            raise UserInputError(f"--delimiter {self.delimiter!r} must be one character other than a quote or newline")
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        if self.keep is not None:
            object.__setattr__(self, "keep", tuple(self.keep))
        BadRowPolicy(self.on_bad_rows, self.max_bad_fraction)  # raises on a bad --on-bad-rows or fraction

    @property
    def bad_rows(self) -> BadRowPolicy:
        return BadRowPolicy(self.on_bad_rows, self.max_bad_fraction)

    def output_format(self, out: Path) -> str:
        if self.format:
            return self.format
        fmt = SUFFIX_FORMATS.get(Path(out).suffix.lower())
        if fmt is None:
            raise UserInputError(f"cannot tell the output format from {Path(out).name}",
                                 hint="name the file .csv, .jsonl or .parquet, or pass --format")
        return fmt
