"""Run the onnxforge CLI with chosen functions slowed down (fault tests only).

``ONNXFORGE_TEST_SLOW="pkg.module:Class.method=0.05,..."`` adds a sleep before each call,
so a signal sent "while the command works" lands inside that work on any machine. The
code paths the signal interrupts are the real ones; only their duration changes.
"""

from __future__ import annotations

import functools
import importlib
import os
import time


def _slow(spec: str) -> None:
    target, _, delay = spec.partition("=")
    module_name, _, path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    @functools.wraps(original)
    def slowed(*args, **kwargs):
        time.sleep(float(delay))
        return original(*args, **kwargs)

    setattr(owner, name, slowed)


def main() -> None:
    for spec in filter(None, os.environ.get("ONNXFORGE_TEST_SLOW", "").split(",")):
        _slow(spec.strip())
    from onnxforge.cli import run

    run()


if __name__ == "__main__":
    main()
