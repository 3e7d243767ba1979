"""sentence-transformers' Pooling, Dense and Normalize as traceable torch modules.

These follow ``sentence_transformers`` 6.x (``Pooling._forward_padded``, ``Dense``,
``Normalize``) for padded batches without a prompt-length feature, so the exported
graph's ``sentence_embedding`` is what ``SentenceTransformer.encode`` returns. The
library itself is not needed at export or run time (it is the tests' reference).
"""

from __future__ import annotations

from typing import Any

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def _pool(mode: str, tokens, mask):
    """One pooling mode over right- or left-padded ``tokens`` (batch, seq, hidden)."""
    import torch

    if mode == "cls":
        # The first real token (argmax of the mask), as sentence-transformers gathers it.
        first = mask.to(torch.int32).argmax(dim=1)
        index = first.view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
        return torch.gather(tokens, 1, index).squeeze(1)
    if mode == "max":
        keep = mask.unsqueeze(-1).to(tokens.dtype)
        return tokens.masked_fill(keep == 0, float("-inf")).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        keep = mask.unsqueeze(-1).to(tokens.dtype)
        total = (tokens * keep).sum(dim=1)
        count = torch.clamp(keep.sum(dim=1), min=1e-9)
        return total / (count if mode == "mean" else torch.sqrt(count))
    if mode == "weightedmean":
        keep = mask.unsqueeze(-1).to(tokens.dtype)
        weights = torch.arange(1, tokens.shape[1] + 1, dtype=tokens.dtype, device=tokens.device).view(1, -1, 1)
        # Weights count from the first real token (left padding shifts them).
        weights = weights - mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1).to(tokens.dtype)
        weighted = keep * weights
        return (tokens * weighted).sum(dim=1) / torch.clamp(weighted.sum(dim=1), min=1e-9)
    if mode == "lasttoken":
        seq_len = tokens.shape[1]
        values, indices = mask.to(torch.int32).flip(1).max(1)
        indices = torch.where(values == 0, seq_len - 1, indices)
        index = (seq_len - indices - 1).view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
        keep = mask.unsqueeze(-1).to(tokens.dtype)
        return torch.gather(tokens * keep, 1, index).squeeze(1)
    raise ValueError(f"unknown pooling mode {mode!r}")


def _activation(name: str | None):
    """A torch.nn activation class from its dotted name (only torch's own classes: no remote code)."""
    import importlib

    import torch

    if not name or name in ("torch.nn.modules.linear.Identity", "torch.nn.Identity"):
        return torch.nn.Identity()
    module_name, _, cls_name = name.rpartition(".")
    if not module_name.startswith("torch."):
        raise ValueError(f"activation {name} is not a torch.nn class")
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"activation {name} is not a torch.nn.Module class")
    return cls()


def build_dense(config: dict[str, Any], state: dict[str, Any]):
    """An ``nn.Module`` computing sentence-transformers' Dense from its config and weights."""
    import torch

    class Dense(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            bias = bool(config.get("bias", True))
            self.in_features, self.out_features = int(config["in_features"]), int(config["out_features"])
            self.linear = torch.nn.Linear(self.in_features, self.out_features, bias=bias)
            self.activation = _activation(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
            self.use_residual = bool(config.get("use_residual", False))
            if self.use_residual and self.in_features != self.out_features:
                self.residual = torch.nn.Linear(self.in_features, self.out_features, bias=False)

        def forward(self, x):
            out = self.activation(self.linear(x))
            if self.use_residual:
                out = out + (x if self.in_features == self.out_features else self.residual(x))
            return out

    dense = Dense()
    result = dense.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"weights do not fit: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    return dense.eval()


def build_sentence_module(encoder, input_names: tuple[str, ...], modes: tuple[str, ...], dense: list, normalize: bool):
    """encoder (a transformers model) -> {last_hidden_state, sentence_embedding}.

    The token-level output keeps the name ``last_hidden_state``: Optimum's
    feature-extraction loaders (sentence-transformers' ONNX and OpenVINO backends) read it.
    """
    import torch

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dense = torch.nn.ModuleList(dense)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            tokens = self.encoder(**{n: feeds[n] for n in input_names}, return_dict=True).last_hidden_state
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            pooled = torch.cat([_pool(m, tokens, mask) for m in modes], dim=-1)
            for layer in self.dense:
                pooled = layer(pooled)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            return {"last_hidden_state": tokens, "sentence_embedding": pooled}

    return SentenceEncoder().eval()
