"""torch -> ONNX with either exporter, written atomically as a new artifact folder.

Default exporter: dynamo (torch's supported exporter; SDPA attention where the
architecture has it, fused by onnxscript's ort_fusions). TorchScript with eager
attention stays available: onnxruntime.transformers' BERT optimizer fuses that graph
completely, EmbedLayerNormalization included. See docs/exporters.md and backends.py.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import BASE_MODEL_NAME, MANIFEST_SCHEMA, Artifact, refuse_inputs_inside, staged_directory
from ..parity.judge import judge_output, public
from ..parity.tolerance import resolve_tolerance
from ..env import versions
from ..errors import UserInputError
from ..inputs import random_inputs
from ..runners import make_session, run_session, run_torch
from ..sources import LoadedModel, SourceRef, load_source
from ..spec import ModelSpec
from ..vocab import EXPORTERS, short_error
from .backends import TRACE_SHAPE, captured_output, export_dynamo, export_torchscript, root_cause, write_failure_log

DEFAULT_EXPORTER = EXPORTERS[0]
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
# Attention implementation each exporter's graph is fused best from.
ATTENTION_FOR_EXPORTER = {"torchscript": "eager", "dynamo": "sdpa"}
# Protobuf cannot hold more than 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2
GOLDEN_TEXT_COUNT = 4


@dataclass(frozen=True)
class ExportOptions:
    exporter: str = DEFAULT_EXPORTER
    opset: int | None = None
    force: bool = False
    # Models whose weights exceed this many bytes keep them in model.onnx.data.
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    # The shape check runs at a batch and sequence length the trace did not use.
    check_shape: tuple[int, int] = (3, 37)
    check_atol: float = 1e-4

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise UserInputError(f"--exporter {self.exporter} is not known", hint=f"choose one of {', '.join(EXPORTERS)}")
        if self.opset is not None and not 14 <= self.opset <= 23:
            raise UserInputError(f"--opset {self.opset} is out of range", hint="use an opset between 14 and 23")
        if tuple(self.check_shape) == TRACE_SHAPE:
            raise ValueError("the export check must run at a shape other than the trace shape")

    @property
    def resolved_opset(self) -> int:
        return self.opset or DEFAULT_OPSET[self.exporter]


@dataclass
class ExportReport:
    """The export's shape check; honours ``report.StageReport`` (truthy when it passed)."""

    out: Path
    passed: bool
    check: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        found = [f"{name}: {'; '.join(d.get('reasons') or ['failed'])}"
                 for name, d in self.check.get("outputs", {}).items() if not d["passed"]]
        error = self.check.get("error")
        return ([error] if error else []) + ([] if error and not found else found)

    def summary(self) -> str:
        if not self.passed:
            return next(iter(self.failures()), "the export check failed")
        worst = max((d.get("max_abs") or 0.0 for d in self.check.get("outputs", {}).values()), default=0.0)
        return f"parity at batch {self.check.get('batch')} x {self.check.get('sequence')}: max abs {worst:.2g}"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "out": str(self.out), "check": self.check, "seconds": self.seconds,
                "failures": self.failures()}


def _save_final(tmp_path: Path, final_path: Path, threshold: int) -> bool:
    """Re-save the exported graph, moving weights to model.onnx.data past ``threshold``."""
    import onnx

    model = onnx.load(str(tmp_path), load_external_data=True)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    external = weight_bytes > threshold
    if external:
        onnx.save_model(
            model,
            str(final_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=final_path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(final_path))
    return external


def _check_graph(path: Path, spec: ModelSpec) -> dict[str, Any]:
    """onnx.checker with full shape inference, and the dynamic axes the spec promises."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise UserInputError(f"the exported graph fails onnx.checker: {short_error(e, 300)}") from None
    model = onnx.load(str(path), load_external_data=False)
    baked = []
    dims = {}
    for value in list(model.graph.input) + list(model.graph.output):
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in shape]
        for axis in spec.dynamic_axes().get(value.name, {}):
            if axis < len(shape) and shape[axis].HasField("dim_value"):
                baked.append(f"{value.name}[{axis}]={shape[axis].dim_value}")
    return {"opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
            "ir_version": model.ir_version, "dims": dims, "static_dims": baked}


def shape_check(path: Path, loaded: LoadedModel, options: ExportOptions) -> dict[str, Any]:
    """Run ORT and PyTorch at a shape the trace did not see: catches baked-in shapes."""
    spec = loaded.spec
    batch, seq = options.check_shape
    seq = min(seq, spec.max_positions)
    feeds = random_inputs(spec, batch, seq, seed=11)
    expected = run_torch(loaded.module, spec, feeds)
    session, info = make_session(path, "cpu")
    outputs: dict[str, Any] = {}
    error = None
    try:
        actual = run_session(session, spec, feeds)
    except Exception as e:  # a graph that cannot run at this shape baked one in
        error = f"ONNX Runtime failed at batch {batch}, sequence {seq}: {short_error(e, 300)}"
        actual = None
    mask = feeds.get("attention_mask")
    for out in spec.outputs:
        if actual is None:
            outputs[out.name] = {"passed": False, "max_abs": float("inf")}
            continue
        if actual[out.name].shape != expected[out.name].shape:
            outputs[out.name] = {"passed": False, "max_abs": float("inf"),
                                 "shape": [list(actual[out.name].shape), list(expected[out.name].shape)]}
            error = error or f"{out.name} has shape {actual[out.name].shape}, PyTorch gives {expected[out.name].shape}"
            continue
        # fp32 parity, with the export's own atol (ExportOptions.check_atol) over the default's.
        tol = resolve_tolerance(out.name, "fp32", {"atol": {"*": options.check_atol}})
        verdict = judge_output(out, [(expected[out.name], actual[out.name], mask)], tol)
        outputs[out.name] = {"passed": verdict.passed, **public(verdict.metrics), "reasons": verdict.reasons}
    return {
        "batch": batch,
        "sequence": seq,
        "trace_shape": list(TRACE_SHAPE),
        "atol": options.check_atol,
        "provider": info.obtained[0],
        "error": error,
        "passed": error is None and all(o["passed"] for o in outputs.values()),
        "outputs": outputs,
    }


def write_goldens(stage: Path, loaded: LoadedModel) -> dict[str, Any] | None:
    """Golden inputs/outputs for a few real texts, from PyTorch, for smoke and verify."""
    from ..data import sample_texts
    from ..tokenizer import load_tokenizer
    from ..textbatch import encode_texts

    if not (stage / "tokenizer.json").is_file():
        return None
    tokenizer = load_tokenizer(stage)
    texts = sample_texts(GOLDEN_TEXT_COUNT)
    feeds = encode_texts(tokenizer, texts, loaded.spec)
    from ..parity.goldens import write_goldens as write

    outputs = run_torch(loaded.module, loaded.spec, feeds)
    return write(stage, texts, feeds, outputs)


def _copy_support_files(stage: Path, loaded: LoadedModel) -> list[str]:
    from ..tokenizer import check_tokenizer_fits, ensure_tokenizer_json, load_tokenizer

    copied = []
    for name, src in sorted(loaded.tokenizer_files.items()):
        shutil.copyfile(src, stage / name)
        copied.append(name)
    if loaded.config_path is not None:
        shutil.copyfile(loaded.config_path, stage / "config.json")
        copied.append("config.json")
    for name, src in sorted(loaded.extra_files.items()):
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, stage / name)
        copied.append(name)
    if "modules.json" in loaded.extra_files:
        from ..sources.sentence_transformers import root_transformer_modules

        root_transformer_modules(stage / "modules.json")
    if copied and "tokenizer.json" not in copied and loaded.tokenizer_files:
        ensure_tokenizer_json(stage)
        copied.append("tokenizer.json")
    if (stage / "tokenizer.json").is_file():
        # Load the user's own file when there is one, so an error names it, not the staging copy.
        check_tokenizer_fits(load_tokenizer(loaded.tokenizer_files.get("tokenizer.json", stage)), loaded.spec)
    return copied


def run_exporter(loaded: LoadedModel, raw: Path, options: ExportOptions, out: Path) -> None:
    """Run the chosen exporter; on failure, one line for the user and the exporter's text in a log."""
    import torch

    export = export_torchscript if options.exporter == "torchscript" else export_dynamo
    model_name = type(loaded.module.model).__name__
    failure = None
    with captured_output() as output:
        try:
            export(loaded.module, loaded.spec, raw, options.resolved_opset)
        except UserInputError:
            raise
        except (torch.onnx.errors.OnnxExporterError, torch.onnx.errors.UnsupportedOperatorError, RuntimeError,
                ValueError, TypeError, AssertionError, NotImplementedError) as e:
            failure = e
    if failure is not None:
        log = write_failure_log(out.parent / f"{out.name}.export.log", options.exporter, model_name,
                                output.getvalue(), failure)
        other = "torchscript" if options.exporter == "dynamo" else "dynamo"
        raise UserInputError(
            f"the {options.exporter} exporter could not export {model_name}: {root_cause(failure)}",
            hint=f"the exporter's full output is in {log}; try --exporter {other}",
        ) from failure


def export_model(source: SourceRef, out: Path, options: ExportOptions = ExportOptions(), *, progress=None) -> ExportReport:
    """Export ``source`` into a new artifact folder ``out``; returns the shape-check report.

    The folder is built beside ``out`` and renamed into place only when complete.
    A failed shape check still publishes the folder (its manifest says why) and
    returns a falsy report, so the CLI exits 1 and the evidence stays inspectable.
    """
    started = time.perf_counter()
    out = Path(out)
    say = progress or (lambda msg: None)
    # --force replaces --out as a whole: it must not hold the files the export reads.
    refuse_inputs_inside(out, {"model folder": source.location if source.kind == "hf" else None,
                               "--weights file": source.weights, "--tokenizer": source.tokenizer,
                               "folder the factory is imported from": source.app_dir})
    if out.is_dir() and any(out.iterdir()) and not options.force:
        raise UserInputError(f"--out {out} already exists and is not empty", hint="pass --force to replace it, or choose another folder")
    attn = ATTENTION_FOR_EXPORTER[options.exporter]
    say("loading the PyTorch model")
    loaded = load_source(source, attn_implementation=attn)
    with staged_directory(out, force=options.force) as stage:
        copied = _copy_support_files(stage, loaded)
        say(f"exporting with the {options.exporter} exporter (opset {options.resolved_opset})")
        raw_dir = stage / ".raw"
        raw_dir.mkdir()
        raw = raw_dir / "model.onnx"
        run_exporter(loaded, raw, options, out)
        final = stage / BASE_MODEL_NAME
        external = _save_final(raw, final, options.external_data_threshold)
        shutil.rmtree(raw_dir)
        say("checking the graph (onnx.checker, shape inference)")
        graph = _check_graph(final, loaded.spec)
        goldens = write_goldens(stage, loaded)
        say(f"checking parity at batch {options.check_shape[0]}, sequence {options.check_shape[1]}")
        check = shape_check(final, loaded, options)
        if graph["static_dims"]:
            check["passed"] = False
            check["error"] = check["error"] or f"the graph baked in dimensions: {', '.join(graph['static_dims'])}"
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "onnxforge_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "source": source.to_dict(),
            "spec": loaded.spec.to_dict(),
            "export": {
                "exporter": options.exporter,
                "opset": graph["opset"],
                "ir_version": graph["ir_version"],
                "attn_implementation": loaded.attn_implementation,
                "external_data": external,
                "trace_shape": list(TRACE_SHAPE),
                "dims": graph["dims"],
            },
            "versions": versions(),
            "variants": {"base": {"file": BASE_MODEL_NAME, "precision": "fp32"}},
            "files": {},
            "goldens": goldens,
            "pipeline": loaded.pipeline,
            "stages": {},
        }
        artifact = Artifact(stage, manifest)
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            artifact.record_file(path.relative_to(stage).as_posix())
        report = ExportReport(out=out, passed=bool(check["passed"]), check=check)
        report.seconds = round(time.perf_counter() - started, 2)
        artifact.record_stage("export", {"passed": report.passed, "seconds": report.seconds, "check": check,
                                         "files_copied": copied})
        artifact.save()
    return report
