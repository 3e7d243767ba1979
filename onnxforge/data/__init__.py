"""Real text shipped with onnxforge for goldens, validation and benchmarks.

``debian_descriptions.csv`` holds 2,000 English package descriptions from Debian 12
("bookworm") main, taken from the ``Translation-en`` index that ``apt-get update``
downloads: the first paragraph of each long description, 30-600 characters, shuffled
with seed 0. Each text is part of its package's Debian metadata and is distributed
under that package's license (see /usr/share/doc/<package>/copyright on Debian).
Columns: package, summary, description.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

SAMPLE_FILE = "debian_descriptions.csv"


@lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, str, str], ...]:
    with resources.files(__name__).joinpath(SAMPLE_FILE).open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return tuple((r[0], r[1], r[2]) for r in reader)


def sample_texts(n: int | None = None, *, offset: int = 0) -> list[str]:
    """Real descriptions, in the file's (shuffled) order."""
    rows = _rows()[offset:]
    return [r[2] for r in (rows if n is None else rows[:n])]
