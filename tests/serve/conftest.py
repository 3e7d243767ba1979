"""Fixtures for the server's new surfaces (the shared runtimes come from tests/runtime_helpers.py)."""

from __future__ import annotations


class RecordingRuntime:
    """A real runtime that records the (texts, width) of every model call."""

    def __init__(self, runtime):
        self._rt = runtime
        self.calls: list[tuple[int, int]] = []

    def run(self, feeds, outputs=None):
        ids = feeds["input_ids"]
        self.calls.append((int(ids.shape[0]), int(ids.shape[1])))
        return self._rt.run(feeds, outputs)

    def __getattr__(self, name):
        return getattr(self._rt, name)
