"""Content keys: a stage is reused only when the key of what it would do is unchanged.

Keys hash content, never timestamps. The export key hashes the source's files (see
``sources.fingerprint``), the export options and the onnxforge version; each later
key hashes the key of the stage it reads plus its own options. The formulas are the
ones earlier versions recorded, so a folder built by them is still reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import sha256_file
from ..vocab import EXPORT, OPTIMIZE, PACKAGE, SMOKE, VALIDATE, VERIFY, stage_key

# The build's smoke test checks correctness fully and times briefly (a latency table
# is `onnxforge smoke`'s or `onnxforge bench`'s job); this keeps MiniLM's build short.
SMOKE_TIMING = {"batch_sizes": (1, 8), "iterations": 10, "min_iterations": 3, "max_seconds": 1.0}


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def export_key(source_print: dict[str, Any], options) -> str:
    """``options``: ExportOptions (``force`` is how, not what, so it is left out)."""
    settings = {k: v for k, v in asdict(options).items() if k != "force"} | {"opset": options.resolved_opset}
    return digest(EXPORT, __version__, source_print, settings)


def optimize_key(export: str, options) -> str:
    """Every OptimizeOptions field, defaults included: a changed calibration default is a new key."""
    return digest(stage_key(OPTIMIZE, options.variant), __version__, export, asdict(options))


def validate_key(optimize: str, options, text: str | None) -> str:
    """``text``: the --text file the options name, hashed by content."""
    text_print = sha256_file(Path(text)) if text and Path(text).is_file() else None
    return digest(stage_key(VALIDATE, options.variant), __version__, optimize, options.to_dict(), text_print)


def smoke_key(optimize: str, variant: str, device: str) -> str:
    return digest(stage_key(SMOKE, variant), __version__, optimize, device, SMOKE_TIMING)


def package_key(earlier: dict[str, str], options, archive_name: str) -> str:
    """``earlier``: the key of every stage before package (its content is theirs)."""
    return digest(PACKAGE, __version__, dict(earlier), options.to_dict(), archive_name)


def verify_key(archive_sha256: str | None, device: str) -> str:
    return digest(VERIFY, __version__, archive_sha256, device)
