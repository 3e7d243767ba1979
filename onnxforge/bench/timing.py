"""Block timing: each contender in its own block, the cycle of blocks repeated.

Why blocks: ONNX Runtime's and PyTorch's intra-op thread pools both spin-wait after a
call; alternating calls between them slowed PyTorch fp32 at batch 1 from ~14 ms to
~44 ms on the 2-core development machine. A block (warm-up, then many calls of one
contender) lets the other pool go idle first. Why cycles: a machine's speed drifts
(other jobs, turbo, thermal), so the cycle of blocks is repeated, in a rotated order,
until each contender's per-cycle medians agree; the pooled median and the per-cycle
medians are both kept, so a reader can see the noise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Every timed call of one contender (seconds), by cycle."""

    repeats: int = 0
    warmup_calls: int = 0
    cycles: list[list[float]] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return [t for c in self.cycles for t in c]

    @property
    def cycle_medians(self) -> list[float]:
        return [statistics.median(c) for c in self.cycles if c]

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-cycle medians: 0.05 means they agree within 5%."""
        meds = self.cycle_medians
        if len(meds) < 2:
            return math.inf
        return (max(meds) - min(meds)) / statistics.median(meds)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), without importing numpy."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_blocks(
    fns: dict[str, Callable[[], object]],
    *,
    warmup_seconds: float,
    block_seconds: float,
    min_cycles: int,
    max_cycles: int,
    target_spread: float,
    min_repeats: int,
    max_repeats: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Timing]:
    """Time each zero-argument callable in blocks; return every sample by cycle.

    Repeats per block are chosen once, from the first warm-up, so a block lasts about
    ``block_seconds`` (at least ``min_repeats`` calls). Each later block warms up again,
    briefly, because the previous block belonged to another contender.
    """
    keys = list(fns)
    timings = {k: Timing() for k in keys}
    for cycle in range(max_cycles):
        order = keys[cycle % len(keys):] + keys[: cycle % len(keys)] if keys else []
        for key in order:
            fn, timing = fns[key], timings[key]
            if progress:
                progress(f"cycle {cycle + 1}: {key}")
            warm: list[float] = []
            start = time.perf_counter()
            # First block: at least 2 calls (the first one allocates); later blocks only
            # need the caches and thread pool back, so 1 call for slow contenders.
            budget, least = (warmup_seconds, 2) if cycle == 0 else (warmup_seconds / 2, 1)
            while len(warm) < least or (time.perf_counter() - start < budget and len(warm) < max_repeats):
                warm.append(_timed(fn))
            timing.warmup_calls += len(warm)
            if not timing.repeats:
                estimate = statistics.median(warm[1:] or warm) or 1e-6
                timing.repeats = max(min_repeats, min(max_repeats, math.ceil(block_seconds / estimate)))
            timing.cycles.append([_timed(fn) for _ in range(timing.repeats)])
        if cycle + 1 >= min_cycles and all(t.spread <= target_spread for t in timings.values()):
            break
    return timings
