"""``package.module:function`` factories that return a custom BERT ``nn.Module``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ..errors import UserInputError
from ..spec import ModelSpec
from .introspect import infer_numbers, set_fusable_attention
from .ref import LoadedModel, SourceRef
from .wrap import derive_outputs, forward_inputs, make_wrapper


def _import_factory(ref: SourceRef):
    module_name, _, func_name = ref.location.partition(":")
    # Like uvicorn's --app-dir: the user's code is importable from the folder they
    # named (the working directory by default) without installing it.
    if ref.app_dir and ref.app_dir not in sys.path:
        sys.path.insert(0, ref.app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UserInputError(
            f"cannot import module '{module_name}' for {ref.location}: {e}",
            hint="check the spelling, install the package, or run from (or pass --app-dir) the folder that holds it",
        ) from None
    except Exception as e:
        raise UserInputError(f"importing '{module_name}' failed: {type(e).__name__}: {e}") from e
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        available = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise UserInputError(
            f"module '{module_name}' has no callable '{func_name}'",
            hint=f"callables there: {', '.join(available[:12]) or 'none'}",
        )
    return func


def _embedding_sizes(model) -> dict[str, int]:
    """Vocabulary, position and token-type table sizes read off nn.Embedding modules."""
    import torch

    sizes: dict[str, int] = {}
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)]
    for name, emb in embeddings:
        lname = name.lower()
        if "position" in lname:
            sizes.setdefault("max_positions", emb.num_embeddings)
        elif "token_type" in lname or "segment" in lname:
            sizes.setdefault("type_vocab_size", emb.num_embeddings)
        elif "word" in lname or "token" in lname:
            sizes.setdefault("vocab_size", emb.num_embeddings)
    if "vocab_size" not in sizes and embeddings:
        sizes["vocab_size"] = max(e.num_embeddings for _, e in embeddings)
    return sizes


def _load_weights(model, path: str) -> None:
    import torch

    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's text for a file that is not a checkpoint runs to many lines (and suggests
        # weights_only=False, which would run arbitrary code): keep its first line.
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:200]
        raise UserInputError(f"cannot read --weights {path}: it is not a readable state_dict file ({type(e).__name__}: {first})",
                             hint="pass a file saved with torch.save(model.state_dict(), path) or a .safetensors file") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"--weights {path} holds a {type(state).__name__}, not a state_dict")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} (e.g. {', '.join(result.missing_keys[:3])})")
        if result.unexpected_keys:
            parts.append(f"unexpected {len(result.unexpected_keys)} (e.g. {', '.join(result.unexpected_keys[:3])})")
        raise UserInputError(
            f"--weights {path} does not fit the model: {'; '.join(parts)}",
            hint="pass the state_dict saved from this same architecture",
        )


def load_factory(ref: SourceRef, attn_implementation: str | None = None) -> LoadedModel:
    import torch

    func = _import_factory(ref)
    try:
        model = func()
    except Exception as e:
        raise UserInputError(f"factory {ref.location}() raised {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise UserInputError(f"factory {ref.location}() returned {type(model).__name__}, not a torch.nn.Module")
    if ref.weights:
        _load_weights(model, ref.weights)
    model.eval()
    torch.set_grad_enabled(False)

    # HF modules nested anywhere get the attention implementation the exporter fuses.
    attn = set_fusable_attention(model, attn_implementation)
    input_names = forward_inputs(model)
    sizes = _embedding_sizes(model)
    given = {key: getattr(ref, key) for key in ("num_heads", "hidden_size", "num_layers")}
    numbers = infer_numbers(model, input_names, sizes.get("vocab_size"), given)
    numbers.pop("_evidence")
    for key in ("vocab_size", "max_positions", "type_vocab_size"):
        if key in sizes and key not in numbers:
            numbers[key] = sizes[key]
    if "vocab_size" not in numbers:
        raise UserInputError(f"{type(model).__name__} has no nn.Embedding to read the vocabulary size from")
    numbers.setdefault("max_positions", 512)
    outputs = derive_outputs(model, input_names, numbers["vocab_size"])
    try:
        spec = ModelSpec(input_names=input_names, outputs=outputs, task=ref.task or "custom", **numbers)
    except ValueError as e:
        raise UserInputError(f"the model's dimensions are inconsistent: {e}") from None
    return LoadedModel(module=make_wrapper(model, input_names, spec.output_names), spec=spec, source=ref,
                       attn_implementation=attn)
