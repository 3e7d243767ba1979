"""The artifact folder's files: their names, sha256, and writes that are atomic.

Writes go to a temporary name in the same folder and are renamed into place, so a
crash or Ctrl-C never leaves a file that a later stage would trust.
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
