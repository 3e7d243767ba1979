"""Golden texts: re-run the recorded texts through the tokenizer and a model variant.

``goldens.npz`` (written by export) holds the tokenized inputs and PyTorch's fp32
outputs for a few real texts. Package measures every variant against them before
writing an archive, and verify repeats the measurement after unpacking, with the
tolerance validate used for that variant (or validate's default for its precision).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import GOLDENS_NAME
from ..compare import compare_arrays, per_sample_rows
from ..spec import ModelSpec


def default_tolerance(precision: str) -> dict[str, Any]:
    from ..validate.options import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES.get(precision) or DEFAULT_TOLERANCES["fp32"]
    return tol.to_dict()


def variant_tolerances(manifest: dict[str, Any], variant: str) -> tuple[dict[str, dict[str, Any]], str]:
    """Per-output tolerance for a variant and where it came from."""
    spec = ModelSpec.from_dict(manifest["spec"])
    precision = manifest["variants"][variant].get("precision", "fp32")
    recorded = (manifest.get("stages", {}).get(f"validate.{variant}") or {}).get("tolerances") or {}
    tolerances, origin = {}, f"validate.{variant}" if recorded else f"default for {precision}"
    for name in spec.output_names:
        tolerances[name] = dict(recorded.get(name) or default_tolerance(precision))
    return tolerances, origin


def _finite(x: float | None) -> float | None:
    # Six significant digits: enough to read, and stable in a reproducible manifest.
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def judge(expected: np.ndarray, actual: np.ndarray, output, mask, tol: dict[str, Any]) -> dict[str, Any]:
    """Validate's rule on real tokens: |a - e| <= atol + rtol*|e|, cosine, argmax."""
    diff = compare_arrays(expected, actual, output, mask)
    e = np.concatenate(per_sample_rows(expected, output, mask))
    a = np.concatenate(per_sample_rows(actual, output, mask))
    rtol = float(tol.get("rtol") or 0.0)
    finite = bool(np.isfinite(a).all())
    needed = float((np.abs(e - a) - rtol * np.abs(e)).max()) if finite and e.size else (0.0 if finite else math.inf)
    reasons = []
    if not finite:
        reasons.append("NaN or inf in the output")
    if tol.get("atol") is not None and not needed <= tol["atol"]:
        reasons.append(f"max abs {diff.max_abs:.3g} needs atol {needed:.3g} > {tol['atol']:g}")
    if tol.get("min_cosine") is not None and not diff.min_cosine >= tol["min_cosine"]:
        reasons.append(f"min cosine {diff.min_cosine:.6f} < {tol['min_cosine']:g}")
    if tol.get("min_argmax") is not None and diff.argmax_agreement is not None and not diff.argmax_agreement >= tol["min_argmax"]:
        reasons.append(f"argmax agreement {diff.argmax_agreement:.3f} < {tol['min_argmax']:g}")
    return {
        "passed": not reasons,
        "max_abs": _finite(diff.max_abs),
        "atol_needed": _finite(max(needed, 0.0)),
        "min_cosine": _finite(diff.min_cosine),
        "argmax_agreement": _finite(diff.argmax_agreement),
        "tolerance": tol,
        "reasons": reasons,
    }


def check_goldens(folder: Path, manifest: dict[str, Any], variant: str, device: str) -> dict[str, Any]:
    """Tokenize the golden texts, run ``variant`` on ``device``, compare with PyTorch.

    Returns ``{"status": "passed"|"failed"|"skipped", ...}`` with per-output metrics;
    never raises for a model that fails to load or run (that is a failed check).
    """
    from ..runners import make_session, run_session
    from ..runtime.engine import open_engine, openvino_precision, variant_engine

    goldens = manifest.get("goldens") or {}
    path = Path(folder) / (goldens.get("file") or GOLDENS_NAME)
    if not goldens or not path.is_file():
        return {"status": "skipped", "reason": "the artifact has no golden texts (no tokenizer at export)"}
    spec = ModelSpec.from_dict(manifest["spec"])
    entry = manifest["variants"][variant]
    tolerances, origin = variant_tolerances(manifest, variant)
    result: dict[str, Any] = {"texts": len(goldens.get("texts", [])), "tolerance_from": origin, "outputs": {}}
    with np.load(path) as data:
        stored = {k: data[k] for k in data.files}
    feeds = {n: stored[f"input.{n}"] for n in spec.input_names if f"input.{n}" in stored}
    problems = []
    if (Path(folder) / "tokenizer.json").is_file() and goldens.get("texts"):
        from ..textbatch import encode_texts
        from ..tokenizer import load_tokenizer

        encoded = encode_texts(load_tokenizer(folder), list(goldens["texts"]), spec)
        same = all(k in feeds and encoded[k].shape == feeds[k].shape and np.array_equal(encoded[k], feeds[k]) for k in encoded)
        result["tokenizer"] = {"passed": same}
        if not same:
            problems.append("tokenizer.json no longer produces the recorded input ids for the golden texts")
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
            result["provider"] = f"OpenVINO CPU ({engine.inference_precision})"
        else:
            session, info = make_session(Path(folder) / entry["file"], device, threads=1)
            actual = run_session(session, spec, feeds)
            result["provider"] = info.obtained[0]
    except Exception as e:  # a corrupted or incompatible model is a failed check here
        message = getattr(e, "message", None) or f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        return result | {"status": "failed", "failures": problems + [f"{entry['file']} did not run: {message}"]}
    mask = feeds.get("attention_mask")
    for out in spec.outputs:
        expected = stored[f"output.{out.name}"]
        if actual[out.name].shape != expected.shape:
            problems.append(f"{entry['file']} {out.name}: shape {actual[out.name].shape}, goldens have {expected.shape}")
            continue
        judged = judge(stored[f"output.{out.name}"], actual[out.name], out, mask, tolerances[out.name])
        result["outputs"][out.name] = judged
        problems += [f"{entry['file']} {out.name}: {r}" for r in judged["reasons"]]
    return result | {"status": "failed" if problems else "passed", "failures": problems}
