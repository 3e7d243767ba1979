"""``onnxforge smoke``: does this artifact, on this machine and device, compute what it should?

What a release CI job runs on a GPU runner. One run checks:

- the tokenizer still produces the golden inputs recorded at export time (catches a
  changed tokenizer.json or a tokenizers upgrade that tokenizes differently);
- the model on the golden inputs gives the golden PyTorch outputs, within tolerances
  that depend on the variant's precision;
- built-in and given sentences (empty, non-ASCII, longer than the model's maximum)
  run, give finite numbers, and give the same result alone as in a padded batch
  (catches padding-side bugs in fused attention);
- the same sentences against the PyTorch model rebuilt from the manifest, when it can be;
- latency p50/p95/p99 and throughput per batch size on real text.

A CUDA request that ends on CPU fails at load (``CheckFailed``), before any of this.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..compare import compare_arrays, per_sample_rows
from ..errors import CheckFailed, OnnxforgeError, UserInputError
from ..runners import DEVICES
from ..spec import OutputSpec
from ..textbatch import is_blank

# Short, Unicode, empty: each exercises a different tokenizer path. The long text
# (built at run time from the sample) checks truncation to the model's maximum.
BUILTIN_SENTENCES = (
    "Hello world.",
    "ONNX Runtime runs the exported encoder with the tokenizer it was trained with.",
    "Grüße aus Köln: naïve café, Œuvre, 東京, Ελληνικά, emoji 🚀.",
    "",
)


@dataclass(frozen=True)
class Tolerance:
    """Pass rule for one output on real tokens: ``|onnx - ref| <= atol + rtol * |ref|``
    element-wise (``atol=None`` skips it), per-sample cosine >= ``min_cosine``, and for
    ``*logits*`` outputs the share of agreeing argmax >= ``min_argmax``."""

    atol: float | None
    rtol: float
    min_cosine: float | None
    min_argmax: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Same figures as validate's defaults (docs/validate.md), measured on MiniLM vs PyTorch
# fp32: fp32 worst element 5e-6 (fused or not); fp16 worst element 7.5e-3, worst cosine
# 0.999998; int8 (dynamic per-channel) worst cosine 0.971, elements unbounded.
TOLERANCES = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, min_cosine=0.99999, min_argmax=0.999),
    "fp16": Tolerance(atol=5e-2, rtol=1e-2, min_cosine=0.999, min_argmax=0.99),
    "int8": Tolerance(atol=None, rtol=0.0, min_cosine=0.95, min_argmax=0.9),
}


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
    tolerance: Tolerance | None = None

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


@dataclass
class SmokeReport:
    artifact: str
    variant: str
    precision: str
    requested_device: str
    device: str
    providers: list[str]
    tolerance: dict[str, Any]
    checks: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    pytorch: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        return [f"{c['name']}: {c.get('reason') or 'failed'}" for c in self.checks if not c["passed"]]

    def summary(self) -> str:
        parts = [f"{sum(1 for c in self.checks if c.get('passed'))}/{len(self.checks)} checks"] if self.checks else []
        parts += [f"batch {row.get('batch_size')} p50 {row['p50_ms']:.1f} ms" for row in self.latency
                  if isinstance(row, dict) and row.get("p50_ms") is not None]
        return ", ".join(parts) or ("passed" if self.passed else "smoke test failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "artifact": self.artifact,
            "variant": self.variant,
            "precision": self.precision,
            "requested_device": self.requested_device,
            "device": self.device,
            "providers": self.providers,
            "tolerance": self.tolerance,
            "checks": self.checks,
            "failures": self.failures(),
            "pytorch": self.pytorch,
            "latency": self.latency,
            "runtime": self.runtime,
            "seconds": self.seconds,
        }


# -- comparison ---------------------------------------------------------------------
def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def compare_output(expected: np.ndarray, actual: np.ndarray, output: OutputSpec, mask: np.ndarray | None,
                   tol: Tolerance) -> dict[str, Any]:
    """Metrics and verdict for one output, on real-token positions."""
    if expected.shape != actual.shape:
        return {"passed": False, "reason": f"shape {list(actual.shape)}, expected {list(expected.shape)}"}
    diff = compare_arrays(expected, actual, output, mask)
    exp = np.concatenate(per_sample_rows(expected, output, mask) or [np.zeros(0)])
    act = np.concatenate(per_sample_rows(actual, output, mask) or [np.zeros(0)])
    finite = bool(np.isfinite(act).all())
    reasons = []
    if not finite:
        reasons.append("non-finite values")
    excess = None
    if tol.atol is not None and exp.size:
        err = np.abs(act - exp)
        allowed = tol.atol + tol.rtol * np.abs(exp)
        excess = float((err - allowed).max())
        if not excess <= 0:
            worst = int(np.argmax(err - allowed))
            reasons.append(f"max abs {diff.max_abs:.3g} (element {worst}: {act[worst]:.6g} vs {exp[worst]:.6g}) "
                           f"exceeds atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|")
    if tol.min_cosine is not None and not diff.min_cosine >= tol.min_cosine:
        reasons.append(f"min cosine {diff.min_cosine:.6f} < {tol.min_cosine}")
    if tol.min_argmax is not None and diff.argmax_agreement is not None and not diff.argmax_agreement >= tol.min_argmax:
        reasons.append(f"argmax agreement {diff.argmax_agreement:.3f} < {tol.min_argmax}")
    metrics = {k: _finite(v) if isinstance(v, float) else v for k, v in diff.to_dict().items()}
    return {"passed": not reasons, "reason": "; ".join(reasons) or None, **metrics}


def _check(name: str, passed: bool, reason: str | None = None, **detail: Any) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "reason": None if passed else reason, **detail}


# -- the steps ----------------------------------------------------------------------
def _golden_checks(runtime, tol: Tolerance) -> list[dict[str, Any]]:
    meta = runtime.artifact.manifest.get("goldens")
    if not meta:
        return [_check("goldens", False, "the manifest records no golden outputs; re-export with a tokenizer")]
    path = runtime.artifact.root / meta.get("file", "goldens.npz")
    if not path.is_file():
        return [_check("goldens", False, f"{path.name} is listed in the manifest but missing")]
    try:
        with np.load(path, allow_pickle=False) as data:
            golden = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        return [_check("goldens", False, f"{path.name} cannot be read ({e})")]
    texts = list(meta.get("texts") or [])
    inputs = {k[len("input."):]: v for k, v in golden.items() if k.startswith("input.")}
    checks = []
    encoded = runtime.encode(texts) if texts else {}
    same = bool(texts) and set(encoded) == set(inputs) and all(
        encoded[k].shape == inputs[k].shape and np.array_equal(encoded[k], inputs[k]) for k in inputs
    )
    checks.append(_check(
        "goldens.tokenizer", same,
        "the tokenizer no longer produces the token ids recorded at export time "
        f"(tokenizer.json or the tokenizers library changed, or --max-length {runtime.max_length} cuts the texts)",
        texts=len(texts), max_length=runtime.max_length,
    ))
    missing = [n for n in runtime.spec.input_names if n not in inputs]
    if missing:
        checks.append(_check("goldens.inputs", False, f"{path.name} lacks input.{missing[0]}"))
        return checks
    actual = runtime.run(inputs)
    mask = inputs.get("attention_mask")
    for out in runtime.spec.outputs:
        key = f"output.{out.name}"
        if key not in golden:
            checks.append(_check(f"goldens.{out.name}", False, f"{path.name} has no {key}"))
            continue
        result = compare_output(golden[key].astype(np.float32), actual[out.name], out, mask, tol)
        checks.append(_check(f"goldens.{out.name}", result.pop("passed"), result.pop("reason"), **result))
    return checks


def _sentences(runtime, extra: tuple[str, ...]) -> tuple[list[str], int]:
    """Built-in sentences, the user's, and one text longer than the model's maximum."""
    from ..data import sample_texts

    texts = list(BUILTIN_SENTENCES) + list(extra)
    long_text = ""
    pieces = iter(sample_texts())
    while not runtime.tokenize([long_text])[0].overflowing:
        long_text = (long_text + " " + next(pieces)).strip()
    texts.append(long_text)
    return texts, len(texts) - 1


def _sentence_checks(runtime, texts: list[str], long_index: int, tol: Tolerance) -> tuple[list[dict], dict, Any]:
    enc = runtime.encode_batch(texts)
    batched = runtime.run(enc.feeds)
    checks = []
    bad = [n for n, v in batched.items() if not np.isfinite(v).all()]
    checks.append(_check("sentences.finite", not bad, f"non-finite values in {bad}", texts=len(texts)))
    trunc_ok = bool(enc.truncated[long_index]) and int(enc.lengths[long_index]) == runtime.max_length
    checks.append(_check("sentences.truncation", trunc_ok,
                         f"a text longer than {runtime.max_length} tokens gave {int(enc.lengths[long_index])} tokens",
                         max_length=runtime.max_length))
    # Each text alone (no padding) must match its row of the padded batch.
    singles: dict[str, list[np.ndarray]] = {n: [] for n in runtime.spec.output_names}
    for text in texts:
        out = runtime.predict([text])
        for n, v in out.items():
            singles[n].append(v)
    mask = enc.mask
    for out in runtime.spec.outputs:
        rows = singles[out.name]
        if out.is_token_level and out.axes[1] == "sequence":
            padded = np.zeros_like(batched[out.name])
            for i, r in enumerate(rows):
                padded[i, : r.shape[1]] = r[0]
            alone = padded
        else:
            alone = np.concatenate(rows, axis=0)
        result = compare_output(alone, batched[out.name], out, mask, tol)
        checks.append(_check(f"batch_consistency.{out.name}", result.pop("passed"), result.pop("reason"), **result))
    return checks, batched, enc


def _pytorch_checks(runtime, enc, batched: dict[str, np.ndarray], tol: Tolerance) -> tuple[list[dict], dict]:
    """Compare with the PyTorch model the manifest names; skipped (with why) when it cannot be rebuilt."""
    from ..sources import SourceRef, load_source

    try:
        from ..runners import run_torch

        loaded = load_source(SourceRef.from_dict(runtime.artifact.manifest.get("source") or {}))
    except ImportError as e:
        return [], {"ran": False, "reason": f"PyTorch is not importable here ({e})"}
    except (OnnxforgeError, TypeError, OSError) as e:
        return [], {"ran": False, "reason": f"the PyTorch model cannot be rebuilt: {getattr(e, 'message', e)}"}
    started = time.perf_counter()
    expected = run_torch(loaded.module, runtime.spec, enc.feeds)
    checks = []
    for out in runtime.spec.outputs:
        result = compare_output(expected[out.name], batched[out.name], out, enc.mask, tol)
        checks.append(_check(f"pytorch.{out.name}", result.pop("passed"), result.pop("reason"), **result))
    return checks, {"ran": True, "source": runtime.artifact.manifest.get("source"),
                    "seconds": round(time.perf_counter() - started, 3)}


def measure_latency(runtime, batch_size: int, options: SmokeOptions) -> dict[str, Any]:
    """End-to-end latency (tokenize + run) of one fixed batch of real texts."""
    from ..data import sample_texts

    pool = sample_texts()
    texts = [pool[i % len(pool)] for i in range(batch_size)]
    for _ in range(options.warmup):
        runtime.predict(texts)
    totals, tokenize = [], []
    budget_end = time.perf_counter() + options.max_seconds
    while len(totals) < options.iterations:
        t0 = time.perf_counter()
        enc = runtime.encode_batch(texts)
        t1 = time.perf_counter()
        runtime.run(enc.feeds)
        t2 = time.perf_counter()
        totals.append(t2 - t0)
        tokenize.append(t1 - t0)
        if len(totals) >= options.min_iterations and t2 > budget_end:
            break
    ms = np.array(totals) * 1e3
    return {
        "batch_size": batch_size,
        "iterations": len(totals),
        "mean_tokens": float(enc.lengths.mean()),
        "padded_length": int(enc.feeds["input_ids"].shape[1]),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "tokenize_ms": float(np.mean(tokenize) * 1e3),
        "texts_per_s": float(batch_size * len(totals) / np.sum(totals)),
    }


def _record(artifact_dir: Path, report: SmokeReport) -> str | None:
    """Add the report to the manifest; re-opened so another stage's recent write is kept."""
    try:
        artifact = Artifact.open(artifact_dir)
        artifact.record_stage(f"smoke.{report.variant}", report.to_dict())
        artifact.save()
    except OSError as e:
        return f"could not record the result in {artifact_dir} ({e.strerror or e})"
    return None


def smoke_artifact(artifact_dir: str | Path, options: SmokeOptions = SmokeOptions(), *, progress=None) -> SmokeReport:
    """Run every smoke check and the latency table; see the module docstring."""
    from .runtime import Runtime, choose_variant, resolve_device

    say = progress or (lambda msg: None)
    started = time.perf_counter()
    artifact_dir = Path(artifact_dir)
    say("loading the runtime")
    try:
        runtime = Runtime.load(artifact_dir, options.variant, options.device, max_length=options.max_length)
    except CheckFailed as e:
        # A CUDA request that ended on CPU: leave the evidence in the manifest, then fail.
        if options.record:
            art = Artifact.open(artifact_dir)
            variant = options.variant or choose_variant(art.variants, resolve_device(options.device))
            failed = SmokeReport(str(artifact_dir), variant, str(art.variants.get(variant, {}).get("precision", "")),
                                 options.device, "none", [], {}, checks=[_check("session", False, e.message)])
            _record(artifact_dir, failed)
        raise
    tol = options.tolerance or TOLERANCES.get(runtime.precision, TOLERANCES["fp32"])
    report = SmokeReport(
        artifact=str(artifact_dir), variant=runtime.variant, precision=runtime.precision,
        requested_device=options.device, device=runtime.device, providers=runtime.providers,
        tolerance=tol.to_dict(), runtime=runtime.describe(),
    )
    say("comparing with the golden outputs")
    report.checks += _golden_checks(runtime, tol)
    say("running the built-in sentences")
    texts, long_index = _sentences(runtime, options.texts)
    checks, batched, enc = _sentence_checks(runtime, texts, long_index, tol)
    report.checks += checks
    if options.torch:
        say("comparing with PyTorch")
        checks, report.pytorch = _pytorch_checks(runtime, enc, batched, tol)
        report.checks += checks
    else:
        report.pytorch = {"ran": False, "reason": "disabled (--no-torch)"}
    for bs in options.batch_sizes:
        say(f"timing batch size {bs}")
        report.latency.append(measure_latency(runtime, bs, options))
    report.seconds = round(time.perf_counter() - started, 2)
    if options.record:
        warning = _record(artifact_dir, report)
        if warning:
            report.runtime["record_warning"] = warning
    return report
