"""validate_artifact: one variant of an artifact against the PyTorch model it came from.

Order matters for a CI user: everything that can be wrong with the input (variant,
overrides, text file, tokenizer, the source model) is checked before anything runs,
so a bad input exits 2 without a partial report; then PyTorch runs every group in
one block and ONNX Runtime in another (interleaving the two thread pools call by
call slows both), then every output of every group is judged and all failures are
kept, then localization runs if anything failed, then the manifest records it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any, Callable


import numpy as np

from ..artifact import Artifact, sha256_file
from ..errors import UserInputError
from ..spec import ModelSpec
from .cases import InputGroup, default_shapes, random_groups, read_texts, text_group
from ..parity.judge import judge_metrics, measure, merge
from ..report import Check
from ..vocab import PRECISIONS, VALIDATE, short_error, stage_key
from .options import ValidateOptions
from .result import ValidationResult, output_check

BUILTIN_SAMPLE = "built-in sample (Debian package descriptions)"
# Below this many parameters the reference runs PyTorch on one thread: a BERT this
# small cannot keep two threads busy, and OpenMP's spin-waiting collapses when the
# cores are shared. Measured on a 2-core machine with other jobs running: MiniLM-L6
# (22M) over the whole default plan took 4.6-6.3 s on 1 thread and 7.3-27 s on 2; the
# 4-layer test BERT 0.36 s against 17 s.
SMALL_MODEL_PARAMS = 50_000_000


def variant_precision(entry: dict[str, Any], path: Path) -> tuple[str, str]:
    """The variant's precision and where it came from (manifest, or read off the graph)."""
    declared = entry.get("precision")
    if declared in PRECISIONS:
        return declared, "manifest"
    from ..graph import is_quantized, load_graph

    model = load_graph(path)
    if is_quantized(model):
        return "int8", "graph"
    if any(t.data_type == 10 for t in model.graph.initializer):
        return "fp16", "graph"
    return "fp32", "graph"


def load_reference(art: Artifact):
    """Rebuild the PyTorch model from the manifest's source, as the export did."""
    from ..sources import SourceRef, load_source

    raw = art.source_record
    if not isinstance(raw, dict) or "kind" not in raw or "location" not in raw:
        raise UserInputError(f"{art.root}/onnxforge.json records no model source, so there is no PyTorch reference",
                             hint="re-export the model with `onnxforge export`")
    ref = SourceRef.from_dict(raw)
    attn = art.export_record.get("attn_implementation")
    try:
        loaded = load_source(ref, attn_implementation=attn)
    except UserInputError as e:
        raise UserInputError(
            f"the PyTorch reference cannot be rebuilt from the artifact's source ({ref.kind} {ref.location}): {e.message}",
            hint=e.hint or "validate compares with the model the artifact was exported from: restore that source, "
                           "or re-export from where the model is now",
        ) from None
    spec = art.spec
    if loaded.spec.input_names != spec.input_names or loaded.spec.output_names != spec.output_names:
        raise UserInputError(
            f"the source {ref.location} now builds a different model: inputs {list(loaded.spec.input_names)}, "
            f"outputs {list(loaded.spec.output_names)}; the artifact has inputs {list(spec.input_names)}, "
            f"outputs {list(spec.output_names)}",
            hint="re-export the artifact from the current source",
        )
    return loaded


def build_groups(art: Artifact, spec: ModelSpec, options: ValidateOptions, notes: list[str]) -> list[InputGroup]:
    """Random shape groups, then the real-text group (user file or built-in sample)."""
    shapes = list(options.shapes) if options.shapes else default_shapes(spec)
    groups = random_groups(spec, shapes, options.seed)
    has_tokenizer = (art.root / "tokenizer.json").is_file()
    if options.text_file is not None:
        texts, total = read_texts(options.text_file, options.column, options.max_texts)
        if not has_tokenizer:
            raise UserInputError(
                f"--text needs the artifact's tokenizer, but {art.root} has no tokenizer.json",
                hint="re-export with --tokenizer PATH, or validate without --text (random inputs only)",
            )
        source = {"source": "file", "file": options.text_file.name, "texts_in_file": total}
        if options.column:
            source["column"] = options.column
        if total > len(texts):
            notes.append(f"used the first {len(texts)} of {total} texts in {options.text_file.name} (max_texts)")
    elif has_tokenizer:
        from ..data import sample_texts

        texts = sample_texts(options.sample_size)
        source = {"source": BUILTIN_SAMPLE}
    else:
        notes.append("the artifact has no tokenizer.json: the real-text check was skipped (random inputs only)")
        return groups
    from ..tokenizer import check_tokenizer_fits, load_tokenizer

    tokenizer = load_tokenizer(art.root)
    check_tokenizer_fits(tokenizer, spec, "artifact's tokenizer")
    # The model's own pipeline decides truncation and lower-casing (sentence-transformers folders).
    from ..textbatch import pipeline_max_length, pipeline_texts

    groups.append(text_group(spec, tokenizer, pipeline_texts(texts, art.manifest), options.text_batch_size, source,
                             pipeline_max_length(art.manifest)))
    return groups


def reference_threads(module, requested: int | None) -> int | None:
    """PyTorch intra-op threads for the reference run (None: leave PyTorch's setting)."""
    if requested is not None:
        return requested
    params = sum(p.numel() for p in module.parameters())
    return 1 if params < SMALL_MODEL_PARAMS else None


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Set PyTorch's intra-op threads for a block, then restore them (it is process-wide)."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _openvino_runner(path: Path, entry: dict[str, Any], options: ValidateOptions):
    """(engine, facts like SessionInfo, run function) for a variant on OpenVINO."""
    from ..runners import SessionInfo
    from ..runtime.engine import open_engine, openvino_precision

    engine = open_engine(path, options.device, engine="openvino", threads=options.threads,
                         precision=openvino_precision(entry))
    name = f"OpenVINO CPU ({engine.inference_precision})"
    info = SessionInfo((name,), (name,))

    def run(feeds: dict) -> dict:
        out = engine.run({k: v for k, v in feeds.items() if k in engine.input_names})
        return {n: np.asarray(v, dtype=np.float32) for n, v in out.items()}

    return engine, info, run


def quiet_runner(session, spec: ModelSpec) -> Callable[[dict], dict]:
    """Like runners.run_session, but a failing run is only reported once, by validate
    (ORT would also log it to stderr, where it reads like a crash)."""
    import onnxruntime as ort

    run_options = ort.RunOptions()
    run_options.log_severity_level = 4
    graph_inputs = {i.name for i in session.get_inputs()}
    names = list(spec.output_names)

    def run(feeds: dict) -> dict:
        outs = session.run(names, {k: v for k, v in feeds.items() if k in graph_inputs}, run_options)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outs)}

    return run


def _run_all(fn: Callable[[dict], dict], groups: list[InputGroup], what: str) -> tuple[list, dict[str, str], list[float]]:
    """Run ``fn`` on every batch; a group whose run raises keeps the error (a failed check)."""
    results: list[list[dict] | None] = []
    errors: dict[str, str] = {}
    times: list[float] = []
    for g in groups:
        started = time.perf_counter()
        outs = []
        try:
            for feeds in g.batches:
                outs.append(fn(feeds))
        except Exception as e:  # a graph that cannot run at a shape: that shape's checks fail
            shape = "x".join(str(d) for d in feeds["input_ids"].shape)
            errors[g.name] = f"{what} failed at input shape {shape}: {short_error(e)}"
            outs = None
        results.append(outs)
        times.append(time.perf_counter() - started)
    return results, errors, times


def judge_groups(spec: ModelSpec, groups: list[InputGroup], expected: list, actual: list, errors: dict[str, str],
                 tolerances: dict, seconds: list[float]) -> tuple[list[Check], dict[str, dict[str, Any]]]:
    """One check per output and group (every failure kept), and each output's overall metrics."""
    checks: list[Check] = []
    per_output: dict[str, list[dict]] = {o: [] for o in spec.output_names}
    for g, exp_batches, act_batches, group_seconds in zip(groups, expected, actual, seconds):
        for out in spec.outputs:
            tol = tolerances[out.name]
            error = errors.get(g.name)
            parts: list[dict] = []
            if error is None:
                for feeds, e, a in zip(g.batches, exp_batches, act_batches):
                    if e[out.name].shape != a[out.name].shape:
                        error = (f"shape {list(a[out.name].shape)} from ONNX Runtime, {list(e[out.name].shape)} from PyTorch "
                                 f"(input {'x'.join(str(d) for d in feeds['input_ids'].shape)})")
                        break
                    parts.append(measure(e[out.name], a[out.name], out, feeds.get("attention_mask"), tol.rtol))
            metrics = merge(parts) if error is None else merge([])
            reasons = [] if error else judge_metrics(metrics, tol)
            if error is None:
                per_output[out.name].extend(parts)
            checks.append(output_check(out.name, g.name, metrics, tol, reasons, error, seconds=group_seconds))
    outputs: dict[str, dict[str, Any]] = {}
    for out in spec.output_names:
        mine = [c for c in checks if c.about["output"] == out]
        outputs[out] = merge(per_output[out]) | {
            "passed": all(c.passed for c in mine),
            "failed_groups": [c.about["group"] for c in mine if not c.passed],
        }
    return checks, outputs


def _pick_localization_feeds(groups: list[InputGroup], checks: list[Check], errors: dict[str, str], cap: int):
    """Feeds from a failing group: prefer one ORT could run, with padding and few tokens."""
    failing = [g for g in groups if any(c.about["group"] == g.name and not c.passed for c in checks)]
    if not failing:
        return None, None

    def cost(g: InputGroup):
        b = g.batches[0]
        batch, seq = b["input_ids"].shape
        return (g.name in errors, seq < 7, batch < 2, min(batch, cap) * seq)

    g = min(failing, key=cost)
    return g, {k: v[:cap] for k, v in g.batches[0].items()}


def validate_artifact(artifact_dir: Path, options: ValidateOptions = ValidateOptions(), *,
                      progress: Callable[[str], None] | None = None) -> ValidationResult:
    """Compare ``options.variant`` of the artifact with PyTorch; record the summary in the manifest."""
    from ..env import machine, versions
    from ..runners import make_session, run_torch
    from ..runtime.engine import variant_engine

    started = time.perf_counter()
    say = progress or (lambda msg: None)
    art = Artifact.open(artifact_dir)
    spec = art.spec
    path = art.variant_path(options.variant)
    entry = art.variants[options.variant]
    precision, precision_from = variant_precision(entry, path)
    unknown = sorted(options.overridden_names() - set(spec.output_names))
    if unknown:
        raise UserInputError(
            f"tolerance override for {', '.join(unknown)}: no such output in the model",
            hint=f"outputs: {', '.join(spec.output_names)} (or * for all)",
        )
    tolerances = {o: options.tolerance_for(o, precision) for o in spec.output_names}
    notes: list[str] = []
    if precision_from == "graph":
        notes.append(f"the manifest gives no known precision for '{options.variant}'; read {precision} off the graph")
    say("preparing inputs")
    groups = build_groups(art, spec, options, notes)
    say("rebuilding the PyTorch reference from the manifest's source")
    t0 = time.perf_counter()
    loaded = load_reference(art)
    load_seconds = time.perf_counter() - t0
    recorded = art.recorded_sha256(entry["file"])
    file_sha = sha256_file(path)
    if recorded and recorded != file_sha:
        notes.append(f"{entry['file']} changed since the manifest recorded it (sha256 {file_sha[:12]}... vs {recorded[:12]}...)")
    engine_name = variant_engine(entry, options.variant, options.engine)
    if engine_name == "openvino":
        session, info, model_runner = _openvino_runner(path, entry, options)
    else:
        session, info = make_session(path, options.device, threads=options.threads)
        model_runner = quiet_runner(session, spec)

    say(f"running PyTorch on {len(groups)} groups")
    threads = reference_threads(loaded.module, options.threads)
    with torch_threads(threads):
        expected, torch_errors, torch_times = _run_all(lambda f: run_torch(loaded.module, spec, f), groups, "PyTorch")
    say(f"running {engine_name} ({info.obtained[0]}) on {len(groups)} groups")
    actual, ort_errors, ort_times = _run_all(model_runner, groups, "ONNX Runtime" if engine_name == "ort" else "OpenVINO")
    errors = {**ort_errors, **torch_errors}

    checks, outputs = judge_groups(spec, groups, expected, actual, errors, tolerances, ort_times)

    localization = None
    passed = all(c.passed for c in checks)
    if not passed and options.localize and engine_name != "ort":
        notes.append("localization needs ONNX Runtime (it reads intermediate outputs); re-run with --engine ort "
                     "on an ONNX variant to localize")
    elif not passed and options.localize:
        group, feeds = _pick_localization_feeds(groups, checks, errors, options.localize_max_batch)
        if group is not None:
            say(f"localizing the departure on {group.name}")
            from .localize import localize

            try:
                with torch_threads(threads):
                    localization = localize(path, loaded, spec, feeds, precision, options.device, group.name,
                                            trace_shape=art.export_record.get("trace_shape"))
            except Exception as e:  # the verdict stands; report why localization could not say more
                if os.environ.get("ONNXFORGE_DEBUG"):
                    raise
                localization = {"status": "error", "group": group.name,
                                "message": f"localization failed: {type(e).__name__}: {short_error(e)}", "stages": []}

    seconds = {
        "load_reference": round(load_seconds, 3),
        "pytorch": round(sum(torch_times), 3),
        "onnxruntime": round(sum(ort_times), 3),
        "total": round(time.perf_counter() - started, 3),
    }
    result = ValidationResult(
        artifact=str(art.root),
        variant=options.variant,
        file=entry["file"],
        precision=precision,
        device=info.device,
        provider=info.obtained[0],
        providers=list(info.obtained),
        tolerances={o: t.to_dict() for o, t in tolerances.items()},
        groups=[g.describe() for g in groups],
        checks=checks,
        outputs=outputs,
        localization=localization,
        seconds=seconds,
        environment={
            "versions": versions(),
            "machine": machine(),
            "providers_requested": list(info.requested),
            "providers_obtained": list(info.obtained),
            "torch_threads": threads,
            "ort_threads": options.threads,
            "engine": engine_name,
        },
        notes=notes,
        options=options.to_dict(),
        file_sha256=file_sha,
    )
    _record(art.root, options.variant, result)
    return result


def _record(root: Path, variant: str, result: ValidationResult) -> None:
    """Re-read the manifest just before writing, so a stage that saved meanwhile is kept.

    A folder that cannot be written (a read-only CI checkout) does not hide the verdict:
    the run is still reported, with a note saying the manifest was not updated.
    """
    art = Artifact.open(root)
    record = result.record()
    record["validated_at"] = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    art.record_stage(stage_key(VALIDATE, variant), record)
    try:
        art.save()
    except OSError as e:
        result.notes.append(f"the summary was not recorded in {root}/onnxforge.json: {e.strerror or e}")
