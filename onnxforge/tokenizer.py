"""The artifact's tokenizer: which files make it, loading it, and checking it fits the model."""

from __future__ import annotations

import json
from pathlib import Path

from .files import TOKENIZER_FILES
from .errors import UserInputError
from .spec import ModelSpec
from .vocab import short_error


def collect_tokenizer_files(path: Path, *, required: bool = True) -> dict[str, Path]:
    """Tokenizer files to copy beside the model, from a tokenizer.json or a folder."""
    path = Path(path)
    if path.is_file():
        if path.name != "tokenizer.json" and path.suffix != ".json":
            raise UserInputError(f"--tokenizer {path} is not a tokenizer.json file", hint="pass tokenizer.json or its folder")
        found = {"tokenizer.json": path}
        for name in TOKENIZER_FILES:
            if name != "tokenizer.json" and (path.parent / name).is_file():
                found[name] = path.parent / name
        return found
    if path.is_dir():
        found = {name: path / name for name in TOKENIZER_FILES if (path / name).is_file()}
        if required and "tokenizer.json" not in found and not found:
            raise UserInputError(f"--tokenizer folder {path} holds no tokenizer files", hint="it should contain tokenizer.json")
        return found
    if required:
        raise UserInputError(f"--tokenizer {path} does not exist", hint="pass tokenizer.json or the folder that holds it")
    return {}


def ensure_tokenizer_json(folder: Path) -> None:
    """Write tokenizer.json from slow-tokenizer files (vocab.txt, ...) when it is missing."""
    if (folder / "tokenizer.json").exists() or not any((folder / n).exists() for n in TOKENIZER_FILES):
        return
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
    except Exception as e:  # converting a user's tokenizer; any failure is an input problem
        raise UserInputError(f"cannot build tokenizer.json from the tokenizer files in the source: {e}") from None
    tok.backend_tokenizer.save(str(folder / "tokenizer.json"))


def load_tokenizer(folder_or_file: Path):
    """Load ``tokenizer.json`` with the tokenizers library (fast, no transformers)."""
    from tokenizers import Tokenizer

    path = Path(folder_or_file)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise UserInputError(f"{path} does not exist", hint="export the model with a tokenizer (--tokenizer PATH)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise UserInputError(f"{path} is not a valid tokenizer.json ({short_error(e, 200)})") from None


def check_tokenizer_fits(tokenizer, spec: ModelSpec, where: str = "tokenizer") -> None:
    """The tokenizer must not produce ids past the embedding table."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    top = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if top >= spec.vocab_size:
        raise UserInputError(
            f"the {where} has {size} tokens (largest id {top}) but the model's embedding table has {spec.vocab_size} rows",
            hint="pass the tokenizer the model was trained with (--tokenizer PATH)",
        )


def tokenizer_model_max_length(folder: Path) -> int | None:
    cfg = Path(folder) / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    try:
        value = json.loads(cfg.read_text(encoding="utf-8")).get("model_max_length")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return int(value) if isinstance(value, (int, float)) and value < 1e9 else None
