"""The artifact folder: its paths, its manifest, atomic writes and file hashes.

Every stage reads one folder and adds to it. Writes go to a temporary name in the
same folder and are renamed into place, so a crash or Ctrl-C never leaves a file
that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserInputError
from .spec import ModelSpec

MANIFEST_NAME = "onnxforge.json"
BASE_MODEL_NAME = "model.onnx"
MANIFEST_SCHEMA = 1
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
)
CONFIG_FILES = ("config.json",)
GOLDENS_NAME = "goldens.npz"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it into place on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``target`` keeps its previous content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: Path, obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@contextlib.contextmanager
def staged_directory(out: Path, *, force: bool) -> Iterator[Path]:
    """Build a whole artifact folder in a sibling temporary folder, then swap it in.

    ``out`` must be absent or empty unless ``force``; with ``force`` the old folder
    is replaced only once the new one is complete.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is a file, not a folder", hint="choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(
            f"--out {out} already exists and is not empty",
            hint="pass --force to replace it, or choose another folder",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time() * 1000)}"
            os.replace(out, old)
        os.replace(staging, out)
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.manifest.get("stages", {}).get(name)

    def record_stage(self, name: str, report: dict[str, Any]) -> None:
        self.manifest.setdefault("stages", {})[name] = report

    def record_file(self, relpath: str) -> None:
        """Hash a file in the folder into the manifest's file table."""
        path = self.root / relpath
        self.manifest.setdefault("files", {})[relpath] = {"sha256": sha256_file(path), "size": path.stat().st_size}

    def forget_file(self, relpath: str) -> None:
        self.manifest.get("files", {}).pop(relpath, None)

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST_NAME, self.manifest)


def model_files(model_path: Path) -> list[Path]:
    """The .onnx file and its external-data file(s), when present."""
    files = [model_path]
    data = model_path.with_name(model_path.name + ".data")
    if data.exists():
        files.append(data)
    return files
