"""`build`: export -> optimize -> validate -> smoke -> package -> verify, as one job.

Each stage is the same API a person can call alone; this module only orders them,
stops at the first failed check (the artifact folder keeps every report written so
far), and skips stages whose inputs have not changed.

Stage reuse is keyed by content, never by timestamps. The export key hashes the
source's files (weights, config, tokenizer; a factory's module file and state_dict),
the export options and the onnxforge version; each later key hashes the key of the
stage it reads plus its own options. Keys are recorded in the manifest under
``build.keys``; a stage is reused only when its key matches, its report says it
passed, and every file in the folder still has the sha256 its stage recorded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..artifact import MANIFEST_NAME, Artifact, sha256_file
from ..errors import CheckFailed, OnnxforgeError, UserInputError

PRECISIONS = ("fp32", "fp16", "int8")
# The variant optimize writes for each precision (fp32 is the fused graph).
VARIANT_FOR_PRECISION = {"fp32": "optimized", "fp16": "fp16", "int8": "int8"}
DEFAULT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "int8")}
DEVICES = ("cpu", "cuda", "auto")
EXPORTERS = ("torchscript", "dynamo")
# The build's smoke test checks correctness fully and times briefly (a latency table
# is `onnxforge smoke`'s or `onnxforge bench`'s job); this keeps MiniLM's build short.
SMOKE_TIMING = {"batch_sizes": (1, 8), "iterations": 10, "min_iterations": 3, "max_seconds": 1.0}
_VALIDATE_PER_OUTPUT = ("atol", "rtol", "min_cosine", "min_argmax")


@dataclass(frozen=True)
class BuildOptions:
    """Everything `onnxforge build` needs; CLI flags and the TOML config both land here."""

    model: str | None = None
    out: Path = Path("artifacts/minilm")
    task: str | None = None
    weights: str | None = None
    tokenizer: str | None = None
    app_dir: str | None = None
    num_heads: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    exporter: str = "torchscript"
    opset: int | None = None
    # Empty: fused fp32 + int8 on CPU, plus fp16 on CUDA.
    precisions: tuple[str, ...] = ()
    device: str = "cpu"
    strict: bool = False
    smoke: bool = True
    # The archive; None: <out>.tar.gz beside the folder.
    package: Path | None = None
    triton: bool = False
    # ValidateOptions overrides (text, column, atol, rtol, min_cosine, min_argmax, max_texts, sample_size, seed).
    validate: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    config_file: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.package is not None:
            object.__setattr__(self, "package", Path(self.package))
        precisions = tuple(dict.fromkeys(p.strip().lower() for p in self.precisions if p.strip()))
        bad = [p for p in precisions if p not in PRECISIONS]
        if bad:
            raise UserInputError(f"--precision {', '.join(bad)} is not known", hint=f"choose from {', '.join(PRECISIONS)}")
        object.__setattr__(self, "precisions", precisions)
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        if self.exporter not in EXPORTERS:
            raise UserInputError(f"--exporter {self.exporter} is not known", hint=f"choose one of {', '.join(EXPORTERS)}")
        if self.package is not None and not self.package.name.endswith((".tar.gz", ".tgz")):
            raise UserInputError(f"--package {self.package} does not end in .tar.gz", hint="e.g. --package artifacts/minilm.tar.gz")

    @property
    def archive(self) -> Path:
        return self.package or self.out.parent / f"{self.out.name}.tar.gz"

    def resolved_precisions(self, device: str) -> tuple[str, ...]:
        return self.precisions or DEFAULT_PRECISIONS[device]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "package", "config_file"):
            d[k] = None if d[k] is None else str(d[k])
        d["precisions"] = list(self.precisions)
        return d

    @classmethod
    def merged(cls, cli: dict[str, Any], config: dict[str, Any], config_file: Path | None = None) -> "BuildOptions":
        """CLI values that were given (not None) win over the config file, which wins over defaults."""
        renamed = {"precision": "precisions"}
        values: dict[str, Any] = {}
        for key, value in config.items():
            values[renamed.get(key, key)] = value
        for key, value in cli.items():
            if value is not None and not (isinstance(value, (list, tuple)) and not value):
                values[renamed.get(key, key)] = value
        if "precisions" in values:
            flat = []
            for item in values["precisions"]:
                flat += [p for p in str(item).split(",") if p.strip()]
            values["precisions"] = tuple(flat)
        values["config_file"] = config_file
        unknown = set(values) - {f for f in cls.__dataclass_fields__}
        if unknown:  # pragma: no cover - config.py rejects unknown keys first
            raise UserInputError(f"unknown build options: {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass
class StageOutcome:
    name: str
    status: str  # passed, reused, failed (a check), error (bad input), skipped, not run
    seconds: float = 0.0
    detail: str = ""
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "reused", "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2), "detail": self.detail,
                "key": self.key}


@dataclass
class BuildReport:
    out: Path
    archive: Path
    device: str
    precisions: tuple[str, ...]
    stages: list[StageOutcome] = field(default_factory=list)
    archive_sha256: str | None = None
    seconds: float = 0.0
    config_file: Path | None = None
    # A stage that stopped on bad input (exit 2) rather than a failed check.
    error: OnnxforgeError | None = None

    def __bool__(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages)

    @property
    def passed(self) -> bool:
        return bool(self)

    @property
    def failed_stage(self) -> StageOutcome | None:
        return next((s for s in self.stages if s.status in ("failed", "error")), None)

    @property
    def reused(self) -> list[str]:
        return [s.name for s in self.stages if s.status == "reused"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "out": str(self.out), "archive": str(self.archive), "archive_sha256": self.archive_sha256,
            "device": self.device, "precisions": list(self.precisions), "config_file": str(self.config_file) if self.config_file else None,
            "stages": [s.to_dict() for s in self.stages], "reused": self.reused,
            "failed_stage": self.failed_stage.name if self.failed_stage else None, "seconds": round(self.seconds, 2),
        }


# -- content keys -----------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (hidden files and folders left out)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or "__pycache__" in rel.parts or not path.is_file():
            continue
        out[rel.as_posix()] = sha256_file(path)
    return out


def source_fingerprint(source) -> dict[str, Any]:
    """What the export reads, by content: a folder's files, a factory's module and weights."""
    import importlib.util
    import sys

    files: dict[str, Any] = {}
    if source.kind == "builtin":
        from ..sources.builtin import builtin_model_dir

        files["model"] = _hash_tree(builtin_model_dir())
    elif source.kind == "hf":
        files["model"] = _hash_tree(Path(source.location))
    else:
        module_name = source.location.partition(":")[0]
        added = source.app_dir and source.app_dir not in sys.path
        if added:
            sys.path.insert(0, source.app_dir)
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        finally:
            if added:
                sys.path.remove(source.app_dir)
        origin = Path(spec.origin) if spec and spec.origin and Path(spec.origin).is_file() else None
        # A factory's code lives in its module (and what it imports, which is not hashed).
        files["module"] = sha256_file(origin) if origin else None
        if source.weights:
            files["weights"] = sha256_file(Path(source.weights))
    if source.tokenizer:
        tok = Path(source.tokenizer)
        files["tokenizer"] = _hash_tree(tok) if tok.is_dir() else sha256_file(tok)
    return {"source": source.to_dict(), "files": files}


# -- the pipeline -----------------------------------------------------------------------------


Event = Callable[[str, Any], None]


class _Stop(Exception):
    """A stage failed its check (or its input was wrong): the pipeline stops here."""

    def __init__(self, name: str, error: OnnxforgeError | None = None):
        super().__init__(name)
        self.error = error


def _call(fn, *args, progress=None, **kwargs):
    """Call a stage API, passing ``progress`` only to APIs that take it."""
    try:
        takes = "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    return fn(*args, progress=progress, **kwargs) if takes and progress else fn(*args, **kwargs)


def _options(cls, **values):
    """Build a stage's options dataclass from the fields it has (names may grow over time)."""
    known = {f for f in getattr(cls, "__dataclass_fields__", {})}
    return cls(**{k: v for k, v in values.items() if k in known})


def _first_line(items) -> str:
    items = list(items or [])
    return (items[0] if items else "") + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")


class _Runner:
    def __init__(self, options: BuildOptions, emit: Event):
        self.options = options
        self.emit = emit
        self.out = options.out
        self.keys: dict[str, str] = {}
        self.previous: dict[str, str] = {}
        self.intact = False
        self.report: BuildReport | None = None

    # -- bookkeeping -----------------------------------------------------------------------
    def artifact(self) -> Artifact:
        return Artifact.open(self.out)

    def record_key(self, stage: str, key: str) -> None:
        art = self.artifact()
        build = art.manifest.setdefault("build", {})
        options = {k: v for k, v in self.options.to_dict().items() if k != "force"}
        build.update({"onnxforge_version": __version__, "options": options})
        build.setdefault("keys", {})[stage] = key
        art.save()

    def forget(self, stages: list[str]) -> None:
        """Drop reports (and keys) that describe a file about to be replaced."""
        art = self.artifact()
        for name in stages:
            art.manifest.get("stages", {}).pop(name, None)
            art.manifest.get("build", {}).get("keys", {}).pop(name, None)
        art.save()

    def reusable(self, stage: str, key: str) -> bool:
        if self.options.force or not self.intact or self.previous.get(stage) != key:
            return False
        record = self.artifact().stage(stage)
        return bool(record) and record.get("passed") is True

    def run_stage(self, name: str, key: str, fn: Callable[[Callable[[str], None]], tuple[bool, str]],
                  reuse_detail: Callable[[], str] | None = None) -> StageOutcome:
        self.emit("start", name)
        self.keys[name] = key  # later stages' keys (package's) cover every key before them
        started = time.perf_counter()
        if self.reusable(name, key):
            outcome = StageOutcome(name, "reused", 0.0, reuse_detail() if reuse_detail else "inputs unchanged", key)
        else:
            try:
                passed, detail = fn(lambda msg: self.emit("progress", msg))
            except OnnxforgeError as e:
                # Shown in the summary, then raised again by the CLI for its exit code.
                status = "failed" if isinstance(e, CheckFailed) else "error"
                outcome = StageOutcome(name, status, time.perf_counter() - started, e.message, key)
                self.report.stages.append(outcome)
                self.emit("done", outcome)
                raise _Stop(name, e) from None
            outcome = StageOutcome(name, "passed" if passed else "failed", time.perf_counter() - started, detail, key)
            if passed and (self.out / MANIFEST_NAME).is_file():
                self.record_key(name, key)
        self.report.stages.append(outcome)
        self.emit("done", outcome)
        if outcome.status == "failed":
            raise _Stop(name)
        return outcome

    # -- the start: what is already there ------------------------------------------------
    def inspect_out(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--out {out} is a file, not a folder", hint="choose a folder path")
        if not out.is_dir() or not any(out.iterdir()):
            return
        try:
            art = Artifact.open(out)
        except UserInputError:
            art = None
        if art is None or "build" not in art.manifest:
            if not self.options.force:
                raise UserInputError(
                    f"--out {out} already exists and was not written by `onnxforge build`",
                    hint="pass --force to replace it, or choose another folder",
                )
            return
        self.previous = dict(art.manifest["build"].get("keys", {}))
        # Reuse trusts files only while they still have the hashes their stages recorded.
        files = art.manifest.get("files", {})
        self.intact = all(
            (out / name).is_file() and (out / name).stat().st_size == entry["size"] and sha256_file(out / name) == entry["sha256"]
            for name, entry in files.items()
        )

    # -- stages ------------------------------------------------------------------------------
    def export(self, source, source_print) -> None:
        from ..export import ExportOptions, export_model

        opts = ExportOptions(exporter=self.options.exporter, opset=self.options.opset, force=True)
        settings = {k: v for k, v in asdict(opts).items() if k != "force"} | {"opset": opts.resolved_opset}
        key = _digest("export", __version__, source_print, settings)

        def run(say):
            report = export_model(source, self.out, opts, progress=say)
            worst = max((d.get("max_abs") or 0.0 for d in report.check.get("outputs", {}).values()), default=0.0)
            detail = (f"parity at batch {report.check.get('batch')} x {report.check.get('sequence')}: max abs {worst:.2g}"
                      if report else report.check.get("error") or _first_line(report.failures()))
            return bool(report), detail

        self.run_stage("export", key, run)

    def optimize(self, precision: str, device: str) -> str:
        variant = VARIANT_FOR_PRECISION[precision]
        name = f"optimize.{variant}"
        from ..optimize import OptimizeOptions

        opts = _options(OptimizeOptions, precision=precision, device=device, strict=self.options.strict)
        # Every option field, defaults included: a changed calibration default is a new key.
        key = _digest(name, __version__, self.keys["export"], asdict(opts))

        def run(say):
            from ..optimize import optimize_artifact

            self.forget([name, f"validate.{variant}", f"smoke.{variant}", "package", "verify"])
            report = _call(optimize_artifact, self.out, opts, progress=say)
            # bool(report): fully fused and every check passed; report.passed: usable
            # (checks passed, and fully fused under --strict). Only the latter stops the build.
            usable = bool(getattr(report, "passed", bool(report)))
            failures = report.failures() if hasattr(report, "failures") else []
            if not usable:
                return False, _first_line(failures) or "optimize reported a failure"
            detail = self._fused_detail(name)
            return True, detail if report else f"not fully fused ({_first_line(failures)}); {detail}"

        self.run_stage(name, key, run, reuse_detail=lambda: self._fused_detail(name))
        return variant

    def _fused_detail(self, name: str) -> str:
        record = self.artifact().stage(name) or {}
        fused = record.get("fused_ops") or {}
        return ", ".join(f"{n} {op}" for op, n in fused.items()) if isinstance(fused, dict) and fused else "no fused ops"

    def validate_options(self, variant: str, device: str):
        """ValidateOptions from the build's overrides (also called up front, to fail early on bad ones)."""
        from ..validate import ValidateOptions

        values: dict[str, Any] = {"variant": variant, "device": device}
        for k, v in self.options.validate.items():
            if k == "text":
                values["text_file"] = Path(v)
            elif k in _VALIDATE_PER_OUTPUT:
                values[k] = v if isinstance(v, dict) else {"*": float(v)}
            else:
                values[k] = v
        return _options(ValidateOptions, **values)

    def validate(self, variant: str, device: str) -> None:
        name = f"validate.{variant}"
        opts = self.validate_options(variant, device)
        overrides = self.options.validate
        key = _digest(name, __version__, self.keys[f"optimize.{variant}"], _jsonable(opts),
                      _text_fingerprint(overrides.get("text")))

        def run(say):
            from ..validate import validate_artifact

            result = _call(validate_artifact, self.out, opts, progress=say)
            return bool(result), _parity_detail(self.artifact().stage(name) or {}) if result else _first_line(result.failures())

        self.run_stage(name, key, run, reuse_detail=lambda: _parity_detail(self.artifact().stage(name) or {}))

    def smoke(self, variant: str, device: str) -> None:
        name = f"smoke.{variant}"
        key = _digest(name, __version__, self.keys[f"optimize.{variant}"], device, SMOKE_TIMING)

        def run(say):
            from ..smoke import SmokeOptions, smoke_artifact

            opts = _options(SmokeOptions, variant=variant, device=device, **SMOKE_TIMING)
            report = _call(smoke_artifact, self.out, opts, progress=say)
            if report:
                return True, _smoke_detail(self.artifact().stage(name) or {})
            failures = getattr(report, "failures", None)
            return False, _first_line(failures() if callable(failures) else failures) or "smoke test failed"

        self.run_stage(name, key, run, reuse_detail=lambda: _smoke_detail(self.artifact().stage(name) or {}))

    def package(self, variants: list[str], device: str) -> None:
        from .package import PackageOptions, package_artifact

        archive = self.options.archive
        opts = PackageOptions(variants=tuple(variants), triton=self.options.triton, device=device, force=True)
        key = _digest("package", __version__, dict(self.keys), opts.to_dict(), archive.name)
        record = self.artifact().stage("package") or {}
        # Reuse needs the very archive that was written: present, with its recorded sha256.
        still_there = archive.is_file() and record.get("sha256") == sha256_file(archive)

        def run(say):
            report = package_artifact(self.out, archive, opts, progress=say)
            if not report:
                return False, _first_line(report.failures)
            self.report.archive_sha256 = report.sha256
            return True, f"{archive.name}: {len(report.files)} files, {report.size / 1e6:.1f} MB"

        if not still_there:
            self.previous.pop("package", None)
        outcome = self.run_stage("package", key, run, reuse_detail=lambda: f"{archive.name} unchanged")
        if outcome.status == "reused":
            self.report.archive_sha256 = record.get("sha256")

    def verify(self, device: str) -> None:
        from .verify import VerifyOptions, verify_path

        archive = self.options.archive
        key = _digest("verify", __version__, self.report.archive_sha256, device)

        def run(say):
            report = verify_path(archive, VerifyOptions(device=device), progress=say)
            d = report.to_dict()
            art = self.artifact()
            art.record_stage("verify", {"passed": report.passed, "archive": str(archive), "archive_sha256": d["archive"]["sha256"]
                                        if d["archive"] else None, "counts": d["counts"], "failures": d["failures"],
                                        "device": device, "seconds": report.seconds})
            art.save()
            if report:
                return True, f"{d['counts']['passed']} checks passed" + (f", {d['counts']['skipped']} skipped" if d["counts"]["skipped"] else "")
            return False, _first_line(report.failures())

        self.run_stage("verify", key, run, reuse_detail=lambda: "the archive's sha256 is the one verified")


def _jsonable(options) -> Any:
    to_dict = getattr(options, "to_dict", None)
    return to_dict() if callable(to_dict) else asdict(options)


def _text_fingerprint(text: str | None) -> str | None:
    return sha256_file(Path(text)) if text and Path(text).is_file() else None


def _parity_detail(summary: dict[str, Any]) -> str:
    parts = []
    for out, m in (summary.get("outputs") or {}).items():
        if m.get("min_cosine") is not None:
            parts.append(f"{out} min cos {m['min_cosine']:.5f}, max abs {m.get('max_abs') or 0:.2g}")
    return "; ".join(parts) or ("passed" if summary.get("passed") else "")


def _smoke_detail(record: dict[str, Any]) -> str:
    checks = record.get("checks") or []
    parts = [f"{sum(1 for c in checks if c.get('passed'))}/{len(checks)} checks"] if checks else []
    for row in record.get("latency") or []:
        if isinstance(row, dict) and row.get("p50_ms") is not None:
            parts.append(f"batch {row.get('batch_size')} p50 {row['p50_ms']:.1f} ms")
    return ", ".join(parts) or ("passed" if record.get("passed") else "")


def resolve_device(device: str) -> str:
    from ..runners import cuda_unavailable_reason

    reason = cuda_unavailable_reason() if device in ("cuda", "auto") else None
    if device == "auto":
        return "cpu" if reason else "cuda"
    if device == "cuda" and reason:
        raise CheckFailed(f"--device cuda was asked for but ONNX Runtime cannot use CUDA here: {reason}",
                          hint="use --device cpu (or auto), or install onnxruntime-gpu with a working CUDA")
    return device


def build(options: BuildOptions, *, events: Event | None = None) -> BuildReport:
    """Run the whole pipeline; the report lists every stage's outcome (truthy when all passed)."""
    from ..sources import resolve_source

    started = time.perf_counter()
    emit = events or (lambda kind, payload: None)
    device = resolve_device(options.device)
    precisions = options.resolved_precisions(device)
    source = resolve_source(options.model, task=options.task, weights=options.weights, tokenizer=options.tokenizer,
                            app_dir=options.app_dir, num_heads=options.num_heads, hidden_size=options.hidden_size,
                            num_layers=options.num_layers)
    archive = options.archive
    if options.out.resolve() in archive.resolve().parents:
        raise UserInputError(f"--package {archive} is inside --out {options.out}", hint="write the archive beside the folder")
    runner = _Runner(options, emit)
    report = BuildReport(out=options.out, archive=archive, device=device, precisions=precisions, config_file=options.config_file)
    runner.report = report
    runner.inspect_out()
    runner.validate_options("base", device)  # bad validate options: exit 2 before any work
    plan = ["export"] + [f"optimize.{VARIANT_FOR_PRECISION[p]}" for p in precisions] \
        + [f"validate.{VARIANT_FOR_PRECISION[p]}" for p in precisions] \
        + ([f"smoke.{VARIANT_FOR_PRECISION[p]}" for p in precisions] if options.smoke else []) + ["package", "verify"]
    emit("plan", plan)
    try:
        emit("progress", "hashing the model source")
        runner.export(source, source_fingerprint(source))
        variants = [runner.optimize(p, device) for p in precisions]
        for v in variants:
            runner.validate(v, device)
        if options.smoke:
            for v in variants:
                runner.smoke(v, device)
        runner.package(["base", *variants], device)
        runner.verify(device)
    except _Stop as stop:
        report.error = stop.error
        done = {s.name for s in report.stages}
        report.stages += [StageOutcome(name, "not run") for name in plan if name not in done]
    report.seconds = time.perf_counter() - started
    if (options.out / MANIFEST_NAME).is_file():
        art = Artifact.open(options.out)
        art.manifest.setdefault("build", {})["last_run"] = {
            "passed": report.passed, "failed_stage": report.failed_stage.name if report.failed_stage else None,
            "reused": report.reused, "stages": {s.name: s.status for s in report.stages},
        }
        art.save()
    return report
