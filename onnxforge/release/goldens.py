"""Golden texts: re-run the recorded texts through the tokenizer and a model variant.

``goldens.npz`` (written by export, read by ``onnxforge.parity.goldens``) holds the
tokenized inputs and PyTorch's fp32 outputs for a few real texts. Package measures
every variant against them before writing an archive, and verify repeats the
measurement after unpacking, with the tolerance validate used for that variant (or the
parity table's default for its precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..parity.goldens import GoldensUnreadable, goldens_path, read_goldens
from ..parity.judge import judge_output
from ..parity.tolerance import Tolerance, default_tolerance
from ..report import Check, ChecksReport
from ..vocab import VALIDATE, short_error, stage_key


def variant_tolerances(art: Artifact, variant: str) -> tuple[dict[str, Tolerance], str]:
    """Per-output tolerance for a variant and where it came from."""
    spec = art.spec
    precision = art.variant_precision(variant) or "fp32"
    recorded = (art.stage_record(VALIDATE, variant) or {}).get("tolerances") or {}
    origin = stage_key(VALIDATE, variant) if recorded else f"default for {precision}"
    tolerances = {name: Tolerance.from_dict(recorded[name]) if recorded.get(name) else default_tolerance(precision)
                  for name in spec.output_names}
    return tolerances, origin


def _finite(x: float | None) -> float | None:
    # Six significant digits: enough to read, and stable in a reproducible manifest.
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def judge(expected: np.ndarray, actual: np.ndarray, output, mask, tol: Tolerance) -> dict[str, Any]:
    """The parity judge on one output, as the package manifest records it."""
    verdict = judge_output(output, [(expected, actual, mask)], tol)
    m = verdict.metrics
    return {
        "passed": verdict.passed,
        "max_abs": _finite(m["max_abs"]),
        "atol_needed": _finite(m["atol_needed"]),
        "min_cosine": _finite(m["min_cosine"]),
        "argmax_agreement": _finite(m["argmax_agreement"]),
        "tolerance": tol.to_dict(),
        "reasons": list(verdict.reasons),
    }


@dataclass
class GoldensReport(ChecksReport):
    """One variant against the golden texts; honours ``report.StageReport``.

    A report with ``skipped`` set (the artifact has no goldens) passes: nothing to compare.
    ``to_dict()`` is the record package and verify have always stored.
    """

    variant: str
    checks: list[Check] = field(default_factory=list)
    texts: int = 0
    tolerance_from: str | None = None
    provider: str | None = None
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is not None or ChecksReport.passed.fget(self)

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("passed" if self.passed else "failed")

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.passed:
            fails = self.failures()
            return (fails[0] if fails else "failed") + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
        worst = ", ".join(f"{c.about['output']} max abs {c.metrics['max_abs']:.2g}, min cosine {c.metrics['min_cosine']:.6f}"
                          for c in self.checks if c.about.get("output") and c.metrics.get("max_abs") is not None)
        return f"{self.texts} texts within {self.tolerance_from} tolerance ({worst})"

    def to_dict(self) -> dict[str, Any]:
        if self.skipped:
            return {"status": "skipped", "reason": self.skipped}
        out: dict[str, Any] = {}
        if self.tolerance_from is not None:
            out = {"texts": self.texts, "tolerance_from": self.tolerance_from,
                   "outputs": {c.about["output"]: c.metrics for c in self.checks if c.about.get("output")}}
        tokenizer = next((c for c in self.checks if c.about.get("kind") == "tokenizer"), None)
        if tokenizer is not None:
            out["tokenizer"] = {"passed": tokenizer.passed}
        if self.provider is not None:
            out["provider"] = self.provider
        return out | {"status": self.status, "failures": self.failures()}


def _problem(kind: str, text: str) -> Check:
    """A failed check whose message is exactly ``text`` (the wording the records have always had)."""
    return Check(text, False, about={"kind": kind})


def check_goldens(art: Artifact, variant: str, device: str) -> GoldensReport:
    """Tokenize the golden texts, run ``variant`` on ``device``, compare with PyTorch.

    Never raises for a model that fails to load or run (that is a failed check).
    """
    from ..runners import make_session, run_session
    from ..runtime.engine import open_engine, openvino_precision, variant_engine

    folder = art.root
    entry_goldens = art.goldens_entry or {}
    if not entry_goldens or not goldens_path(Path(folder), entry_goldens).is_file():
        return GoldensReport(variant, skipped="the artifact has no golden texts (no tokenizer at export)")
    try:
        goldens = read_goldens(Path(folder), entry_goldens)
    except GoldensUnreadable as e:
        return GoldensReport(variant, checks=[_problem("goldens", str(e))])
    spec = art.spec
    entry = art.variant_record(variant)
    tolerances, origin = variant_tolerances(art, variant)
    report = GoldensReport(variant, texts=len(goldens.texts), tolerance_from=origin)
    feeds = {n: goldens.inputs[n] for n in spec.input_names if n in goldens.inputs}
    if (Path(folder) / "tokenizer.json").is_file() and goldens.texts:
        from ..textbatch import encode_texts
        from ..tokenizer import load_tokenizer

        encoded = encode_texts(load_tokenizer(folder), goldens.texts, spec)
        same = all(k in feeds and encoded[k].shape == feeds[k].shape and np.array_equal(encoded[k], feeds[k]) for k in encoded)
        report.checks.append(Check("tokenizer.json no longer produces the recorded input ids for the golden texts"
                                   if not same else "tokenizer.json", same, about={"kind": "tokenizer"}))
        feeds = encoded if same else feeds
    try:
        # One thread: the same numbers on any machine, so a package's recorded
        # measurements (and its bytes) do not depend on the core count.
        if variant_engine(entry, variant) == "openvino":
            # Each variant on the engine it records (an OpenVINO IR cannot run on ORT).
            engine = open_engine(Path(folder) / entry["file"], device, engine="openvino", threads=1,
                                 precision=openvino_precision(entry))
            actual = {n: np.asarray(v, dtype=np.float32) for n, v in
                      engine.run({k: v for k, v in feeds.items() if k in engine.input_names}).items()}
            report.provider = f"OpenVINO CPU ({engine.inference_precision})"
        else:
            session, info = make_session(Path(folder) / entry["file"], device, threads=1)
            actual = run_session(session, spec, feeds)
            report.provider = info.obtained[0]
    except Exception as e:  # a corrupted or incompatible model is a failed check here
        message = getattr(e, "message", None) or f"{type(e).__name__}: {short_error(e, 300)}"
        report.checks.append(_problem("run", f"{entry['file']} did not run: {message}"))
        return report
    mask = feeds.get("attention_mask")
    for out in spec.outputs:
        expected = goldens.outputs.get(out.name)
        if expected is None:
            report.checks.append(_problem("output", f"{goldens.file} has no output.{out.name}"))
            continue
        if actual[out.name].shape != expected.shape:
            report.checks.append(_problem(
                "output", f"{entry['file']} {out.name}: shape {actual[out.name].shape}, goldens have {expected.shape}"))
            continue
        judged = judge(expected, actual[out.name], out, mask, tolerances[out.name])
        report.checks.append(Check(f"{entry['file']} {out.name}", judged["passed"], "; ".join(judged["reasons"]),
                                   metrics=judged, about={"kind": "output", "output": out.name}))
    return report
