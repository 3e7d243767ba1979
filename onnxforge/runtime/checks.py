"""Does the artifact's tokenizer fit its model? Checked once at load, before any text runs.

A tokenizer from another model runs without an error and gives wrong numbers: ids past
the embedding table read garbage (or crash on CUDA), a missing [CLS] shifts every
position, a length limit past the position table indexes out of range. Each check
names what was found and how to fix it; a mismatch is a ``UserInputError`` (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..spec import BERT_INPUTS, ModelSpec
from ..tokenizer import check_tokenizer_fits, tokenizer_model_max_length

# Keys of tokenizer_config.json / special_tokens_map.json that name one special token.
SPECIAL_TOKEN_KEYS = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token")
# ONNX element types the tokenizer's int64 ids can be cast to without loss.
INTEGER_INPUT_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32"}
PROBE_TEXT = "hello world"


def _token_text(value: Any) -> str | None:
    """A special token as written in the config: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def declared_special_tokens(folder: Path) -> dict[str, str]:
    """Special tokens named by special_tokens_map.json and tokenizer_config.json (the latter wins)."""
    found: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{path} is not valid JSON ({e})", hint="re-export the model with its tokenizer") from None
        if not isinstance(data, dict):
            continue
        for key in SPECIAL_TOKEN_KEYS:
            token = _token_text(data.get(key))
            if token:
                found[key] = token
    return found


def resolve_max_length(folder: Path, spec: ModelSpec, requested: int | None) -> int:
    """The truncation length: ``requested``, else the tokenizer's model_max_length, within max positions."""
    if requested is not None:
        if not 1 <= int(requested) <= spec.max_positions:
            raise UserInputError(
                f"--max-length {requested} is outside 1..{spec.max_positions} (the model's position table)",
                hint=f"pass a length of at most {spec.max_positions}",
            )
        return int(requested)
    declared = tokenizer_model_max_length(folder)
    if declared is not None and declared > spec.max_positions:
        raise UserInputError(
            f"tokenizer_config.json sets model_max_length {declared} but the model has only {spec.max_positions} "
            "positions: texts longer than that would index past the position table",
            hint=f"set model_max_length to {spec.max_positions} or less in tokenizer_config.json, "
            f"or pass --max-length {spec.max_positions}",
        )
    return min(declared or spec.max_positions, spec.max_positions)


def check_special_tokens(tokenizer, spec: ModelSpec, folder: Path) -> dict[str, int]:
    """Every declared special token is in the vocabulary, the pad token is the model's,
    and the post-processor adds [CLS]/[SEP] (or <s>/</s>) the way the model was trained."""
    declared = declared_special_tokens(folder)
    ids: dict[str, int] = {}
    missing = []
    for key, token in declared.items():
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            missing.append(f"{key} {token!r}")
        else:
            ids[key] = token_id
    if missing:
        raise UserInputError(
            f"the tokenizer's config names special tokens its vocabulary lacks: {', '.join(missing)}",
            hint="tokenizer.json and tokenizer_config.json come from different tokenizers; re-export with the model's own tokenizer",
        )
    if "pad_token" in ids and ids["pad_token"] != spec.pad_token_id:
        raise UserInputError(
            f"the tokenizer's pad token {declared['pad_token']!r} has id {ids['pad_token']} but the model pads with "
            f"id {spec.pad_token_id}",
            hint="use the tokenizer the model was trained with (pad_token_id in config.json must match)",
        )
    if tokenizer.id_to_token(spec.pad_token_id) is None:
        raise UserInputError(
            f"the model pads with token id {spec.pad_token_id}, which the tokenizer's vocabulary does not have",
            hint="use the tokenizer the model was trained with",
        )
    start = ids.get("cls_token", ids.get("bos_token"))
    end = ids.get("sep_token", ids.get("eos_token"))
    if start is not None and end is not None:
        encoding = tokenizer.encode(PROBE_TEXT)
        # tokenizer.json may carry its own padding: look at the real tokens only.
        probe = [i for i, m in zip(encoding.ids, encoding.attention_mask) if m]
        if not probe or probe[0] != start or probe[-1] != end:
            raise UserInputError(
                f"tokenizer.json does not wrap texts in {tokenizer.id_to_token(start)} ... {tokenizer.id_to_token(end)} "
                f"(it gives ids {probe[:3]}...{probe[-2:]} for {PROBE_TEXT!r}), but the model expects them",
                hint="tokenizer.json lost its post-processor; re-save it from the original tokenizer",
            )
    return ids


def check_graph_inputs(engine, spec: ModelSpec) -> dict[str, str]:
    """The graph takes exactly the spec's inputs, each one the tokenizer produces, as integers.

    Returns the numpy dtype each input is fed as (int32 graphs get cast ids).
    """
    graph = dict(engine.input_types)
    unknown = [n for n in graph if n not in BERT_INPUTS]
    if unknown:
        raise UserInputError(
            f"the model takes {unknown}, which a tokenizer does not produce (it gives {', '.join(BERT_INPUTS)})",
            hint="export a model whose forward takes only input_ids, attention_mask and token_type_ids",
        )
    if set(graph) != set(spec.input_names):
        raise UserInputError(
            f"the graph's inputs {sorted(graph)} differ from the manifest's {sorted(spec.input_names)}",
            hint="the model file and onnxforge.json come from different exports; re-run `onnxforge export`",
        )
    dtypes = {}
    for name, onnx_type in graph.items():
        if onnx_type not in INTEGER_INPUT_TYPES:
            raise UserInputError(
                f"graph input {name} is {onnx_type}; token ids and masks must be int64 or int32",
                hint="re-export the model from PyTorch with integer inputs",
            )
        dtypes[name] = INTEGER_INPUT_TYPES[onnx_type]
    outputs = set(engine.output_names)
    missing = [n for n in spec.output_names if n not in outputs]
    if missing:
        raise UserInputError(
            f"the graph has no output {missing} that the manifest lists (it has {sorted(outputs)})",
            hint="the model file and onnxforge.json come from different exports; re-run `onnxforge export`",
        )
    return dtypes


def check_tokenizer_against_model(tokenizer, spec: ModelSpec, folder: Path, max_length: int | None) -> dict[str, Any]:
    """All checks that need no engine; returns what they found (for reports)."""
    check_tokenizer_fits(tokenizer, spec, "artifact's tokenizer")
    length = resolve_max_length(folder, spec, max_length)
    special = check_special_tokens(tokenizer, spec, folder)
    return {"max_length": length, "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True), "special_tokens": special}
