"""Heads, hidden size and layers of any encoder ``nn.Module``, read off the model itself.

Where they come from, first match wins per number:

1. a transformers config anywhere in the module tree (HF modules nested in a wrapper);
2. ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` modules (``num_heads``,
   ``embed_dim``; one attention module per layer);
3. a probe forward pass that watches the attention it computes: each
   ``F.scaled_dot_product_attention`` call, or each softmax over a 4-D
   (batch, heads, query, key) score tensor, is one layer, and its shape gives the
   heads and head size (hand-written attention keeps heads in a reshape, not an attribute).

The word-embedding width backs up the hidden size. Flags (``--num-heads`` ...) only
override. When a number cannot be found the error names the modules looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserInputError

NUMBERS = ("num_heads", "hidden_size", "num_layers")


@dataclass
class Findings:
    numbers: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)
    looked_at: list[str] = field(default_factory=list)

    def offer(self, key: str, value: int, why: str) -> None:
        if key not in self.numbers and value:
            self.numbers[key] = int(value)
            self.evidence[key] = why


def find_config(model) -> tuple[str, Any] | None:
    """The first transformers-style config in the module tree, with the module's name."""
    for name, m in model.named_modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and all(hasattr(cfg, a) for a in ("num_attention_heads", "hidden_size", "num_hidden_layers")):
            return name or type(model).__name__, cfg
    return None


def _from_modules(model, found: Findings) -> None:
    import torch

    mha = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.MultiheadAttention)]
    if mha:
        name, first = mha[0]
        found.offer("num_heads", first.num_heads, f"{name} (nn.MultiheadAttention)")
        found.offer("hidden_size", first.embed_dim, f"{name} (nn.MultiheadAttention)")
        found.offer("num_layers", len(mha), f"{len(mha)} nn.MultiheadAttention modules")
    found.looked_at.append(f"{len(mha)} nn.MultiheadAttention")


def _from_probe(model, input_names: tuple[str, ...], vocab_size: int, found: Findings) -> None:
    """Run forward once and record the attention it computes."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    from .wrap import _probe_inputs

    calls: list[tuple[str, tuple[int, ...]]] = []

    class WatchAttention(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.scaled_dot_product_attention and args and args[0].dim() == 4:
                calls.append(("scaled_dot_product_attention", tuple(args[0].shape)))
            elif func in (torch.softmax, torch.Tensor.softmax, F.softmax) and args and args[0].dim() == 4:
                calls.append(("softmax", tuple(args[0].shape)))
            return func(*args, **kwargs)

    try:
        with torch.no_grad(), WatchAttention():
            model(**_probe_inputs(input_names, 2, 8, vocab_size))
    except Exception as e:  # the forward is checked (with a clear error) by derive_outputs
        found.looked_at.append(f"a probe forward (it failed: {type(e).__name__})")
        return
    sdpa = [shape for kind, shape in calls if kind == "scaled_dot_product_attention"]
    scores = [shape for kind, shape in calls if kind == "softmax" and shape[-1] == shape[-2] == 8]
    found.looked_at.append(f"a probe forward ({len(sdpa)} scaled_dot_product_attention calls, "
                           f"{len(scores)} softmax over 4-D attention scores)")
    if sdpa:
        _, heads, _, head_size = sdpa[0]
        found.offer("num_heads", heads, "F.scaled_dot_product_attention query shape")
        found.offer("hidden_size", heads * head_size, "F.scaled_dot_product_attention query shape")
        found.offer("num_layers", len(sdpa), f"{len(sdpa)} F.scaled_dot_product_attention calls")
    elif scores:
        found.offer("num_heads", scores[0][1], "softmax over (batch, heads, query, key) scores")
        found.offer("num_layers", len(scores), f"{len(scores)} attention softmax calls")


def infer_numbers(model, input_names: tuple[str, ...], vocab_size: int | None, given: dict[str, int | None]) -> dict[str, Any]:
    """Heads, hidden size, layers (plus whatever a config gives); raises naming what it looked at."""
    found = Findings()
    for key in NUMBERS:
        if given.get(key) is not None:
            found.offer(key, int(given[key]), "flag")
    extra: dict[str, Any] = {}
    located = find_config(model)
    if located is not None:
        from .hf import spec_numbers_from_config

        name, cfg = located
        extra = spec_numbers_from_config(cfg)
        for key in NUMBERS:
            found.offer(key, extra[key], f"the transformers config of {name}")
    found.looked_at.append("a transformers config" if located else "no transformers config")
    if any(k not in found.numbers for k in NUMBERS):
        _from_modules(model, found)
    if any(k not in found.numbers for k in NUMBERS) and vocab_size:
        _from_probe(model, input_names, vocab_size, found)
    words = _word_embedding(model)
    if words is not None:
        found.offer("hidden_size", words[1].embedding_dim, f"{words[0]} (word embeddings)")
    missing = [k for k in NUMBERS if k not in found.numbers]
    if missing:
        raise UserInputError(
            f"cannot tell {', '.join(missing)} of {type(model).__name__}: looked at " + "; ".join(found.looked_at),
            hint="pass " + " ".join(f"--{k.replace('_', '-')} N" for k in missing),
        )
    return extra | found.numbers | {"_evidence": found.evidence}


def _word_embedding(model):
    import torch

    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)]
    named = [(n, m) for n, m in embeddings if "word" in n.lower() or "token" in n.lower() and "type" not in n.lower()]
    pool = named or embeddings
    return max(pool, key=lambda nm: nm[1].num_embeddings) if pool else None


def set_fusable_attention(model, wanted: str | None) -> str | None:
    """Set every transformers model in the tree to ``wanted`` attention where it has it.

    Returns what was set (None when the tree holds no transformers model).
    """
    from .architectures import supported_attention

    if wanted is None:
        return None
    chosen = None
    for m in model.modules():
        if hasattr(m, "set_attn_implementation") and hasattr(m, "config"):
            attn = supported_attention(type(m), wanted)
            try:
                m.set_attn_implementation(attn)
            except (ValueError, ImportError):
                continue
            chosen = chosen or attn
    return chosen
