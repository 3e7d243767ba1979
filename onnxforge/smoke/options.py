"""Smoke options. Outputs are judged by the parity table (``onnxforge.parity``), per variant precision."""

from __future__ import annotations

from dataclasses import dataclass
from ..errors import UserInputError
from ..parity.tolerance import Tolerance
from ..textbatch import is_blank
from ..vocab import DEVICES

# Short, Unicode, empty: each exercises a different tokenizer path. The long text
# (built at run time from the sample) checks truncation to the model's maximum.
BUILTIN_SENTENCES = (
    "Hello world.",
    "ONNX Runtime runs the exported encoder with the tokenizer it was trained with.",
    "Grüße aus Köln: naïve café, Œuvre, 東京, Ελληνικά, emoji 🚀.",
    "",
)


@dataclass(frozen=True)
class SmokeOptions:
    variant: str | None = None
    device: str = "cpu"
    # Extra sentences to run, beside the built-in ones.
    texts: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    iterations: int = 30
    warmup: int = 3
    # Stop timing one batch size after this long (at least min_iterations runs).
    max_seconds: float = 5.0
    min_iterations: int = 5
    # Compare with the PyTorch model rebuilt from the manifest, when it can be.
    torch: bool = True
    record: bool = True
    max_length: int | None = None
    # None: the parity default for the variant's precision (parity.default_tolerance).
    tolerance: Tolerance | None = None
    # ort or openvino; None: the engine the variant records.
    engine: str | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        object.__setattr__(self, "texts", tuple(self.texts))
        sizes = tuple(int(b) for b in self.batch_sizes)
        if any(b < 1 or b > 4096 for b in sizes):
            raise UserInputError(f"--batch-sizes {','.join(map(str, sizes))}: each must be between 1 and 4096")
        object.__setattr__(self, "batch_sizes", sizes)
        for name in ("iterations", "min_iterations"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or not self.max_seconds > 0:
            raise UserInputError("--warmup must be >= 0 and the time budget positive")
        for i, t in enumerate(self.texts):
            if not isinstance(t, str):
                raise UserInputError(f"--text number {i + 1} is not a string")
            if is_blank(t):
                raise UserInputError(f"--text number {i + 1} is empty (only whitespace or control characters: {t[:20]!r})",
                                     hint="pass a sentence with words in it, or leave --text out")
