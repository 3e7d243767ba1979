"""Bench options (no heavy imports here)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import UserInputError
from ..vocab import DEVICES, ENGINES


def parse_int_list(text: str | None, flag: str, *, low: int = 1, high: int | None = None) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); every value an integer in [low, high], no repeats."""
    if text is None:
        return ()
    values: list[int] = []
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        try:
            v = int(item)
        except ValueError:
            raise UserInputError(f"{flag} {text!r}: {item!r} is not an integer", hint=f"use e.g. {flag} 1,8,32") from None
        if v < low or (high is not None and v > high):
            span = f"between {low} and {high}" if high is not None else f"of {low} or more"
            raise UserInputError(f"{flag} {text!r}: {v} is out of range", hint=f"{flag} takes integers {span}")
        if v not in values:
            values.append(v)
    if not values:
        raise UserInputError(f"{flag} {text!r} names no value", hint=f"use e.g. {flag} 1,8,32")
    return tuple(values)


def parse_name_list(values: list[str] | str | None) -> tuple[str, ...]:
    """Names given as ``--variants a,b`` or repeated ``--variants a --variants b``."""
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class BenchOptions:
    """What to time and how long to time it.

    Timing: each contender runs in a block (a warm-up of ``warmup_seconds``, then
    repeats filling about ``block_seconds``); the cycle of blocks repeats at least
    ``min_cycles`` times and until every contender's per-cycle medians agree within
    ``target_spread`` (or ``max_cycles`` is reached). Blocks, not call-by-call
    interleaving: PyTorch's and ONNX Runtime's thread pools spin after work and slow
    each other when calls alternate (DESIGN.md, "Timing PyTorch and ONNX Runtime").
    """

    variants: tuple[str, ...] = ()  # empty: every variant suited to the device
    devices: tuple[str, ...] = ("auto",)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lens: tuple[int, ...] = (16, 128)
    torch_reference: bool = True
    torch_lowp: bool = True  # fp16 on CUDA, bf16 autocast on CPUs with AMX/avx512_bf16
    warmup_seconds: float = 0.25
    block_seconds: float = 0.5
    min_cycles: int = 3
    max_cycles: int = 5
    target_spread: float = 0.05
    min_repeats: int = 3
    max_repeats: int = 1000
    threads: int | None = None
    # ort or openvino for every variant; None: each variant's own engine (manifest).
    engine: str | None = None
    measure_peak: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_sizes", "seq_lens"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise UserInputError(f"{name} must be positive integers, got {values!r}", hint="e.g. --batch-sizes 1,8,32")
        object.__setattr__(self, "variants", tuple(self.variants))
        devices = tuple(self.devices) or ("auto",)
        object.__setattr__(self, "devices", devices)
        bad = [d for d in devices if d not in DEVICES]
        if bad:
            raise UserInputError(f"--device {','.join(bad)} is not known", hint=f"choose from {', '.join(DEVICES)} (comma-separated)")
        for name in ("warmup_seconds", "block_seconds"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise UserInputError(f"{name} must be a finite number of seconds >= 0, got {v!r}")
        if not 1 <= self.min_cycles <= self.max_cycles:
            raise UserInputError(
                f"cycles: need 1 <= min_cycles ({self.min_cycles}) <= max_cycles ({self.max_cycles})",
                hint="e.g. --cycles 3 --max-cycles 8",
            )
        if not 1 <= self.min_repeats <= self.max_repeats:
            raise UserInputError(f"repeats: need 1 <= min_repeats ({self.min_repeats}) <= max_repeats ({self.max_repeats})")
        if not (0 < self.target_spread < 1):
            raise UserInputError(f"target_spread must be between 0 and 1, got {self.target_spread!r}")
        if self.engine is not None and self.engine not in ENGINES:
            raise UserInputError(f"--engine {self.engine} is not known", hint=f"choose one of {', '.join(ENGINES)}")
        if self.threads is not None and self.threads < 1:
            raise UserInputError(f"--threads {self.threads} must be 1 or more", hint="leave it out to use every core")

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchOptions":
        """A smoke-sized run: short blocks, two cycles. Numbers from it are rough."""
        base = dict(warmup_seconds=0.02, block_seconds=0.05, min_cycles=2, max_cycles=2, min_repeats=3, max_repeats=50)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d
