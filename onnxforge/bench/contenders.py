"""What gets timed: an ONNX Runtime session per (variant, device), PyTorch as the reference.

A contender is built once (session creation, weight loading), then ``prepare`` turns
a batch of numpy feeds into a zero-argument call that runs one forward pass to
completion: inputs already where the model reads them (on the GPU: bound with IO
binding / moved with ``.to``), outputs left where they land, the device synchronized.
That is model time, the figure the seed's "inference time per phrase" meant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import ModelSpec


@dataclass
class Contender:
    name: str  # "torch fp32", "ort optimized", ...
    kind: str  # torch | ort
    variant: str | None
    precision: str
    device: str  # cpu | cuda
    provider: str
    prepare: Callable[[dict[str, np.ndarray]], Callable[[], object]]
    notes: str = ""

    @property
    def key(self) -> str:
        return f"{self.name} [{self.device}]"


def bench_inputs(spec: ModelSpec, batch: int, seq: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length rows (no padding), so every row computes ``seq`` tokens and the FLOP
    count is exact; token ids are random but above the special tokens."""
    rng = np.random.default_rng(seed + 1000 * batch + seq)
    low = min(1000, max(spec.vocab_size // 4, 1))
    ids = rng.integers(low, spec.vocab_size, size=(batch, seq), dtype=np.int64)
    feeds = {"input_ids": ids}
    if "attention_mask" in spec.input_names:
        feeds["attention_mask"] = np.ones_like(ids)
    if "token_type_ids" in spec.input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def ort_contender(path: Path, variant: str, precision: str, device: str, threads: int | None) -> Contender:
    from ..runners import make_session

    session, info = make_session(path, device, threads=threads)
    graph_inputs = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]

    def prepare(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        mine = {k: np.ascontiguousarray(feeds[k]) for k in graph_inputs}
        if info.device != "cuda":
            return lambda: session.run(output_names, mine)
        import onnxruntime as ort

        # IO binding: inputs copied to the GPU once, outputs kept there. ORT's CUDA
        # provider synchronizes at the end of run_with_iobinding, so the call is complete.
        binding = session.io_binding()
        keep = []
        for name, arr in mine.items():
            value = ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0)
            keep.append(value)
            binding.bind_ortvalue_input(name, value)
        for name in output_names:
            binding.bind_output(name, "cuda")

        def call() -> object:
            session.run_with_iobinding(binding)
            return keep

        return call

    return Contender(
        name=f"ort {variant}", kind="ort", variant=variant, precision=precision, device=info.device,
        provider=info.obtained[0] if info.obtained else "?", prepare=prepare,
    )


def openvino_contender(path: Path, variant: str, precision: str, inference_precision: str | None,
                       threads: int | None) -> Contender:
    """The variant compiled by OpenVINO for the CPU (its IR, or an ONNX file OpenVINO reads)."""
    from ..runtime.openvino import OpenVINOEngine, OpenVINOOptions

    engine = OpenVINOEngine.open(path, options=OpenVINOOptions(precision=inference_precision, threads=threads))

    def prepare(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        mine = {k: np.ascontiguousarray(feeds[k]) for k in engine.input_names}
        return lambda: engine.run(mine)

    return Contender(
        name=f"openvino {variant}", kind="openvino", variant=variant, precision=precision, device="cpu",
        provider=f"OpenVINO CPU ({engine.inference_precision})", prepare=prepare,
    )


def torch_contenders(module: Any, spec: ModelSpec, device: str, *, lowp: bool, cpu_bf16: bool) -> list[Contender]:
    """PyTorch eager fp32 (the reference) and, where the hardware has it, fp16 (CUDA)
    or bf16 autocast (CPUs with AMX or AVX512-BF16)."""
    import copy

    import torch

    provider = f"torch {torch.__version__}"
    attn = getattr(getattr(getattr(module, "model", None), "config", None), "_attn_implementation", None)
    note = f"attention: {attn}" if attn else ""
    found: list[Contender] = []

    def make(mod: Any, dev: str, autocast_dtype=None) -> Callable[[dict[str, np.ndarray]], Callable[[], object]]:
        def prepare(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(dev) for n in spec.input_names]
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

            def call() -> object:
                ctx = torch.autocast(dev, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
                with torch.inference_mode(), ctx:
                    out = mod(*args)
                sync()
                return out

            return call

        return prepare

    if device == "cuda":
        fp32 = copy.deepcopy(module).to("cuda").eval()
        found.append(Contender("torch fp32", "torch", None, "fp32", "cuda", provider, make(fp32, "cuda"), note))
        if lowp:
            fp16 = copy.deepcopy(module).half().to("cuda").eval()
            found.append(Contender("torch fp16", "torch", None, "fp16", "cuda", provider, make(fp16, "cuda"), note))
    else:
        module = module.eval()
        found.append(Contender("torch fp32", "torch", None, "fp32", "cpu", provider, make(module, "cpu"), note))
        if lowp and cpu_bf16:
            found.append(Contender(
                "torch bf16-autocast", "torch", None, "bf16", "cpu", provider, make(module, "cpu", torch.bfloat16),
                (note + "; " if note else "") + "torch.autocast(cpu, bfloat16)",
            ))
    return found
