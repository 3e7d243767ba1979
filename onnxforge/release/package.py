"""`package`: an artifact folder -> a reproducible, self-describing .tar.gz.

The archive holds one top-level folder (named after the archive) with the chosen
model variants, the tokenizer and config files, ``goldens.npz``, a sealed manifest
(``onnxforge.json``: sha256 and size of every file, opset and IR version, producer
versions, I/O signatures, fused-op counts, precision, parity, golden checks) and
``MODEL_CARD.md``; with ``triton=True`` also a Triton model repository under
``triton/``. Nothing is written unless every file still matches the hash its stage
recorded and every variant still reproduces the golden outputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import CONFIG_FILES, GOLDENS_NAME, MANIFEST_NAME, TOKENIZER_FILES, Artifact, model_files, sha256_file
from ..errors import UserInputError
from ..vocab import DEVICES, PER_VARIANT_STAGES, VARIANTS, stage_key
from .archive import archive_stem, check_archive_name, write_archive
from .card import CARD_NAME, render_card
from .seal import seal

PACKAGE_FORMAT = 1
# Which variant the card's example and the Triton repository use, best first.
PREFERRED_VARIANTS = ("optimized", "base", "int8", "fp16")
assert set(PREFERRED_VARIANTS) <= set(VARIANTS), "an order over vocab.VARIANTS"
# Stage records about packaging itself stay out of the packaged manifest, or the
# second packaging of a folder would differ from the first.
NOT_PACKAGED_STAGES = ("package", "verify")


@dataclass(frozen=True)
class PackageOptions:
    """What goes into the archive.

    ``variants``: empty for every variant whose validation and smoke test did not fail.
    ``device``: where the golden texts are re-run before writing (fp16 needs cuda).
    """

    variants: tuple[str, ...] = ()
    triton: bool = False
    triton_variant: str | None = None
    triton_name: str | None = None
    max_batch_size: int = 64
    device: str = "cpu"
    force: bool = False

    def __post_init__(self) -> None:
        from .triton import model_name

        object.__setattr__(self, "variants", tuple(dict.fromkeys(self.variants)))
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        if not isinstance(self.max_batch_size, int) or not 1 <= self.max_batch_size <= 1 << 16:
            raise UserInputError(f"--max-batch-size {self.max_batch_size} is out of range", hint="use 1 to 65536")
        if self.triton_name is not None and model_name(self.triton_name) != self.triton_name:
            raise UserInputError(f"--triton-name {self.triton_name!r} is not a valid model folder name",
                                 hint=f"use lower-case letters, digits, '_' and '-', e.g. {model_name(self.triton_name)!r}")
        if (self.triton_variant or self.triton_name) and not self.triton:
            raise UserInputError("--triton-variant/--triton-name need --triton")

    def to_dict(self) -> dict[str, Any]:
        return {"variants": list(self.variants), "triton": self.triton, "triton_variant": self.triton_variant,
                "triton_name": self.triton_name, "max_batch_size": self.max_batch_size, "device": self.device}


@dataclass
class PackageReport:
    """What package did; honours ``report.StageReport`` (truthy when the archive was written)."""

    out: Path
    passed: bool
    variants: list[str] = field(default_factory=list)
    sha256: str | None = None
    size: int | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    goldens: dict[str, Any] = field(default_factory=dict)
    triton: dict[str, Any] | None = None
    # Why nothing was written (every problem found, not just the first).
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        return list(self.problems)

    def summary(self) -> str:
        if not self.passed:
            fails = self.failures()
            return (fails[0] if fails else "package failed") + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
        return f"{self.out.name}: {len(self.files)} files, {(self.size or 0) / 1e6:.1f} MB"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "out": str(self.out), "variants": self.variants, "sha256": self.sha256,
            "size": self.size, "files": self.files, "goldens": self.goldens, "triton": self.triton,
            "failures": self.failures(), "notes": self.notes, "seconds": self.seconds,
        }


def _stage_failed(art: Artifact, variant: str) -> str | None:
    for stage in PER_VARIANT_STAGES:
        record = art.stage(stage_key(stage, variant))
        if record is not None and record.get("passed") is False:
            return stage_key(stage, variant)
    return None


def _describe(path: Path) -> dict[str, Any]:
    """describe_model for ONNX files; the same keys, read by OpenVINO, for an IR."""
    if path.suffix != ".xml":
        from ..graph import describe_model

        return describe_model(path)
    from ..runtime.openvino import describe_ir

    return describe_ir(path)


def choose_variants(art: Artifact, asked: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """(variants to package, failures, notes)."""
    available = list(art.variants)
    failures, notes = [], []
    if asked:
        unknown = [v for v in asked if v not in available]
        if unknown:
            raise UserInputError(f"--variant {', '.join(unknown)} is not in {art.root}",
                                 hint=f"available variants: {', '.join(available)}")
        chosen = list(asked)
        for v in chosen:
            failed = _stage_failed(art, v)
            if failed:
                failures.append(f"variant '{v}' failed {failed}; a package must not ship it (see that stage's report "
                                f"in {art.root / MANIFEST_NAME}, or leave it out with --variant)")
        return chosen, failures, notes
    chosen = []
    for v in available:
        failed = _stage_failed(art, v)
        if failed:
            notes.append(f"left out '{v}': it failed {failed}")
        else:
            chosen.append(v)
    if not chosen:
        raise UserInputError(f"every variant in {art.root} failed a check", hint="fix the failures, then package")
    return chosen, failures, notes


def _support_files(art: Artifact) -> list[str]:
    names = [n for n in TOKENIZER_FILES + CONFIG_FILES if (art.root / n).is_file()]
    if (art.root / GOLDENS_NAME).is_file():
        names.append(GOLDENS_NAME)
    return names


def _integrity(art: Artifact, names: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Hash every file going into the archive and compare with what its stage recorded."""
    table, failures = {}, []
    recorded = art.files
    for name in names:
        path = art.root / name
        if path.is_symlink() or not path.is_file():
            failures.append(f"{name} is missing from {art.root} (or is not a plain file)")
            continue
        entry = {"sha256": sha256_file(path), "size": path.stat().st_size}
        if name not in recorded:
            failures.append(f"{name} is not in {art.root}'s manifest; re-run the stage that writes it")
        elif recorded[name]["sha256"] != entry["sha256"] or recorded[name]["size"] != entry["size"]:
            failures.append(f"{name} changed after its stage recorded it (sha256 {entry['sha256'][:16]}…, recorded "
                            f"{recorded[name]['sha256'][:16]}…); re-run the stage that writes it")
        table[name] = entry
    return table, failures


def _parity(art: Artifact, variant: str) -> dict[str, Any]:
    """What the card and the manifest say about a variant's agreement with PyTorch."""
    summary = art.stage(stage_key("validate", variant))
    if summary:
        keep = ("max_abs", "mean_abs", "max_rel", "min_cosine", "mean_cosine", "argmax_agreement", "atol_needed")
        return {
            "passed": summary.get("passed"),
            "source": stage_key("validate", variant),
            "checked_on": f"{summary.get('texts') or 0} texts and {summary.get('groups', 0)} shape groups "
                          f"({summary.get('samples', 0)} samples) on {summary.get('provider', '?')}",
            "device": summary.get("device"),
            "tolerances": summary.get("tolerances"),
            "outputs": {o: {k: m.get(k) for k in keep if k in m} for o, m in (summary.get("outputs") or {}).items()},
        }
    export = art.stage("export") or {}
    if variant == "base" and export.get("check"):
        check = export["check"]
        return {
            "passed": check.get("passed"),
            "source": "export",
            "checked_on": f"random ids at batch {check.get('batch')} x sequence {check.get('sequence')} on {check.get('provider')}",
            "tolerances": {o: {"atol": check.get("atol")} for o in check.get("outputs", {})},
            "outputs": {o: {k: d.get(k) for k in ("max_abs", "mean_abs", "min_cosine") if k in d}
                        for o, d in check.get("outputs", {}).items()},
        }
    return {"passed": None, "source": None, "checked_on": None}


def _packaged_stages(stages: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    keep = {}
    for name, record in stages.items():
        if name in NOT_PACKAGED_STAGES:
            continue
        _, _, variant = name.partition(".")
        if not variant or variant in chosen:
            keep[name] = record
    return keep


def _check_triton_variant(art: Artifact, variant: str, chosen: list[str]) -> None:
    """The Triton repository is for Triton's onnxruntime backend: an OpenVINO IR cannot go there."""
    if art.variants[variant].get("engine") == "openvino":
        onnx_variants = [v for v in chosen if art.variants[v].get("engine") != "openvino"]
        raise UserInputError(
            f"--triton asks for a Triton model repository of '{variant}', an OpenVINO IR; onnxforge writes "
            "repositories for Triton's onnxruntime backend (platform onnxruntime_onnx), which reads ONNX files only",
            hint=(f"pass --triton-variant {default_variant(onnx_variants)} (packaged ONNX variants: {', '.join(onnx_variants)})"
                  if onnx_variants else "package an ONNX variant too, e.g. --variant optimized --variant bf16"))


def default_variant(chosen: list[str]) -> str:
    return next((v for v in PREFERRED_VARIANTS if v in chosen), chosen[0])


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _pad_token(art: Artifact, pad_id: int) -> str | None:
    tok = _read_json(art.root / "tokenizer.json") or {}
    for added in tok.get("added_tokens", []):
        if added.get("id") == pad_id:
            return added.get("content")
    return None


def build_manifest(art: Artifact, chosen: list[str], files: dict[str, dict[str, Any]], golden_checks: dict[str, Any],
                   models: dict[str, Any], triton: dict[str, Any] | None) -> dict[str, Any]:
    m = art.manifest
    manifest = {key: copy.deepcopy(m[key]) for key in ("schema", "onnxforge_version", "created", "source", "spec",
                                                        "export", "versions", "goldens") if key in m}
    defaults = {d: {"variant": r["variant"], "engine": r.get("engine")}
                for d, r in (m.get("default_variants") or {}).items() if isinstance(r, dict) and r.get("variant") in chosen}
    if defaults:
        # Which variant serve and batch run by default (the timings stay in the folder's manifest).
        manifest["default_variants"] = defaults
    if "build" in m:
        # What built it (options, content keys of the stages packaged), not the
        # bookkeeping of later runs, which would make re-packaging differ.
        build = m["build"]
        manifest["build"] = {"onnxforge_version": build.get("onnxforge_version"), "options": build.get("options"),
                             "keys": {k: v for k, v in build.get("keys", {}).items() if k not in NOT_PACKAGED_STAGES}}
    manifest["variants"] = {v: copy.deepcopy(m["variants"][v]) for v in chosen}
    manifest["stages"] = _packaged_stages(copy.deepcopy(m.get("stages", {})), chosen)
    manifest["files"] = dict(sorted(files.items()))
    goldens = m.get("goldens") or {}
    manifest["package"] = {
        "format": PACKAGE_FORMAT,
        "packaged_with": {"onnxforge": __version__},
        "variants": chosen,
        "default_variant": default_variant(chosen),
        "models": models,
        "parity": {v: _parity(art, v) for v in chosen},
        "goldens": {"file": goldens.get("file"), "texts": len(goldens.get("texts", [])),
                    "reference": goldens.get("reference"), "checks": golden_checks} if goldens else None,
        "triton": triton,
    }
    return manifest


def package_artifact(artifact_dir: str | Path, out: str | Path, options: PackageOptions = PackageOptions(), *,
                     progress=None) -> PackageReport:
    """Check the folder, then write the archive ``out`` (atomically); see the module docstring."""
    from ..graph import describe_model
    from .goldens import check_goldens
    from .triton import model_name, triton_files

    started = time.perf_counter()
    say = progress or (lambda msg: None)
    out = Path(out)
    check_archive_name(out)
    art = Artifact.open(artifact_dir)
    root = art.root.resolve()
    if out.resolve().parent == root or root in out.resolve().parents:
        raise UserInputError(f"--out {out} is inside the artifact folder {art.root}",
                             hint="write the archive beside the folder, e.g. --out " + str(art.root.parent / f"{art.root.name}.tar.gz"))
    if out.exists() and not options.force:
        raise UserInputError(f"--out {out} already exists", hint="pass --force to replace it")
    if out.exists() and not out.is_file():
        raise UserInputError(f"--out {out} exists and is not a file")
    chosen, failures, notes = choose_variants(art, options.variants)
    report = PackageReport(out=out, passed=False, variants=chosen, notes=notes)
    if options.triton_variant and options.triton_variant not in chosen:
        raise UserInputError(f"--triton-variant {options.triton_variant} is not among the packaged variants",
                             hint=f"packaged: {', '.join(chosen)}")
    triton_variant = None
    if options.triton:
        triton_variant = options.triton_variant or default_variant(chosen)
        _check_triton_variant(art, triton_variant, chosen)

    say("checking every file against the manifest")
    model_names = {v: [p.relative_to(art.root).as_posix() for p in model_files(art.variant_path(v))] for v in chosen}
    names = sorted({n for files in model_names.values() for n in files} | set(_support_files(art)))
    files, integrity_failures = _integrity(art, names)
    failures += integrity_failures

    models: dict[str, Any] = {}
    golden_checks: dict[str, Any] = {}
    for v in chosen:
        entry = art.variants[v]
        described = _describe(art.variant_path(v)) if not integrity_failures else {}
        models[v] = {
            "file": entry["file"],
            "files": model_names[v],
            "precision": entry.get("precision", "fp32"),
            **{k: described.get(k) for k in ("opset", "ir_version", "producer", "signature", "parameters", "nodes",
                                             "fused_ops", "quantized", "initializer_dtypes")},
        }
        if integrity_failures:
            continue
        say(f"re-running the golden texts through '{v}'")
        check = check_goldens(art, v, options.device)
        golden_checks[v] = check.to_dict()
        failures += check.failures()
    report.goldens = golden_checks
    if failures:
        report.problems = failures
        report.seconds = round(time.perf_counter() - started, 2)
        # The folder keeps why: nothing was written, and its manifest says so.
        art.record_stage("package", {"passed": False, "file": str(out), "variants": chosen, "failures": failures,
                                     "goldens": golden_checks, "options": options.to_dict(), "seconds": report.seconds})
        art.save()
        return report

    entries: dict[str, Path | bytes] = {n: art.root / n for n in names}
    triton = None
    if options.triton:
        name = options.triton_name or model_name(archive_stem(out))
        tfiles = triton_files(name, [art.root / n for n in model_names[triton_variant]],
                              models[triton_variant]["signature"], max_batch_size=options.max_batch_size)
        for rel, src in tfiles.items():
            data = src if isinstance(src, bytes) else None
            files[rel] = ({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} if data is not None
                          else dict(files[src.relative_to(art.root).as_posix()]))
        entries.update(tfiles)
        triton = {"name": name, "variant": triton_variant, "folder": f"triton/{name}",
                  "max_batch_size": options.max_batch_size, "platform": "onnxruntime_onnx"}
    manifest = build_manifest(art, chosen, files, golden_checks, models, triton)
    tokenizer_config = _read_json(art.root / "tokenizer_config.json")
    card = render_card(manifest, tokenizer_config=tokenizer_config,
                       pad_token=_pad_token(art, art.spec.pad_token_id), archive_name=out.name).encode("utf-8")
    manifest["files"][CARD_NAME] = {"sha256": hashlib.sha256(card).hexdigest(), "size": len(card)}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    entries[CARD_NAME] = card
    entries[MANIFEST_NAME] = seal(manifest)

    say(f"writing {out}")
    write_archive(out, archive_stem(out), entries)
    report.sha256 = sha256_file(out)
    report.size = out.stat().st_size
    report.files = manifest["files"]
    report.triton = triton
    report.passed = True
    report.seconds = round(time.perf_counter() - started, 2)
    art = Artifact.open(art.root)  # re-read: nothing else may have changed, but never write a stale copy
    art.record_stage("package", {"passed": True, "file": str(out), "sha256": report.sha256, "size": report.size,
                                 "variants": chosen, "triton": triton, "options": options.to_dict(),
                                 "seconds": report.seconds})
    art.save()
    return report
