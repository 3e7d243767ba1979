"""SourceArgs: the model-source fields declared once, and what they resolve to."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxforge.errors import UserInputError
from onnxforge.sources import SOURCE_FIELDS, SourceArgs, SourceRef, resolve_source
from onnxforge.sources.args import field_schema


def test_the_fields_are_declared_once_and_shared_by_the_recorded_ref():
    assert set(SOURCE_FIELDS) == {"model", "task", "weights", "tokenizer", "app_dir", "num_heads", "hidden_size", "num_layers"}
    # A SourceRef carries every qualifying field SourceArgs has (MODEL becomes kind + location).
    assert set(SOURCE_FIELDS) - {"model"} <= set(SourceRef.__dataclass_fields__)
    schema = field_schema()
    assert next(iter(schema)) == "model"
    assert {k for k, (_, is_path) in schema.items() if is_path} == {"weights", "tokenizer", "app_dir"}
    assert schema["num_heads"][0] is int and schema["task"][0] is str


def test_paths_from_the_cli_become_strings_and_resolve_like_resolve_source(tiny_bert_dir):
    args = SourceArgs(model=str(tiny_bert_dir), tokenizer=Path(tiny_bert_dir) / "tokenizer.json")
    assert isinstance(args.tokenizer, str)
    ref = args.resolve()
    assert ref == resolve_source(str(tiny_bert_dir), tokenizer=args.tokenizer)
    assert ref.kind == "hf" and ref.location == str(Path(tiny_bert_dir).resolve())
    # The manifest's record reads back to the same ref, kind and location first.
    assert list(ref.to_dict())[:2] == ["kind", "location"] and SourceRef.from_dict(ref.to_dict()) == ref


def test_bad_sources_are_bad_input(tmp_path):
    with pytest.raises(UserInputError, match="--weights applies"):
        SourceArgs(weights=str(tmp_path / "w.pt")).resolve()
    with pytest.raises(UserInputError, match="neither an existing folder"):
        SourceArgs(model="no/such/folder").resolve()
    with pytest.raises(TypeError):
        resolve_source(None, no_such_field=1)
