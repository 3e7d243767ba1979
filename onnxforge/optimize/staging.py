"""Write a variant beside the artifact, check it, then publish it with interrupts deferred.

Both optimize routes (ONNX graphs and OpenVINO IRs) write into a staging folder inside
the artifact, check what they wrote, and only then rename it into place. From the first
rename until the manifest records the new files' hashes, Ctrl-C and SIGTERM wait, so the
model files and the manifest change together (``artifact.deferred_interrupts``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from ..artifact import deferred_interrupts

Staged = TypeVar("Staged")


def stage_and_publish(root: Path, variant: str, stage: Callable[[Path], Staged],
                      publish: Callable[[Staged], list[str]]) -> tuple[Staged, list[str], contextlib.ExitStack]:
    """``stage(folder)`` writes and checks the new files in a staging folder (raising leaves
    the artifact untouched); ``publish(staged)`` renames them into ``root`` and returns
    their names. Returns (what stage returned, the published names, the critical section):
    interrupts stay deferred until the caller closes it, after saving the manifest
    (``with critical: ...``). The staging folder is removed either way."""
    staging = Path(tempfile.mkdtemp(prefix=f".optimize-{variant}-", dir=root))
    critical = contextlib.ExitStack()
    try:
        staged = stage(staging)
        critical.enter_context(deferred_interrupts())
        published = publish(staged)
    except BaseException:
        critical.close()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return staged, published, critical
