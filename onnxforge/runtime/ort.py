"""The ONNX Runtime engine: a session from ``runners.make_session`` behind the ``Engine`` seam.

Sessions are made in one place (``runners.make_session``: CUDA libraries preloaded,
a CPU fallback after asking for CUDA is an error); this adds IO binding and the
members ``Runtime`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..runners import SessionInfo, make_session


class OrtEngine:
    """An ONNX Runtime session on one device. Build it with ``OrtEngine.open``.

    ``run`` is safe to call from several threads (ORT sessions are).
    """

    engine = "ort"
    parallel_calls = 1  # one session run already spreads over the intra-op threads

    def __init__(self, session, info: SessionInfo, *, io_binding: bool):
        self.session = session
        self.info = info
        self.io_binding = io_binding
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.input_types = {i.name: i.type for i in session.get_inputs()}

    @classmethod
    def open(cls, path: Path, device: str, *, threads: int | None = None, optimization: str = "all",
             config: dict[str, str] | None = None, io_binding: bool | None = None) -> "OrtEngine":
        """io_binding: None means on for CUDA (inputs copied once, outputs bound to the
        device), off for CPU where it saves nothing."""
        session, info = make_session(path, device, threads=threads, optimization=optimization, config=config)
        use_binding = (info.device == "cuda") if io_binding is None else bool(io_binding)
        return cls(session, info, io_binding=use_binding)

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def providers(self) -> list[str]:
        return list(self.info.obtained)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "device": self.device, "providers": self.providers, "io_binding": self.io_binding}

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(outputs or self.output_names)
        values = self._run_bound(feeds, names) if self.io_binding else self.session.run(names, feeds)
        return dict(zip(names, values))

    def _run_bound(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        """IO binding: inputs copied to the device once, outputs allocated there by ORT.

        On CUDA this avoids ORT's per-run staging of feeds and lets it size outputs on
        the device; the outputs come back in one copy each.
        """
        import onnxruntime as ort

        device = "cuda" if self.device == "cuda" else "cpu"
        binding = self.session.io_binding()
        for name, array in feeds.items():
            if device == "cuda":
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
            else:
                binding.bind_cpu_input(name, array)
        for name in names:
            binding.bind_output(name, device)
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.copy_outputs_to_cpu()
