"""The package manifest's own digest, so that one changed byte anywhere in it is caught.

The manifest lists every other file's sha256; nothing lists the manifest's. It is
therefore written with ``package.manifest_sha256`` set to 64 zeros, hashed, and the
zeros replaced by that hash. Checking reverses it on the exact bytes: any change to
the file (a value, a key, white space, the digest itself) gives a different hash.
It guards against corruption and careless edits; against tampering, compare the
archive's sha256 with the one the release job published.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

SEAL_FIELD = "manifest_sha256"
_ZERO = "0" * 64
_PATTERN = re.compile(rb'"manifest_sha256": "([0-9a-f]{64})"')


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def seal(manifest: dict[str, Any]) -> bytes:
    """The manifest as bytes with ``package.manifest_sha256`` filled in."""
    m = copy.deepcopy(manifest)
    m["package"][SEAL_FIELD] = _ZERO
    data = dumps(m).encode("utf-8")
    if len(_PATTERN.findall(data)) != 1:
        raise ValueError("the manifest must hold exactly one manifest_sha256 field")
    digest = hashlib.sha256(data).hexdigest()
    return data.replace(f'"{SEAL_FIELD}": "{_ZERO}"'.encode(), f'"{SEAL_FIELD}": "{digest}"'.encode())


def check_seal(data: bytes) -> str | None:
    """Why these manifest bytes do not carry a correct digest of themselves (None: they do)."""
    found = _PATTERN.findall(data)
    if len(found) != 1:
        return f"expected one package.{SEAL_FIELD} field, found {len(found)}"
    recorded = found[0].decode()
    actual = hashlib.sha256(data.replace(found[0], _ZERO.encode())).hexdigest()
    if actual != recorded:
        return f"its content does not match its recorded digest (sha256 {actual[:16]}…, recorded {recorded[:16]}…)"
    return None
