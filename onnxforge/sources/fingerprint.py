"""What an export reads, by content: the key `build` reuses an export by.

A folder source is its files' sha256; a factory is its module file (not what that
module imports) and its state_dict; the tokenizer, when given, is hashed too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import sha256_file
from .ref import SourceRef


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (hidden files and folders left out)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or "__pycache__" in rel.parts or not path.is_file():
            continue
        out[rel.as_posix()] = sha256_file(path)
    return out


def _factory_module_file(source: SourceRef) -> Path | None:
    """The file of a factory's module, found as the import would find it (without importing it)."""
    import importlib.util
    import sys

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
    return Path(spec.origin) if spec and spec.origin and Path(spec.origin).is_file() else None


def source_fingerprint(source: SourceRef) -> dict[str, Any]:
    """The source's record plus the sha256 of every file the export reads from it."""
    files: dict[str, Any] = {}
    if source.kind == "builtin":
        from .builtin import builtin_model_dir

        files["model"] = hash_tree(builtin_model_dir())
    elif source.kind == "hf":
        files["model"] = hash_tree(Path(source.location))
    else:
        origin = _factory_module_file(source)
        files["module"] = sha256_file(origin) if origin else None
        if source.weights:
            files["weights"] = sha256_file(Path(source.weights))
    if source.tokenizer:
        tok = Path(source.tokenizer)
        files["tokenizer"] = hash_tree(tok) if tok.is_dir() else sha256_file(tok)
    return {"source": source.to_dict(), "files": files}
