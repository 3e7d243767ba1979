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

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..errors import CheckFailed, OnnxforgeError
from ..parity import Tolerance, default_tolerance
from ..parity.goldens import GoldensUnreadable, read_goldens
from ..parity.judge import judge_output, public
from ..report import Check
from ..spec import OutputSpec
from ..vocab import SMOKE, resolve_device, stage_key
from .options import BUILTIN_SENTENCES, SmokeOptions
from .report import SmokeReport


# -- comparison ---------------------------------------------------------------------
def compare_output(expected: np.ndarray, actual: np.ndarray, output: OutputSpec, mask: np.ndarray | None,
                   tol: Tolerance) -> dict[str, Any]:
    """Metrics and verdict for one output, on real-token positions (the parity judge's)."""
    v = judge_output(output, [(expected, actual, mask)], tol)
    return {"passed": v.passed, "reason": "; ".join(v.reasons) or None, **public(v.metrics)}


def _check(name: str, passed: bool, reason: str | None = None, **metrics: Any) -> Check:
    """A check whose detail says why it failed (nothing when it passed)."""
    return Check(name, bool(passed), "" if passed else (reason or "failed"), metrics)


# -- the steps ----------------------------------------------------------------------
def _golden_checks(runtime, tol: Tolerance) -> list[Check]:
    meta = runtime.artifact.goldens_entry
    if not meta:
        return [_check("goldens", False, "the manifest records no golden outputs; re-export with a tokenizer")]
    try:
        g = read_goldens(runtime.artifact.root, meta)
    except GoldensUnreadable as e:
        return [_check("goldens", False, str(e))]
    texts, inputs = g.texts, g.inputs
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
        checks.append(_check("goldens.inputs", False, f"{g.file} lacks input.{missing[0]}"))
        return checks
    actual = runtime.run(inputs)
    mask = inputs.get("attention_mask")
    for out in runtime.spec.outputs:
        if out.name not in g.outputs:
            checks.append(_check(f"goldens.{out.name}", False, f"{g.file} has no output.{out.name}"))
            continue
        result = compare_output(g.outputs[out.name].astype(np.float32), actual[out.name], out, mask, tol)
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


def _sentence_checks(runtime, texts: list[str], long_index: int, tol: Tolerance) -> tuple[list[Check], dict, Any]:
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


def _pytorch_checks(runtime, enc, batched: dict[str, np.ndarray], tol: Tolerance) -> tuple[list[Check], dict]:
    """Compare with the PyTorch model the manifest names; skipped (with why) when it cannot be rebuilt."""
    from ..sources import SourceRef, load_source

    try:
        from ..runners import run_torch

        loaded = load_source(SourceRef.from_dict(runtime.artifact.source_record or {}))
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
    return checks, {"ran": True, "source": runtime.artifact.source_record,
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
        artifact.record_stage(stage_key(SMOKE, report.variant), report.to_dict())
        artifact.save()
    except OSError as e:
        return f"could not record the result in {artifact_dir} ({e.strerror or e})"
    return None


def smoke_artifact(artifact_dir: str | Path, options: SmokeOptions = SmokeOptions(), *, progress=None) -> SmokeReport:
    """Run every smoke check and the latency table; see the module docstring."""
    from ..runtime import Runtime, choose_variant

    say = progress or (lambda msg: None)
    started = time.perf_counter()
    artifact_dir = Path(artifact_dir)
    say("loading the runtime")
    try:
        runtime = Runtime.load(artifact_dir, options.variant, options.device, max_length=options.max_length,
                               engine=options.engine)
    except CheckFailed as e:
        # A CUDA request that ended on CPU: leave the evidence in the manifest, then fail.
        if options.record:
            art = Artifact.open(artifact_dir)
            variant = options.variant or choose_variant(art.variants, resolve_device(options.device, strict=False))
            failed = SmokeReport(str(artifact_dir), variant, str(art.variants.get(variant, {}).get("precision", "")),
                                 options.device, "none", [], {}, checks=[_check("session", False, e.message)])
            _record(artifact_dir, failed)
        raise
    tol = options.tolerance or default_tolerance(runtime.precision)
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
