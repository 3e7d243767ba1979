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


def _check_parents(target: Path) -> None:
    """The nearest existing ancestor of ``target`` must be a folder (mkdir says 'File exists')."""
    for parent in Path(target).parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"cannot write {target}: {parent} is a file, not a folder",
                                     hint="choose a path whose parent folders are folders")
            return


def _blame(e: OSError, temporary: Path, target: Path) -> None:
    """Name the user's path, not our temporary one, in a file-system error (e.g. a full disk)."""
    ours = str(temporary)
    if e.filename2 is not None and str(e.filename2).startswith(ours):
        # A copy into the temporary folder: the destination is what failed.
        e.filename, e.filename2 = str(target), None
    elif e.filename is None or str(e.filename).startswith(ours):
        e.filename = str(target)


def _guard_target(target: Path) -> None:
    """Refuse an output path that would destroy an input: a folder, or a file an artifact tracks.

    A user-chosen output (``--json``, ``batch --out``, a report) that names an artifact's
    manifest or model would silently replace it; stages that own those files pass
    ``replace_tracked=True``.
    """
    if target.is_dir():
        raise UserInputError(f"cannot write {target}: it is a folder", hint="pass the path of a file to write")
    _check_parents(target)
    manifest = target.parent / MANIFEST_NAME
    if not manifest.is_file():
        return
    if target.name == MANIFEST_NAME:
        raise UserInputError(f"{target} is the manifest of the artifact in {target.parent}; writing there would destroy it",
                             hint="write the output somewhere else")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(files, dict) and target.name in files:
        raise UserInputError(f"{target} is a file of the artifact in {target.parent}; writing there would replace it",
                             hint="write the output somewhere else")


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    For the few renames and the manifest save that must all happen or none: a Ctrl-C
    between them would leave an artifact folder moved aside, or a model file that its
    manifest does not describe. Outside the main thread (no signals there) it does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


@contextlib.contextmanager
def atomic_path(target: Path, *, replace_tracked: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it into place on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``target`` keeps its previous content. ``target`` may not be a folder, nor (unless
    ``replace_tracked``) a manifest or a file an artifact's manifest tracks.
    """
    target = Path(target)
    if not replace_tracked:
        _guard_target(target)
    prefix = target.parent / f".{target.name}."
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix.name, suffix=".partial", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as e:
        _blame(e, prefix, target)
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: Path, data: bytes, *, replace_tracked: bool = False) -> None:
    with atomic_path(target, replace_tracked=replace_tracked) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(target: Path, text: str, *, replace_tracked: bool = False) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), replace_tracked=replace_tracked)


def atomic_write_json(target: Path, obj: Any, *, replace_tracked: bool = False) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n",
                      replace_tracked=replace_tracked)


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


def refuse_inputs_inside(out: Path, inputs: dict[str, str | Path | None]) -> None:
    """``out`` will be replaced as a whole: it must not be, or hold, one of the inputs."""
    resolved = Path(out).resolve()
    for what, path in inputs.items():
        if not path:
            continue
        p = Path(path).resolve()
        if p == resolved or resolved in p.parents:
            raise UserInputError(
                f"--out {out} {'is' if p == resolved else 'holds'} the {what} {path}: writing the artifact there "
                "would delete it",
                hint="choose an --out folder outside the model's own files",
            )


@contextlib.contextmanager
def staged_directory(out: Path, *, force: bool, inputs: dict[str, str | Path | None] | None = None) -> Iterator[Path]:
    """Build a whole artifact folder in a sibling temporary folder, then swap it in.

    ``out`` must be absent or empty unless ``force``; with ``force`` the old folder
    is replaced only once the new one is complete. ``inputs`` (what -> path) are
    files the build reads; ``out`` may not be or hold one (replacing it would delete it).
    """
    out = Path(out)
    refuse_inputs_inside(out, inputs or {})
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is a file, not a folder", hint="choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(
            f"--out {out} already exists and is not empty",
            hint="pass --force to replace it, or choose another folder",
        )
    _check_parents(out)
    prefix = out.parent / f".{out.name}."
    staging = old = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=prefix.name, suffix=".staging", dir=out.parent))
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        with deferred_interrupts():  # never between the two renames: --out would be gone
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time() * 1000)}"
                os.replace(out, old)
            os.replace(staging, out)
            _fsync_dir(out.parent)
    except OSError as e:
        _blame(e, prefix, out)
        raise
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None and out.exists():  # the swap happened (an interrupt it held may be on its way)
            shutil.rmtree(old, ignore_errors=True)


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


def model_files(model_path: Path) -> list[Path]:
    """The .onnx file and its external-data file(s), when present; an OpenVINO IR's
    .xml and its .bin (weights)."""
    files = [model_path]
    if model_path.suffix == ".xml":
        weights = model_path.with_suffix(".bin")
        return files + [weights] if weights.exists() else files
    data = model_path.with_name(model_path.name + ".data")
    if data.exists():
        files.append(data)
    return files
