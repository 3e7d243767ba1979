"""``optimize_artifact``: base export -> fused fp32, fp16 or int8 variant, checked and recorded.

Order of work: fuse (always: fp16 and int8 start from the fused graph), convert,
write to a temporary folder inside the artifact, run the checks on that file, then
rename it into place and record it. Checks run on ONNX Runtime's CPU provider only:
building a CUDA variant never needs (or creates) a CUDA session.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..artifact import Artifact, model_files
from ..parity.goldens import GoldensUnreadable, goldens_path, read_goldens
from ..report import Check
from ..vocab import stage_key
from ..spec import ModelSpec
from .checks import CHECK_SHAPE, check_base, compare_batches, feeds_for, run_session, tool_versions
from .options import OptimizeOptions, OptimizeReport, fusion_check
from .staging import stage_and_publish

def run_checks(artifact: Artifact, spec: ModelSpec, candidate: Path, fused_fp32, options: OptimizeOptions, say) -> list[Check]:
    from ..inputs import random_inputs
    from ..runners import make_session

    session, _ = make_session(candidate, "cpu")
    checks = []
    # 1. PyTorch's own outputs for real texts, stored by export (goldens.npz).
    goldens, entry = None, artifact.goldens_entry
    try:
        # A manifest without goldens (no tokenizer at export), or whose file is gone: no goldens check.
        if entry and goldens_path(artifact.root, entry).is_file():
            goldens = read_goldens(artifact.root, entry)
    except GoldensUnreadable as e:
        checks.append(Check("goldens", False, str(e), about={"reference": "PyTorch fp32 outputs for the export's golden texts"}))
    if goldens is not None:
        say("checking against the PyTorch goldens")
        feeds, expected = goldens.inputs, goldens.outputs
        if set(expected) >= set(spec.output_names):
            actual = run_session(session, spec, feeds)
            checks.append(compare_batches("goldens", "PyTorch fp32 outputs for the export's golden texts",
                                          options.precision, spec, [(feeds, expected, actual)], options))
    if options.precision in ("fp32", "fp16"):
        # 2. A shape the trace never saw, right-padded rows, against the base export.
        say(f"checking at batch {CHECK_SHAPE[0]} x sequence {CHECK_SHAPE[1]} against the base model")
        seq = min(CHECK_SHAPE[1], spec.max_positions)
        feeds = random_inputs(spec, CHECK_SHAPE[0], seq, seed=23)
        base_session, _ = make_session(artifact.variant_path("base"), "cpu")
        pairs = [(feeds, run_session(base_session, spec, feeds), run_session(session, spec, feeds))]
        checks.append(compare_batches("random right-padded batch", "base model (fp32 export) on ONNX Runtime",
                                      options.precision, spec, pairs, options))
    else:
        # 2. Sentence embeddings of held-out real text against the fused fp32 graph.
        say("checking int8 sentence embeddings on held-out text")
        feeds_list, source = feeds_for(artifact, spec, options.check_texts, options.check_offset, seed=101)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        ref = ort.InferenceSession(fused_fp32.SerializeToString(), so, providers=["CPUExecutionProvider"])
        pairs = [(f, run_session(ref, spec, f), run_session(session, spec, f)) for f in feeds_list]
        checks.append(compare_batches("held-out texts", f"fused fp32 graph; {source}", "int8", spec, pairs, options))
    return checks


# -- writing --------------------------------------------------------------------------------
def _save(model, path: Path, external: bool) -> list[Path]:
    import onnx

    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return model_files(path)


def _publish(staged: list[Path], root: Path, final_name: str) -> list[str]:
    """Rename the staged files into the artifact (data file first, the graph last)."""
    names = []
    for path in sorted(staged, key=lambda p: p.suffix == ".onnx"):
        os.replace(path, root / path.name)
        names.append(path.name)
    stale = root / (final_name + ".data")
    if stale.name not in names and stale.exists():
        stale.unlink()
    return names


def optimize_artifact(artifact_dir: Path, options: OptimizeOptions = OptimizeOptions(), *,
                      progress: Callable[[str], None] | None = None) -> OptimizeReport:
    """Build ``model_<variant>.onnx`` from the artifact's base export and record it.

    Returns the report; it is falsy when a required fusion is missing or a check failed.
    The variant is published either way (its manifest record says ``passed``), so the
    evidence stays inspectable; under ``strict`` a graph that is not fully fused is
    recorded with ``passed: false`` so later stages do not pick it.
    """
    if options.engine == "openvino":
        from .openvino_variant import optimize_openvino

        return optimize_openvino(artifact_dir, options, progress=progress)
    started = time.perf_counter()
    say = progress or (lambda m: None)
    artifact = Artifact.open(artifact_dir)
    spec = artifact.spec
    base_path, _ = check_base(artifact)
    notes: list[str] = []
    if options.precision == "fp16" and options.device == "cpu":
        notes.append("fp16 targets CUDA: ONNX Runtime's CPU provider runs it by casting each node back to fp32, "
                     "slower than the fp32 variant; built as asked (e.g. for a CPU-only release job)")
    if options.precision == "int8" and options.device == "cuda":
        notes.append("int8 targets the CPU provider (DynamicQuantizeMatMul and QAttention have no CUDA kernels); "
                     "the variant is built for and recorded with device cpu; use fp16 on CUDA")

    from .fusion import fuse

    exporter = artifact.export_record.get("exporter")
    config = artifact.root / "config.json"
    fusion = fuse(base_path, spec, exporter, config if config.is_file() else None, say=say, device=options.target_device)
    if fusion.report["right_padding_required"]:
        notes.append("fused Attention reads the mask as per-row lengths (EmbedLayerNormalization's mask_index): "
                     "feed right-padded batches (the artifact's tokenizer pads on the right)")
    model = fusion.model
    fused_fp32 = model
    fp16_report = int8_report = None
    if options.precision == "fp16":
        from .fp16 import to_fp16

        say("converting to fp16 (scanning fp32 activations for overflow)")
        feeds, _source = feeds_for(artifact, spec, 16, options.calibration_offset, seed=7)
        import onnx

        work = onnx.ModelProto.FromString(model.SerializeToString())
        model, fp16_report = to_fp16(work, feeds, options.fp16_overflow_margin)
        fp16_report["overflow_scan"]["source"] = _source
    elif options.precision == "int8":
        import onnx

        from .int8 import to_int8

        feeds, source = feeds_for(artifact, spec, options.calibration_texts, options.calibration_offset, seed=7)
        work = onnx.ModelProto.FromString(model.SerializeToString())
        model, int8_report = to_int8(work, feeds, options, calibration=source, say=say)
        int8_report["check_texts"] = {"count": options.check_texts, "offset": options.check_offset}

    root = artifact.root
    external = bool(artifact.export_record.get("external_data")) or model.ByteSize() > (2 << 30) - (64 << 20)

    def stage(folder: Path):
        say(f"writing {options.file_name}")
        files = _save(model, folder / options.file_name, external)
        return files, run_checks(artifact, spec, folder / options.file_name, fused_fp32, options, say)

    (staged, checks), published, critical = stage_and_publish(
        root, options.variant, stage, lambda done: _publish(done[0], root, options.file_name))
    with critical:
        report = OptimizeReport(
            artifact=root, options=options, file=options.file_name, fusion=fusion.report,
            checks=[fusion_check(fusion.report, options.strict), *checks],
            fp16=fp16_report, int8=int8_report, notes=notes, tool_versions=tool_versions(),
            sizes={name: (root / name).stat().st_size for name in published},
        )
        report.seconds = round(time.perf_counter() - started, 2)
        for name in published:
            artifact.record_file(name)
        if not any(n.endswith(".data") for n in published):
            artifact.forget_file(options.file_name + ".data")
        artifact.variants[options.variant] = {
            "file": options.file_name,
            "precision": options.precision,
            "device": "cpu" if options.precision == "int8" else options.device,
            "engine": "ort",
            "from": "base",
            "lossy": options.precision == "int8" and not report.checks_passed,
        }
        artifact.record_stage(stage_key("optimize", options.variant), report.to_dict())
        artifact.save()
    return report
