"""`build`: export -> optimize -> validate -> smoke -> package -> verify, as one job.

Each stage is the same public API a person can call alone, called here with its
typed options; this module only orders them, stops at the first failed check (the
artifact folder keeps every report written so far), and skips stages whose inputs
have not changed (``keys``). A stage is reused only when its key matches the one
recorded under ``build.keys``, its record says it passed, and every file in the
folder still has the sha256 its stage recorded. The one-line detail of a stage is
its report's ``summary()`` (kept under ``build.summaries`` for when it is reused).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..artifact import MANIFEST_NAME, Artifact, sha256_file
from ..errors import CheckFailed, OnnxforgeError, UserInputError
from ..report import StageReport
from ..vocab import (
    BASE_VARIANT, EXPORT, OPTIMIZE, PACKAGE, SMOKE, VALIDATE, VARIANT_FOR_PRECISION, VERIFY, resolve_device,
    stage_key,
)
from . import keys
from .options import BuildOptions
from .report import BuildReport, StageOutcome

Event = Callable[[str, Any], None]
Say = Callable[[str], None]
BUILD_TABLE = "build"


class _Stop(Exception):
    """A stage failed its check (or its input was wrong): the build stops here."""

    def __init__(self, name: str, error: OnnxforgeError | None = None):
        super().__init__(name)
        self.error = error


def _first_line(items: list[str]) -> str:
    return (items[0] if items else "") + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")


def _detail(report: StageReport) -> str:
    """A passed stage's summary; for a failed one, what failed first (its summary if it lists nothing)."""
    if report.passed:
        return report.summary()
    return _first_line(report.failures()) or report.summary()


def plan(options: BuildOptions, precisions: tuple[str, ...]) -> list[str]:
    """Every stage the build runs, in order."""
    variants = [VARIANT_FOR_PRECISION[p] for p in precisions]
    return ([EXPORT] + [stage_key(OPTIMIZE, v) for v in variants] + [stage_key(VALIDATE, v) for v in variants]
            + ([stage_key(SMOKE, v) for v in variants] if options.smoke else []) + [PACKAGE, VERIFY])


class _Runner:
    def __init__(self, options: BuildOptions, device: str, emit: Event, report: BuildReport):
        self.options = options
        self.device = device
        self.emit = emit
        self.report = report
        self.out = options.out
        self.keys: dict[str, str] = {}
        # From the build that last wrote the folder: its keys and one-line details.
        self.previous: dict[str, str] = {}
        self.summaries: dict[str, str] = {}
        self.intact = False

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
        if art is None or not art.has_table(BUILD_TABLE):
            if not self.options.force:
                raise UserInputError(
                    f"--out {out} already exists and was not written by `onnxforge build`",
                    hint="pass --force to replace it, or choose another folder",
                )
            return
        table = art.table(BUILD_TABLE)
        self.previous = dict(table.get("keys", {}))
        self.summaries = dict(table.get("summaries", {}))
        # Reuse trusts files only while they still have the hashes their stages recorded.
        self.intact = art.files_intact()

    # -- bookkeeping ---------------------------------------------------------------------
    def _reused(self, name: str, key: str) -> StageOutcome | None:
        if self.options.force or not self.intact or self.previous.get(name) != key:
            return None
        if not Artifact.open(self.out).stage_passed(name):
            return None
        return StageOutcome(name, "reused", 0.0, self.summaries.get(name) or "inputs unchanged", key)

    def _record(self, name: str, key: str, summary: str) -> None:
        art = Artifact.open(self.out)
        table = art.table(BUILD_TABLE)
        options = {k: v for k, v in self.options.to_dict().items() if k != "force"}
        table.update({"onnxforge_version": __version__, "options": options})
        table.setdefault("keys", {})[name] = key
        table.setdefault("summaries", {})[name] = summary
        art.save()

    def _forget(self, names: list[str]) -> None:
        """Drop records (and keys) that describe a file about to be replaced."""
        art = Artifact.open(self.out)
        table = art.table(BUILD_TABLE)
        for name in names:
            art.forget_stage(name)
            table.get("keys", {}).pop(name, None)
            table.get("summaries", {}).pop(name, None)
        art.save()

    def run_stage(self, name: str, key: str, run: Callable[[Say], StageReport]) -> StageOutcome:
        self.emit("start", name)
        self.keys[name] = key  # package's key covers every key before it
        outcome = self._reused(name, key)
        if outcome is None:
            started = time.perf_counter()
            try:
                stage_report = run(lambda msg: self.emit("progress", msg))
            except OnnxforgeError as e:
                # Shown in the summary, then raised again by the CLI for its exit code.
                status = "failed" if isinstance(e, CheckFailed) else "error"
                outcome = StageOutcome(name, status, time.perf_counter() - started, e.message, key)
                self.report.stages.append(outcome)
                self.emit("done", outcome)
                raise _Stop(name, e) from None
            detail = _detail(stage_report)
            passed = stage_report.passed
            outcome = StageOutcome(name, "passed" if passed else "failed", time.perf_counter() - started, detail, key)
            if passed and (self.out / MANIFEST_NAME).is_file():
                self._record(name, key, detail)
        self.report.stages.append(outcome)
        self.emit("done", outcome)
        if outcome.status == "failed":
            raise _Stop(name)
        return outcome

    # -- stages --------------------------------------------------------------------------
    def export(self, source) -> None:
        from ..export import ExportOptions, export_model
        from ..sources.fingerprint import source_fingerprint

        opts = ExportOptions(exporter=self.options.exporter, opset=self.options.opset, force=True)
        self.emit("progress", "hashing the model source")
        key = keys.export_key(source_fingerprint(source), opts)
        self.run_stage(EXPORT, key, lambda say: export_model(source, self.out, opts, progress=say))

    def optimize(self, precision: str) -> str:
        from ..optimize import OptimizeOptions

        opts = OptimizeOptions(precision=precision, device=self.device, strict=self.options.strict)
        variant = opts.variant
        name = stage_key(OPTIMIZE, variant)

        def run(say: Say) -> StageReport:
            from ..optimize import optimize_artifact

            self._forget([name, stage_key(VALIDATE, variant), stage_key(SMOKE, variant), PACKAGE, VERIFY])
            return optimize_artifact(self.out, opts, progress=say)

        self.run_stage(name, keys.optimize_key(self.keys[EXPORT], opts), run)
        return variant

    def validate(self, variant: str) -> None:
        from ..validate import validate_artifact

        opts = self.options.validate_options(variant, self.device)
        key = keys.validate_key(self.keys[stage_key(OPTIMIZE, variant)], opts, self.options.validate.get("text"))
        self.run_stage(stage_key(VALIDATE, variant), key, lambda say: validate_artifact(self.out, opts, progress=say))

    def smoke(self, variant: str) -> None:
        from ..smoke import SmokeOptions, smoke_artifact

        opts = SmokeOptions(variant=variant, device=self.device, **keys.SMOKE_TIMING)
        key = keys.smoke_key(self.keys[stage_key(OPTIMIZE, variant)], variant, self.device)
        self.run_stage(stage_key(SMOKE, variant), key, lambda say: smoke_artifact(self.out, opts, progress=say))

    def choose_default(self) -> None:
        """Time the faithful variants and record the fastest as the CPU default (serve and
        batch run it when no --variant is given; see bench.fastest). Kept while the
        variants' keys and the CPU model hold, so a rebuild reuses it and re-packages
        the same bytes; measured again otherwise."""
        from ..bench.fastest import faithful_variants, record_fastest
        from ..bench.machine import _cpu_model

        art = Artifact.open(self.out)
        candidates, _ = faithful_variants(art, self.device)
        key = keys.digest("default", __version__, self.device, _cpu_model(),
                          {v: self.keys.get(stage_key(OPTIMIZE, v), self.keys.get(EXPORT)) for v in sorted(candidates)})
        if ((art.manifest.get("default_variants") or {}).get(self.device) or {}).get("key") == key:
            return
        self.emit("progress", "measuring the faithful variants to choose the CPU default")
        record = record_fastest(self.out, self.device, progress=lambda m: self.emit("progress", m), key=key)
        times = ", ".join(f"{v} {t.get('job_ms', t['b1x128_ms']):.1f}" for v, t in record["measured_ms"].items())
        self.emit("progress", f"default on {self.device}: {record['variant']} ({record['engine']}); ms: {times}")

    def package(self, variants: list[str]) -> None:
        from ..release.package import PackageOptions, package_artifact

        archive = self.options.archive
        opts = PackageOptions(variants=tuple(variants), triton=self.options.triton, device=self.device, force=True)
        key = keys.package_key(self.keys, opts, archive.name)
        recorded = (Artifact.open(self.out).stage_record(PACKAGE) or {}).get("sha256")
        # Reuse needs the very archive that was written: present, with its recorded sha256.
        if not (archive.is_file() and recorded == sha256_file(archive)):
            self.previous.pop(PACKAGE, None)

        def run(say: Say) -> StageReport:
            report = package_artifact(self.out, archive, opts, progress=say)
            self.report.archive_sha256 = report.sha256 if report.passed else None
            return report

        if self.run_stage(PACKAGE, key, run).status == "reused":
            self.report.archive_sha256 = recorded

    def verify(self) -> None:
        from ..release.verify import VerifyOptions, verify_and_record

        archive = self.options.archive
        key = keys.verify_key(self.report.archive_sha256, self.device)
        self.run_stage(VERIFY, key,
                       lambda say: verify_and_record(self.out, archive, VerifyOptions(device=self.device), progress=say))

    def record_last_run(self) -> None:
        if not (self.out / MANIFEST_NAME).is_file():
            return
        report = self.report
        art = Artifact.open(self.out)
        art.table(BUILD_TABLE)["last_run"] = {
            "passed": report.passed, "failed_stage": report.failed_stage.name if report.failed_stage else None,
            "reused": report.reused, "stages": {s.name: s.status for s in report.stages},
        }
        art.save()


def build(options: BuildOptions, *, events: Event | None = None) -> BuildReport:
    """Run the whole build; the report lists every stage's outcome (truthy when all passed)."""
    started = time.perf_counter()
    emit = events or (lambda kind, payload: None)
    device = resolve_device(options.device, strict=True)
    precisions = options.resolved_precisions(device)
    source = options.source.resolve()
    archive = options.archive
    if options.out.resolve() in Path(archive).resolve().parents:
        raise UserInputError(f"--package {archive} is inside --out {options.out}", hint="write the archive beside the folder")
    report = BuildReport(out=options.out, archive=archive, device=device, precisions=precisions, config_file=options.config_file)
    runner = _Runner(options, device, emit, report)
    runner.inspect_out()
    options.validate_options(BASE_VARIANT, device)  # bad validate options: exit 2 before any work
    stages = plan(options, precisions)
    emit("plan", stages)
    try:
        runner.export(source)
        variants = [runner.optimize(p) for p in precisions]
        for v in variants:
            runner.validate(v)
        if options.smoke:
            for v in variants:
                runner.smoke(v)
        if device == "cpu":
            runner.choose_default()
        runner.package([BASE_VARIANT, *variants])
        runner.verify()
    except _Stop as stop:
        report.error = stop.error
        done = {s.name for s in report.stages}
        report.stages += [StageOutcome(name, "not run") for name in stages if name not in done]
    report.seconds = time.perf_counter() - started
    runner.record_last_run()
    return report
