"""``optimize --engine openvino``: the bf16 and NNCF int8 variants, as OpenVINO IRs.

Same order of work as the ONNX Runtime variants (build, write to a staging folder
inside the artifact, check that file, then rename into place and record it), but no
ORT fusion: OpenVINO fuses at compile time, from the plain export. The IR goes to
``openvino/openvino_model.xml`` (+ ``.bin``) for bf16 and
``openvino/openvino_model_qint8_quantized.xml`` for int8: the names optimum-intel and
sentence-transformers' OpenVINO backend read.

Checks: the export's PyTorch goldens, and mean-pooled sentence embeddings of held-out
real text (``check_texts`` at ``check_offset``, distinct from the calibration texts)
against the fp32 base on ONNX Runtime, both run on OpenVINO with the variant's own
inference precision. A variant that misses the gates is not published unless
``allow_lossy`` (then it is recorded as lossy and never picked by default).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifact import Artifact, model_files
from ..errors import CheckFailed
from ..spec import ModelSpec
from .options import OptimizeOptions, OptimizeReport, fusion_check
from .staging import stage_and_publish


def _goldens(artifact: Artifact, spec: ModelSpec):
    goldens = artifact.manifest.get("goldens")
    if not goldens or not (artifact.root / goldens["file"]).is_file():
        return None
    data = np.load(artifact.root / goldens["file"])
    feeds = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("input.")}
    expected = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("output.")}
    return (feeds, expected) if set(expected) >= set(spec.output_names) else None


def ov_checks(artifact: Artifact, spec: ModelSpec, xml: Path, precision: str, options: OptimizeOptions,
              say) -> list:
    from ..runners import make_session, run_session
    from ..runtime.openvino import OpenVINOEngine, OpenVINOOptions
    from .checks import compare_batches, feeds_for

    engine = OpenVINOEngine.open(xml, options=OpenVINOOptions(precision=precision))
    checks = []
    golden = _goldens(artifact, spec)
    if golden:
        say("checking against the PyTorch goldens")
        feeds, expected = golden
        checks.append(compare_batches("goldens", "PyTorch fp32 outputs for the export's golden texts",
                                      options.precision, spec, [(feeds, expected, engine.run(feeds))], options))
    say(f"checking {options.precision} sentence embeddings on held-out text")
    feeds_list, source = feeds_for(artifact, spec, options.check_texts, options.check_offset, seed=101)
    reference, _ = make_session(artifact.variant_path("base"), "cpu")
    pairs = [(f, run_session(reference, spec, f), engine.run(f)) for f in feeds_list]
    checks.append(compare_batches("held-out texts", f"base export (fp32) on ONNX Runtime; {source}",
                                  options.precision, spec, pairs, options))
    # OpenVINO compiles kernels per shape: one wrong at a single sequence length (seen:
    # NNCF int8 with bf16 precision at exactly 32 tokens) passes the checks above.
    say("checking sequence lengths " + ", ".join(map(str, SEQUENCE_LENGTHS)))
    fixed = [(f, run_session(reference, spec, f), engine.run(f)) for f in fixed_length_feeds(feeds_list, spec)]
    checks.append(compare_batches("sequence lengths", "base export (fp32) on ONNX Runtime; held-out texts cut to "
                                  + ", ".join(map(str, SEQUENCE_LENGTHS)) + " tokens", options.precision, spec, fixed,
                                  options))
    return checks


SEQUENCE_LENGTHS = (8, 16, 24, 31, 32, 33, 48, 64, 96, 128)


def fixed_length_feeds(feeds_list: list[dict[str, np.ndarray]], spec: ModelSpec) -> list[dict[str, np.ndarray]]:
    """Held-out rows cut to each of SEQUENCE_LENGTHS real tokens (the last kept token made
    the separator), up to 8 rows per length; lengths no row reaches are skipped."""
    rows = []
    for feeds in feeds_list:
        ids, mask = feeds["input_ids"], feeds.get("attention_mask", np.ones_like(feeds["input_ids"]))
        rows += [r[m.astype(bool)] for r, m in zip(ids, mask)]
    out = []
    for length in SEQUENCE_LENGTHS:
        if length > spec.max_positions:
            continue
        chosen = [np.concatenate([r[:length - 1], r[-1:]]) for r in rows if len(r) >= length][:8]
        if not chosen:
            continue
        ids = np.stack(chosen).astype(np.int64)
        fixed = {"input_ids": ids}
        if "attention_mask" in spec.input_names:
            fixed["attention_mask"] = np.ones_like(ids)
        if "token_type_ids" in spec.input_names:
            fixed["token_type_ids"] = np.zeros_like(ids)
        out.append(fixed)
    return out


def _publish(staged_xml: Path, root: Path, relpath: str) -> list[str]:
    """Rename the staged IR into the artifact: weights first, the .xml last."""
    target = root / relpath
    target.parent.mkdir(exist_ok=True)
    names = []
    for path in sorted(model_files(staged_xml), key=lambda p: p.suffix == ".xml"):
        final = target.with_suffix(path.suffix)
        os.replace(path, final)
        names.append(final.relative_to(root).as_posix())
    return names


def _fusion_facts(nodes_before: int, model, rewrites: dict[str, int]) -> dict[str, Any]:
    """What optimize's report expects under "fusion": ov_rules' rewrites; the CPU plugin fuses the rest."""
    from ..runtime.openvino import fused_ops
    from .ov_rules import PIPELINE

    fused = fused_ops(model)
    tools = [{"tool": f"onnxforge.optimize.ov_rules.{name}", "settings": {}, "fused": {op: rewrites[name]}}
             for name, op, _ in PIPELINE if name in rewrites]
    return {"fully_fused": True, "route": "openvino (ov_rules, then fused by the CPU plugin at compile time)",
            "nodes_before": nodes_before, "nodes_after": len(model.get_ordered_ops()), "expected": {},
            "achieved": fused, "missing": {}, "optional": [], "required": [], "tools": tools, "fused_ops": fused,
            "rewrites": rewrites, "right_padding_required": False}


def optimize_openvino(artifact_dir: Path, options: OptimizeOptions, *,
                      progress: Callable[[str], None] | None = None) -> OptimizeReport:
    """Build the OpenVINO variant ``options.variant`` from the base export and record it."""
    from ..runtime.openvino import require_openvino
    from .bf16 import bf16_model, inference_precision
    from .checks import check_base, feeds_for

    started = time.perf_counter()
    say = progress or (lambda m: None)
    artifact = Artifact.open(artifact_dir)
    spec = artifact.spec
    base_path, _ = check_base(artifact)
    ov = require_openvino()
    variant = options.variant
    precision = inference_precision(variant)
    facts: dict[str, Any] = {"inference_precision": precision, "openvino": ov.__version__}
    if options.precision == "bf16":
        from .ov_rules import apply_all

        say("converting the export to an OpenVINO IR")
        model = bf16_model(base_path)
        nodes_before = len(model.get_ordered_ops())
        rewrites = apply_all(model)
    else:
        from .ov_int8 import CONFIGS, convert_onnx, quantize, require_nncf

        if options.nncf_config not in CONFIGS:
            from ..errors import UserInputError

            raise UserInputError(f"NNCF configuration {options.nncf_config!r} is not known",
                                 hint=f"choose one of {', '.join(CONFIGS)}")
        nncf = require_nncf()
        facts["nncf"] = nncf.__version__
        model = convert_onnx(base_path)
        # No ov_rules here: NNCF's quantization scheme and its measured trade-off are for the plain graph.
        nodes_before, rewrites = len(model.get_ordered_ops()), {}
        calibration, source = feeds_for(artifact, spec, options.calibration_texts, options.calibration_offset, seed=7)
        say(f"quantizing with NNCF ({options.nncf_config}, {source})")
        model, int8_facts = quantize(model, calibration, CONFIGS[options.nncf_config])
        facts.update(int8_facts, calibration=source)
    fusion = _fusion_facts(nodes_before, model, rewrites)
    root = artifact.root

    def stage(folder: Path):
        staged = folder / Path(options.file_name).name
        say(f"writing {options.file_name}")
        ov.save_model(model, str(staged), compress_to_fp16=False)
        checks = ov_checks(artifact, spec, staged, precision, options, say)
        failed = [c for c in checks if not c.passed]
        if failed and not options.allow_lossy:
            raise CheckFailed(
                f"the {variant} variant misses its quality gates and was not written: "
                + "; ".join(c.message() for c in failed),
                hint="pass --allow-lossy to keep it anyway (recorded as lossy, never a default)")
        return staged, checks, failed

    (_, checks, failed), published, critical = stage_and_publish(
        root, variant, stage, lambda done: _publish(done[0], root, options.file_name))

    with critical:
        notes = ["OpenVINO fuses the graph itself when it compiles it; no ONNX Runtime fusion is applied"]
        if any(rewrites.values()):
            notes.append("ov_rules: " + ", ".join(f"{k} x{v}" for k, v in rewrites.items() if v))
        if failed:
            notes.append("kept with --allow-lossy although it misses its quality gates: recorded as lossy")
        report = OptimizeReport(artifact=root, options=options, file=options.file_name, fusion=fusion,
                                checks=[fusion_check(fusion, options.strict), *checks],
                                openvino=facts, notes=notes, sizes={n: (root / n).stat().st_size for n in published})
        from .checks import tool_versions

        report.tool_versions = {**tool_versions(), "openvino": facts["openvino"], "nncf": facts.get("nncf")}
        report.seconds = round(time.perf_counter() - started, 2)
        for name in published:
            artifact.record_file(name)
        artifact.variants[variant] = {
            "file": options.file_name, "precision": options.precision, "engine": "openvino",
            "inference_precision": precision, "device": "cpu", "from": "base", "lossy": bool(failed),
        }
        artifact.record_stage(f"optimize.{variant}", report.to_dict())
        artifact.save()
    return report
