"""Export a torch module with the dynamo exporter and fuse it directly (no source loader).

Some architectures and module shapes are not loadable through onnxforge's sources yet;
fusion only needs the ONNX file and the heads / hidden size / layers, so these tests
build both here and call ``optimize.fusion.fuse`` on the file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MAX_SEQ = 128


def export_dynamo(module, inputs: dict, path: Path) -> Path:
    import torch

    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=MAX_SEQ)
    names = list(inputs)
    program = torch.onnx.export(
        module, (), kwargs={k: torch.from_numpy(v) for k, v in inputs.items()}, dynamo=True,
        input_names=names, dynamic_shapes={k: {0: batch, 1: seq} for k in names},
        opset_version=18, optimize=True, verbose=False,
    )
    program.save(str(path))
    return path


def spec_for(inputs: dict, num_heads: int, hidden: int, layers: int, vocab: int):
    from onnxforge.spec import ModelSpec, OutputSpec

    return ModelSpec(
        input_names=tuple(inputs), outputs=(OutputSpec("out", ("batch", "sequence", None)),),
        num_heads=num_heads, hidden_size=hidden, num_layers=layers, vocab_size=vocab, max_positions=MAX_SEQ,
    )


def feeds(names, vocab: int, batch: int = 3, seq: int = 37, seed: int = 5, pad: str = "right") -> dict:
    """Random ids; row 1 is padded (on the right, or on the left with pad="left")."""
    rng = np.random.default_rng(seed)
    out = {"input_ids": rng.integers(5, vocab, (batch, seq)).astype(np.int64),
           "attention_mask": np.ones((batch, seq), np.int64),
           "token_type_ids": rng.integers(0, 2, (batch, seq)).astype(np.int64)}
    if pad == "right":
        out["attention_mask"][1, seq // 2:] = 0
    else:
        out["attention_mask"][1, : seq // 2] = 0
    return {k: out[k] for k in names}


def torch_outputs(module, inputs: dict) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        result = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    if isinstance(result, dict):
        result = list(result.values())
    elif not isinstance(result, (list, tuple)):
        result = [result]
    return [r.numpy() for r in result if r is not None and hasattr(r, "numpy")]


def ort_outputs(model_or_path, inputs: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"]).run(None, inputs)


def masked_max_abs(expected: list, actual: list, mask: np.ndarray) -> float:
    """Worst |difference| over real tokens (token-level outputs) or whole (pooled) outputs."""
    keep = mask.astype(bool)
    worst = 0.0
    for e, a in zip(expected, actual):
        assert e.shape == a.shape, (e.shape, a.shape)
        if e.ndim >= 2 and e.shape[:2] == mask.shape:
            e, a = e[keep], a[keep]
        worst = max(worst, float(np.abs(e - a).max()))
    return worst


@functools.lru_cache(maxsize=None)
def fused_style(name: str, tmp: str):
    """(module, fusion outcome, input names) for one tests.fixtures.attention_styles factory."""
    from onnxforge.optimize.fusion import fuse
    from tests.fixtures import attention_styles as styles

    module = getattr(styles, name)()
    names = ("input_ids", "attention_mask")
    path = export_dynamo(module, feeds(names, styles.VOCAB, batch=2, seq=16), Path(tmp) / f"{name}.onnx")
    spec = spec_for(dict.fromkeys(names), styles.HEADS, styles.HIDDEN, styles.LAYERS, styles.VOCAB)
    return module, fuse(path, spec, "dynamo", None), names
