"""What validate feeds the model: seeded random batches at many shapes, and real text.

Random groups use shapes the export never traced (it traces batch 2 x sequence 16 and
checks 3 x 37): single rows, odd lengths, the model's maximum, and batches whose rows
are right-padded to different lengths. Real text comes from the user's file or the
built-in sample, tokenized with the artifact's own tokenizer.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..spec import ModelSpec

BATCHES = (1, 3, 8)
SEQUENCES = (1, 7, 33, 128)
# Batch 8 stops at 128 tokens: the full cross product at the maximum length (8 x 512
# for BERT-base-sized models) would dominate the run time without testing anything
# that 1 x max and 3 x max (with padded rows) do not.
MAX_LENGTH_BATCHES = (1, 3)


def default_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """The shape plan: every batch x {1, 7, 33, 128} plus {1, 3} x the model maximum."""
    top = spec.max_positions
    plan: list[tuple[int, int]] = []
    for batch in BATCHES:
        for seq in SEQUENCES:
            if not (batch == 8 and seq == 1):  # 8 rows of one token add nothing to 3 x 1
                plan.append((batch, min(seq, top)))
    plan += [(b, top) for b in MAX_LENGTH_BATCHES]
    seen: set[tuple[int, int]] = set()
    return [s for s in sorted(plan, key=lambda bs: (bs[1], bs[0])) if not (s in seen or seen.add(s))]


@dataclass
class InputGroup:
    """One shape group: a name for reports and one or more batches of feeds."""

    name: str
    kind: str  # "random" or "text"
    batches: list[dict[str, np.ndarray]]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(int(b["input_ids"].shape[0]) for b in self.batches)

    @property
    def tokens(self) -> int:
        total = 0
        for b in self.batches:
            mask = b.get("attention_mask")
            total += int(mask.sum()) if mask is not None else int(b["input_ids"].size)
        return total

    def describe(self) -> dict[str, Any]:
        lengths = [int(x) for b in self.batches for x in _lengths(b)]
        return {
            "name": self.name,
            "kind": self.kind,
            "batches": len(self.batches),
            "samples": self.samples,
            "tokens": self.tokens,
            "shapes": sorted({tuple(int(d) for d in b["input_ids"].shape) for b in self.batches}),
            "min_length": min(lengths) if lengths else 0,
            "max_length": max(lengths) if lengths else 0,
            **self.detail,
        }


def _lengths(feeds: dict[str, np.ndarray]) -> np.ndarray:
    mask = feeds.get("attention_mask")
    if mask is None:
        return np.full(feeds["input_ids"].shape[0], feeds["input_ids"].shape[1])
    return mask.sum(axis=1)


def random_groups(spec: ModelSpec, shapes: list[tuple[int, int]], seed: int) -> list[InputGroup]:
    from ..inputs import random_inputs

    groups = []
    for i, (batch, seq) in enumerate(shapes):
        if seq > spec.max_positions:
            raise UserInputError(
                f"shape {batch}x{seq} is longer than the model's {spec.max_positions} positions",
                hint=f"use sequences of at most {spec.max_positions}",
            )
        # A distinct, reproducible stream per group: same seed, same ids, every run.
        feeds = random_inputs(spec, batch, seq, seed=seed * 100_003 + i)
        groups.append(InputGroup(f"random {batch}x{seq}", "random", [feeds], {"batch": batch, "sequence": seq}))
    return groups


# -- real text -------------------------------------------------------------------------


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserInputError(
            f"--text {path} is not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} cannot be decoded",
            hint=f"convert it first, e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`",
        ) from None


def read_texts(path: Path, column: str | None, limit: int) -> tuple[list[str], int]:
    """Texts from a .txt (one a line) or a CSV/TSV column; returns (texts[:limit], total)."""
    path = Path(path)
    text = _decode(path)
    is_table = path.suffix.lower() in (".csv", ".tsv") or column is not None
    if not is_table:
        texts = [line for line in text.splitlines() if line.strip()]
        if not texts:
            raise UserInputError(f"--text {path} holds no text (it is empty or only blank lines)",
                                 hint="put one text on each line")
        return texts[:limit], len(texts)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = [c for c in (reader.fieldnames or []) if c is not None]
    except csv.Error as e:
        raise UserInputError(f"--text {path} is not a valid CSV: {e}") from None
    if not columns:
        raise UserInputError(f"--text {path} is empty: no header row", hint="a CSV needs a header row naming its columns")
    if column is None:
        if len(columns) != 1:
            raise UserInputError(
                f"--text {path} is a CSV with {len(columns)} columns; which one holds the text?",
                hint=f"pass --column NAME, one of: {', '.join(columns)}",
            )
        column = columns[0]
    if column not in columns:
        raise UserInputError(
            f"--text {path} has no column '{column}'",
            hint=f"its columns are: {', '.join(columns)}",
        )
    try:
        texts = [row[column] for row in reader if row.get(column) and row[column].strip()]
    except csv.Error as e:
        raise UserInputError(f"--text {path} is not a valid CSV: {e}") from None
    if not texts:
        raise UserInputError(f"--text {path} has no non-empty value in column '{column}'",
                             hint="pass the column that holds the texts")
    return texts[:limit], len(texts)


def text_group(spec: ModelSpec, tokenizer, texts: list[str], batch_size: int, source: dict[str, Any],
               max_length: int | None = None) -> InputGroup:
    """Texts in file order, ``batch_size`` per batch: rows of one batch have their own
    lengths, so every batch is right-padded like a real serving batch. ``max_length``:
    the model pipeline's truncation (default: the position table)."""
    from ..textbatch import encode_texts

    batches = [encode_texts(tokenizer, texts[i:i + batch_size], spec, max_length)
               for i in range(0, len(texts), batch_size)]
    return InputGroup(f"text ({len(texts)} texts)", "text", batches, {"texts": len(texts), **source})
