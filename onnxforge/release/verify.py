"""`verify`: is this package (or artifact folder) exactly what was released, and does it still work?

Checks, all run and all listed before the verdict:

- archive: every member a plain file or folder under one top folder (no ``..``,
  absolute paths, links or devices); nothing is unpacked otherwise;
- manifest: readable, and for a package its own digest matches its bytes;
- files: each listed file present with its sha256 and size; no file missing or extra;
- signature: each model's inputs and outputs (names, dtypes, dims) match the manifest;
- goldens: the golden texts through the packaged tokenizer and each model give the
  recorded PyTorch outputs within the recorded tolerance;
- triton: config.pbtxt matches its model's signature.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import MANIFEST_NAME, Artifact, sha256_file
from ..errors import CheckFailed, UserInputError
from ..report import Check, ChecksReport
from ..vocab import DEVICES


@dataclass(frozen=True)
class VerifyOptions:
    device: str = "cpu"
    # Off: hashes, sizes, signatures only (no model is run).
    goldens: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")


SKIPPED = "skipped"


def _status(c: Check) -> str:
    return SKIPPED if c.about.get("status") == SKIPPED else ("passed" if c.passed else "failed")


def check_dict(c: Check) -> dict[str, Any]:
    """A check as verify's JSON has always written it: kind, target, status, detail."""
    return {"kind": c.about["kind"], "target": c.name, "status": _status(c), "detail": c.detail}


@dataclass
class VerifyReport(ChecksReport):
    """Every check verify ran (a skipped one is recorded, not required); truthy when none failed."""

    path: Path
    kind: str  # archive, package folder, artifact folder
    checks: list[Check] = field(default_factory=list)
    archive: dict[str, Any] | None = None
    device: str = "cpu"
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, target: str, passed: bool | None, detail: str = "") -> bool | None:
        """Record one check; ``passed=None`` records it as skipped, with the reason in ``detail``."""
        about = {"kind": kind} | ({"status": SKIPPED} if passed is None else {})
        self.checks.append(Check(target, passed is not False, detail, required=passed is not None, about=about))
        return passed

    def failed_targets(self) -> list[str]:
        return sorted({c.name for c in self.checks if c.required and not c.passed})

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if _status(c) == s) for s in ("passed", "failed", SKIPPED)}

    def summary(self) -> str:
        if not self.passed:
            fails = self.failures()
            return (fails[0] if fails else "no checks ran") + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
        counts = self.counts()
        return f"{counts['passed']} checks passed" + (f", {counts[SKIPPED]} skipped" if counts[SKIPPED] else "")

    def to_dict(self) -> dict[str, Any]:
        from ..env import versions

        return {
            "passed": self.passed,
            "path": str(self.path),
            "kind": self.kind,
            "archive": self.archive,
            "device": self.device,
            "counts": self.counts(),
            "failures": self.failures(),
            "failed": self.failed_targets(),
            "checks": [check_dict(c) for c in self.checks],
            "details": self.details,
            "seconds": self.seconds,
            "versions": versions(),
        }


def verify_path(path: str | Path, options: VerifyOptions = VerifyOptions(), *, progress=None) -> VerifyReport:
    """Verify a package archive, an unpacked package, or an artifact folder."""
    started = time.perf_counter()
    say = progress or (lambda msg: None)
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path} does not exist", hint="pass a .tar.gz written by `onnxforge package` or a folder")
    if path.is_dir():
        report = VerifyReport(path=path, kind="folder", device=options.device)
        _verify_folder(path, report, options, say)
    else:
        report = VerifyReport(path=path, kind="archive", device=options.device)
        _verify_archive(path, report, options, say)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _verify_archive(path: Path, report: VerifyReport, options: VerifyOptions, say) -> None:
    from .archive import inspect_members, safe_extract

    report.archive = {"sha256": sha256_file(path), "size": path.stat().st_size}
    say("reading the archive's member list")
    try:
        members, refusals = inspect_members(path)
    except CheckFailed as e:
        report.add("archive", path.name, False, e.message)
        return
    for r in refusals:
        report.add("archive", r.member, False, f"refused: {r.reason}")
    if refusals:
        return
    report.add("archive", path.name, True, f"{len(members)} members, all plain files or folders under one folder")
    with tempfile.TemporaryDirectory(prefix=".onnxforge-verify-", dir=None) as tmp:
        say("unpacking")
        try:
            top = safe_extract(path, Path(tmp))
        except CheckFailed as e:
            report.add("archive", path.name, False, e.message)
            return
        _verify_folder(top, report, options, say, display_root=top.name)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """(relative paths of plain files, relative paths of anything else), never following links."""
    files, odd = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                odd.append((here / d).relative_to(root).as_posix())
                dirnames.remove(d)
        for f in filenames:
            p = here / f
            rel = p.relative_to(root).as_posix()
            (files if p.is_file() and not p.is_symlink() else odd).append(rel)
    return sorted(files), sorted(odd)


def _verify_folder(root: Path, report: VerifyReport, options: VerifyOptions, say, display_root: str | None = None) -> None:
    from .seal import SEAL_FIELD, check_seal

    mpath = root / MANIFEST_NAME
    if not mpath.is_file() or mpath.is_symlink():
        report.add("manifest", MANIFEST_NAME, False, f"missing: {root} is not an onnxforge package or artifact folder")
        return
    data = mpath.read_bytes()
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "spec" not in manifest:
            raise ValueError("no 'files' table or 'spec'")
    except (ValueError, UnicodeDecodeError) as e:
        report.add("manifest", MANIFEST_NAME, False, f"not a readable manifest ({str(e)[:200]})")
        return
    # A package's seal marks it as one even when its "package" key was damaged: else a
    # package changed in that one key would pass as an (unsealed) artifact folder.
    is_package = isinstance(manifest.get("package"), dict) or f'"{SEAL_FIELD}"'.encode() in data
    if report.kind == "folder":
        report.kind = "package folder" if is_package else "artifact folder"
    if is_package:
        problem = check_seal(data)
        report.add("manifest", MANIFEST_NAME, problem is None, problem or "its digest matches its bytes")
    else:
        report.add("manifest", MANIFEST_NAME, None, "an artifact folder's manifest carries no digest (a package's does)")

    say("hashing every file")
    bad_files = _check_files(root, manifest, report)
    problem = _structure_problem(manifest, is_package)
    if problem:
        # Without a readable spec and variant table the models cannot be checked.
        report.add("manifest", MANIFEST_NAME, False, problem)
        return
    # The structure is sound from here on: read it through the Artifact accessors.
    art = Artifact(root, manifest)
    _check_signatures(art, report, bad_files, is_package)
    if is_package and art.table("package").get("triton"):
        _check_triton(art, report, bad_files)
    if options.goldens:
        _check_goldens(art, report, bad_files, options, say)
    report.details.update({"variants": list(art.variants), "files": len(art.files), "package": bool(is_package)})


def _structure_problem(manifest: dict[str, Any], is_package: bool) -> str | None:
    from ..spec import ModelSpec

    try:
        ModelSpec.from_dict(manifest["spec"])
    except (KeyError, TypeError, ValueError) as e:
        return f"the model spec is invalid ({e})"
    variants = manifest.get("variants")
    if not isinstance(variants, dict) or not all(isinstance(v, dict) and isinstance(v.get("file"), str) for v in variants.values()):
        return "the variant table is missing or malformed"
    if is_package:
        package = manifest.get("package")
        if not isinstance(package, dict):
            return "the package table is missing or malformed"
        models = package.get("models")
        if not isinstance(models, dict) or set(models) != set(variants):
            return "package.models does not describe exactly the packaged variants"
        for variant, recorded in models.items():
            if not isinstance(recorded, dict) or not _is_signature(recorded.get("signature")):
                return f"package.models['{variant}'] has no well-formed signature"
        triton = package.get("triton")
        if triton is not None and (not isinstance(triton, dict) or triton.get("variant") not in models
                                   or not isinstance(triton.get("folder"), str)):
            return "package.triton is malformed"
    return None


def _is_signature(sig: Any) -> bool:
    """A recorded graph signature: {"inputs": [...], "outputs": [...]}, each a named, typed tensor."""
    def is_tensor(t: Any) -> bool:
        return (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("dtype"), str)
                and isinstance(t.get("dims"), list))

    return (isinstance(sig, dict) and all(isinstance(sig.get(k), list) and all(map(is_tensor, sig[k]))
                                          for k in ("inputs", "outputs")))


def _check_files(root: Path, manifest: dict[str, Any], report: VerifyReport) -> set[str]:
    bad: set[str] = set()
    table = manifest["files"]
    for name, entry in sorted(table.items()):
        path = root / name
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int):
            report.add("file", name, False, f"the manifest's entry is malformed: {json.dumps(entry)[:100]}")
            bad.add(name)
            continue
        if ".." in Path(name).parts or Path(name).is_absolute() or not name:
            report.add("file", name, False, "the manifest names a path outside the folder")
            bad.add(name)
            continue
        if path.is_symlink() or not path.is_file():
            report.add("file", name, False, "missing" if not path.exists() and not path.is_symlink() else "not a plain file")
            bad.add(name)
            continue
        size = path.stat().st_size
        if size != entry.get("size"):
            report.add("file", name, False, f"size {size} bytes, manifest says {entry.get('size')}")
            bad.add(name)
            continue
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            report.add("file", name, False, f"sha256 {digest[:16]}… differs from the manifest's {str(entry.get('sha256'))[:16]}…")
            bad.add(name)
            continue
        report.add("file", name, True, f"sha256 and size ({size} bytes) match")
    files, odd = _walk(root)
    for rel in odd:
        report.add("file", rel, False, "a link or special file (packages hold plain files only)")
        bad.add(rel)
    for rel in files:
        if rel != MANIFEST_NAME and rel not in table:
            report.add("file", rel, False, "extra file: not in the manifest")
            bad.add(rel)
    return bad


def _spec_signature_problems(sig: dict[str, Any], spec) -> list[str]:
    """For an artifact folder (no recorded signature): names, int64 inputs, dynamic axes."""
    problems = []
    names_in = [v["name"] for v in sig["inputs"]]
    names_out = [v["name"] for v in sig["outputs"]]
    if names_in != list(spec.input_names):
        problems.append(f"inputs {names_in}, spec says {list(spec.input_names)}")
    if names_out != list(spec.output_names):
        problems.append(f"outputs {names_out}, spec says {list(spec.output_names)}")
    for v in sig["inputs"]:
        if v["dtype"] != "int64":
            problems.append(f"input {v['name']} is {v['dtype']}, expected int64")
    axes = spec.dynamic_axes()
    for v in sig["inputs"] + sig["outputs"]:
        for axis in axes.get(v["name"], {}):
            if axis >= len(v["dims"]) or isinstance(v["dims"][axis], int):
                problems.append(f"{v['name']} axis {axis} is not dynamic (dims {v['dims']})")
    return problems


def _check_signatures(art: Artifact, report: VerifyReport, bad: set[str], is_package: bool) -> None:
    from ..graph import load_graph, opset, signature

    root, spec = art.root, art.spec
    for variant, entry in art.variants.items():
        file = entry.get("file", "")
        if file in bad:
            report.add("signature", file or variant, None, "not read: the file failed its own check")
            continue
        if file not in art.files or not (root / file).is_file():
            # Not covered by the file checks: a variant pointing elsewhere must fail, not skip.
            report.add("signature", file or variant, False, f"variant '{variant}' names a file the manifest does not list")
            continue
        try:
            if file.endswith(".xml"):  # an OpenVINO IR: read by OpenVINO, no ONNX opset
                from ..runtime.openvino import describe_ir

                described = describe_ir(root / file)
                sig, versions = described["signature"], (None, None)
            else:
                model = load_graph(root / file)
                sig, versions = signature(model), (opset(model), model.ir_version)
        except UserInputError as e:
            report.add("signature", file, False, e.message)
            continue
        if is_package:
            recorded = art.table("package")["models"].get(variant, {})
            problems = []
            if sig != recorded.get("signature"):
                problems.append(f"graph I/O {json.dumps(sig)} differs from the manifest's {json.dumps(recorded.get('signature'))}")
            if versions != (recorded.get("opset"), recorded.get("ir_version")):
                problems.append(f"opset {versions[0]} / IR {versions[1]}, manifest says "
                                f"{recorded.get('opset')} / {recorded.get('ir_version')}")
        else:
            problems = _spec_signature_problems(sig, spec)
        report.add("signature", file, not problems, "; ".join(problems) or
                   f"{len(sig['inputs'])} inputs, {len(sig['outputs'])} outputs as recorded")


def _check_triton(art: Artifact, report: VerifyReport, bad: set[str]) -> None:
    from .triton import check_config

    root, package = art.root, art.table("package")
    triton = package["triton"]
    rel = f"{triton['folder']}/config.pbtxt"
    if rel in bad or not (root / rel).is_file():
        report.add("triton", rel, None, "not read: the file failed its own check")
        return
    signature = package["models"][triton["variant"]]["signature"]
    problems = check_config((root / rel).read_text(encoding="utf-8"), signature)
    report.add("triton", rel, not problems, "; ".join(problems) or "valid for the model's signature")


def _check_goldens(art: Artifact, report: VerifyReport, bad: set[str], options: VerifyOptions, say) -> None:
    from .goldens import check_goldens

    root = art.root
    needed_support = [n for n in ("goldens.npz", "tokenizer.json") if n in art.files]
    for variant, entry in art.variants.items():
        file = entry.get("file", "")
        broken = [n for n in [file, f"{file}.data", *needed_support] if n in bad]
        if broken or not (root / file).is_file():
            report.add("goldens", file or variant, None, f"not run: {', '.join(broken) or file} failed its own check")
            continue
        say(f"re-running the golden texts through '{variant}'")
        result = check_goldens(art, variant, options.device)
        report.details.setdefault("goldens", {})[variant] = result.to_dict()
        if result.skipped:
            report.add("goldens", file, None, result.skipped)
        elif result.passed:
            report.add("goldens", file, True, result.summary())
        else:
            tokenizer_failed = any(c.about.get("kind") == "tokenizer" and not c.passed for c in result.checks)
            report.add("goldens", "tokenizer.json" if tokenizer_failed else file, False, "; ".join(result.failures()))


def verify_and_record(artifact_dir: str | Path, archive: str | Path, options: VerifyOptions = VerifyOptions(), *,
                      progress=None) -> VerifyReport:
    """Verify the archive packaged from ``artifact_dir``, and record the verdict there as its ``verify`` stage."""
    report = verify_path(archive, options, progress=progress)
    d = report.to_dict()
    art = Artifact.open(artifact_dir)
    art.record_stage("verify", {"passed": report.passed, "archive": str(archive),
                                "archive_sha256": d["archive"]["sha256"] if d["archive"] else None,
                                "counts": d["counts"], "failures": d["failures"], "device": options.device,
                                "seconds": report.seconds})
    art.save()
    return report
