"""What optimize and the OpenVINO variants share: the feeds a variant is checked on, the
comparison against the fp32 reference, the base-graph guard and the tool versions recorded.

Kept apart from optimizer.py so the OpenVINO route can use them without importing the
ORT route (and the ORT route without importing OpenVINO's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..errors import UserInputError
from ..graph import QUANTIZED_OPS, is_quantized, load_graph
from ..parity.judge import judge_output, pooled_cosines
from ..parity.tolerance import default_tolerance
from ..report import Check
from ..spec import ModelSpec
from .options import OptimizeOptions

CHECK_SHAPE = (3, 37)  # batch, sequence: not the trace shape, right-padded rows
CALIBRATION_BATCH = 8


# -- inputs ---------------------------------------------------------------------------------
def text_feeds(artifact: Artifact, spec: ModelSpec, count: int, offset: int) -> list[dict[str, np.ndarray]] | None:
    """Batches of real text through the artifact's own tokenizer, or None without one."""
    if not (artifact.root / "tokenizer.json").is_file():
        return None
    from ..data import sample_texts
    from ..textbatch import encode_texts
    from ..tokenizer import load_tokenizer

    tokenizer = load_tokenizer(artifact.root)
    texts = sample_texts(count, offset=offset)
    return [encode_texts(tokenizer, texts[i:i + CALIBRATION_BATCH], spec) for i in range(0, len(texts), CALIBRATION_BATCH)]


def random_feeds(spec: ModelSpec, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    from ..inputs import random_inputs

    batches = max(1, count // CALIBRATION_BATCH)
    return [random_inputs(spec, CALIBRATION_BATCH, min(64, spec.max_positions), seed=seed + i) for i in range(batches)]


def feeds_for(artifact: Artifact, spec: ModelSpec, count: int, offset: int, seed: int) -> tuple[list, str]:
    feeds = text_feeds(artifact, spec, count, offset)
    if feeds:
        return feeds, f"{count} real texts (onnxforge.data.sample_texts offset {offset}) through the artifact's tokenizer"
    return random_feeds(spec, count, seed), "random token ids (the artifact has no tokenizer.json)"


# -- checks ---------------------------------------------------------------------------------
def run_session(session, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ..runners import run_session

    return run_session(session, spec, feeds)


def compare_batches(name: str, reference: str, precision: str, spec: ModelSpec, pairs, options: OptimizeOptions) -> Check:
    """One check over batches of (feeds, expected outputs, actual outputs).

    fp32 and fp16 are judged by the parity table (``onnxforge.parity``) on real tokens;
    int8 by its quality gate on mean-pooled sentence embeddings (``int8_min_cosine`` /
    ``int8_mean_cosine``): per-element int8 error is not bounded usefully.
    """
    outputs: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for out in spec.outputs:
        batches = [(expected[out.name], actual[out.name], feeds.get("attention_mask")) for feeds, expected, actual in pairs]
        tol = default_tolerance(precision)
        verdict = judge_output(out, batches, tol)
        same_shape = [(e, a, m) for e, a, m in batches if e.shape == a.shape]
        cos = (np.concatenate([pooled_cosines(e, a, out, m) for e, a, m in same_shape]) if same_shape
               else np.array([float("nan")]))
        m = verdict.metrics
        entry: dict[str, Any] = {"max_abs": m["max_abs"] if same_shape and len(same_shape) == len(batches) else float("inf"),
                                 "min_cosine": m["min_cosine"], "atol_needed": m["atol_needed"],
                                 "pooled_min_cosine": float(cos.min()), "pooled_mean_cosine": float(cos.mean()),
                                 "samples": int(cos.size)}
        if precision in ("int8", "bf16"):  # the sentence embedding is what must hold
            need_min, need_mean = options.gates()
            entry.update(min_required=need_min, mean_required=need_mean)
            shape_problems = [r for r in verdict.reasons if r.startswith("shape ")]
            ok = not shape_problems and entry["pooled_min_cosine"] >= need_min and entry["pooled_mean_cosine"] >= need_mean
            if shape_problems:
                reasons += [f"{out.name}: {r}" for r in shape_problems]
            elif not ok:
                reasons.append(f"{out.name}: pooled cosine min {entry['pooled_min_cosine']:.4f} / mean "
                               f"{entry['pooled_mean_cosine']:.4f} (needs {need_min} / {need_mean})")
        else:
            entry["tolerance"] = tol.to_dict()
            ok = verdict.passed
            reasons += [f"{out.name}: {r}" for r in verdict.reasons]
        entry["passed"] = bool(ok)
        outputs[out.name] = entry
    passed = not reasons and all(o["passed"] for o in outputs.values())
    return Check(name, passed, "; ".join(reasons), metrics={"outputs": outputs}, about={"reference": reference})


def tool_versions() -> dict[str, str | None]:
    from ..env import package_version

    ort = package_version("onnxruntime") or package_version("onnxruntime-gpu")
    return {"onnxruntime": ort, "onnxscript": package_version("onnxscript"), "onnx": package_version("onnx"),
            "onnx_ir": package_version("onnx_ir")}


def check_base(artifact: Artifact) -> tuple[Path, Any]:
    base_path = artifact.variant_path("base")
    base = load_graph(base_path)
    if is_quantized(base):
        ops = sorted({n.op_type for n in base.graph.node if n.op_type in QUANTIZED_OPS})
        raise UserInputError(
            f"the base model {base_path.name} in {artifact.root} is already quantized (it has {', '.join(ops)})",
            hint="optimize starts from the fp32 export: re-run `onnxforge export` for this model",
        )
    # The new variant gets fresh hashes: a base changed since export would be laundered into it.
    artifact.require_recorded("base", "optimize builds only on the export it recorded")
    return base_path, base
