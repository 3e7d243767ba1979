"""The artifact folder and its manifest: every stage reads one folder and adds to it.

File names, hashes and atomic writes live in ``files`` (re-exported here, where
stages have always imported them from); this module reads and records the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UserInputError
from .files import (  # noqa: F401 - re-exported
    BASE_MODEL_NAME, CONFIG_FILES, GOLDENS_NAME, MANIFEST_NAME, MANIFEST_SCHEMA, TOKENIZER_FILES, atomic_path,
    atomic_write_bytes, atomic_write_json, atomic_write_text, deferred_interrupts, model_files, refuse_inputs_inside,
    sha256_file, staged_directory,
)
from .sources.ref import SourceRef
from .spec import ModelSpec
from .vocab import DEFAULT_ENGINE, ENGINE_OF_VARIANT, stage_key


class Artifact:
    """An artifact folder and its manifest (``onnxforge.json``)."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> "Artifact":
        root = Path(root)
        if not root.exists():
            raise UserInputError(f"artifact folder {root} does not exist", hint="run `onnxforge export` first")
        if not root.is_dir():
            raise UserInputError(f"{root} is a file; expected an artifact folder written by `onnxforge export`")
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise UserInputError(
                f"{root} has no {MANIFEST_NAME}: it is not an onnxforge artifact",
                hint="export the model with `onnxforge export MODEL --out DIR` first",
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserInputError(f"{path} is not valid JSON ({e})", hint="re-run `onnxforge export`") from None
        if not isinstance(manifest, dict) or "spec" not in manifest or "files" not in manifest:
            raise UserInputError(f"{path} is not an onnxforge manifest (no 'spec' or 'files')", hint="re-run `onnxforge export`")
        problem = manifest_problem(manifest)
        if problem:
            raise UserInputError(f"{path}: {problem}", hint="the manifest was edited by hand or damaged; re-run `onnxforge export`")
        try:
            ModelSpec.from_dict(manifest["spec"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: the model spec is invalid ({e})", hint="re-run `onnxforge export`") from None
        return cls(root, manifest)

    # -- contents ------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.manifest["spec"])

    @property
    def spec_record(self) -> dict[str, Any]:
        """The spec as the manifest stores it (``spec`` parses it)."""
        return self.manifest["spec"]

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """Model files by variant name: ``base`` is the export, others come from optimize."""
        return self.manifest.setdefault("variants", {})

    def variant_path(self, name: str) -> Path:
        variants = self.variants
        if name not in variants:
            raise UserInputError(
                f"variant '{name}' is not in {self.root}",
                hint=f"available variants: {', '.join(sorted(variants)) or 'none'}",
            )
        path = self.root / variants[name]["file"]
        if not path.is_file():
            raise UserInputError(f"variant '{name}' is listed in the manifest but {path.name} is missing from {self.root}")
        return path

    def recorded_mismatch(self, relpath: str) -> str | None:
        """Why ``relpath`` is not the file its stage recorded (size, then sha256), or None."""
        entry = self.manifest.get("files", {}).get(relpath)
        path = self.root / relpath
        if not isinstance(entry, dict):
            return f"{relpath} is not in the manifest's file table"
        if not path.is_file():
            return f"{relpath} is missing"
        size = path.stat().st_size
        if size != entry.get("size"):
            return f"{relpath} is {size} bytes but the manifest recorded {entry.get('size')}"
        if sha256_file(path) != entry.get("sha256"):
            return f"{relpath} changed after its stage recorded it (its sha256 differs from the manifest's)"
        return None

    def require_recorded(self, variant: str, why: str) -> Path:
        """The variant's model path, after checking its files against their recorded hashes."""
        path = self.variant_path(variant)
        for file in model_files(path):
            problem = self.recorded_mismatch(file.relative_to(self.root).as_posix())
            if problem:
                raise UserInputError(f"{problem}; {why}", hint="re-run the stage that wrote it (for model.onnx: `onnxforge export`)")
        return path

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def record_stage(self, name: str, report: dict[str, Any]) -> None:
        self.manifest.setdefault("stages", {})[name] = report

    def stage_record(self, stage: str, variant: str | None = None) -> dict[str, Any] | None:
        """The record ``stage`` (for ``variant``, when per-variant) left in the manifest, or None."""
        return self.stage(stage_key(stage, variant))

    def stage_passed(self, key: str) -> bool:
        """Whether the stage recorded under ``key`` ran and said it passed."""
        record = self.stage(key)
        return isinstance(record, dict) and record.get("passed") is True

    def forget_stage(self, key: str) -> None:
        self.manifest.get("stages", {}).pop(key, None)

    def variant_record(self, name: str) -> dict[str, Any] | None:
        return self.manifest.get("variants", {}).get(name)

    def variant_precision(self, name: str) -> str | None:
        return (self.variant_record(name) or {}).get("precision")

    def variant_engine(self, name: str) -> str:
        """The engine a variant runs on: the one its entry records, else the variant's usual
        engine (manifests written before engines were recorded are ORT's)."""
        return (self.variant_record(name) or {}).get("engine") or ENGINE_OF_VARIANT.get(name, DEFAULT_ENGINE)

    @property
    def source(self) -> SourceRef | None:
        """How to rebuild the PyTorch model (None: the manifest does not say)."""
        raw = self.manifest.get("source")
        return SourceRef.from_dict(raw) if isinstance(raw, dict) and raw.get("kind") else None

    @property
    def source_record(self) -> dict[str, Any] | None:
        """The manifest's ``source`` entry as recorded (a dict), or None when absent."""
        raw = self.manifest.get("source")
        return raw if isinstance(raw, dict) else None

    @property
    def export_record(self) -> dict[str, Any]:
        """How export ran (exporter, attn_implementation, trace_shape, ...); empty when not recorded."""
        return self.manifest.get("export") or {}

    @property
    def versions(self) -> dict[str, Any] | None:
        return self.manifest.get("versions")

    @property
    def goldens_entry(self) -> dict[str, Any] | None:
        """The manifest's ``goldens`` entry (``file``, ``texts``, ``reference``), or None; read it with parity.goldens."""
        return self.manifest.get("goldens") or None

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Every stage record by key (``export``, ``optimize.int8``, ...)."""
        return self.manifest.get("stages", {})

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """The file table: relative name -> {sha256, size}."""
        return self.manifest.get("files", {})

    def recorded_sha256(self, relpath: str) -> str | None:
        return (self.files.get(relpath) or {}).get("sha256")

    @property
    def tokenizer(self) -> Path | None:
        """The folder's tokenizer.json, when the export recorded one."""
        return self.root / "tokenizer.json" if "tokenizer.json" in self.manifest.get("files", {}) else None

    def table(self, name: str) -> dict[str, Any]:
        """A top-level table another tool keeps in the manifest (``build``), created empty when absent."""
        return self.manifest.setdefault(name, {})

    def has_table(self, name: str) -> bool:
        return isinstance(self.manifest.get(name), dict)

    def files_intact(self) -> bool:
        """Every file in the table still has the size and sha256 its stage recorded."""
        return all(self.recorded_mismatch(name) is None for name in self.manifest.get("files", {}))

    def record_file(self, relpath: str) -> None:
        """Hash a file in the folder into the manifest's file table."""
        path = self.root / relpath
        self.manifest.setdefault("files", {})[relpath] = {"sha256": sha256_file(path), "size": path.stat().st_size}

    def forget_file(self, relpath: str) -> None:
        self.manifest.get("files", {}).pop(relpath, None)

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST_NAME, self.manifest, replace_tracked=True)


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _relative_name(name: Any) -> bool:
    """A plain name, or plain names joined by "/" (``openvino/openvino_model.xml``)."""
    return isinstance(name, str) and all(_plain_name(part) for part in name.split("/"))


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What makes a manifest's tables unusable (a hand edit, a truncation), or None.

    Variant files must be plain names inside the folder: a manifest must never lead a
    stage to read or replace a file elsewhere.
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return "its 'files' table is not an object of {name: {sha256, size}}"
    for key in ("variants", "stages"):
        if key in manifest and not isinstance(manifest[key], dict):
            return f"its '{key}' table is a {type(manifest[key]).__name__}, not an object"
    for name, entry in manifest.get("variants", {}).items():
        if not isinstance(entry, dict) or not _relative_name(entry.get("file")):
            return (f"variant '{name}' does not name a model file inside the folder "
                    f"(got {json.dumps(entry)[:120]})")
    return None
