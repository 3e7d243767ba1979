"""The model's own prompts (sentence-transformers' ``prompts`` / ``default_prompt_name``).

Recorded in the manifest's ``pipeline`` from a folder's config_sentence_transformers.json.
``SentenceTransformer.encode`` puts the named prompt (else the default one) in front of
each text before tokenizing; serve and batch do the same so their embeddings match it.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserInputError


def model_prompts(artifact: Any) -> tuple[dict[str, str], str | None]:
    """The prompts by name and the default prompt name (None when it names no prompt)."""
    manifest = getattr(artifact, "manifest", None) or {}
    pipeline = manifest.get("pipeline") or {}
    prompts = {str(k): str(v) for k, v in (pipeline.get("prompts") or {}).items()}
    default = pipeline.get("default_prompt_name")
    return prompts, (default if default in prompts else None)


def prompt_prefix(artifact: Any, prompt_name: str | None) -> str:
    """The text put in front of every input: ``prompt_name``'s prompt, else the default one, else ""."""
    prompts, default = model_prompts(artifact)
    name = prompt_name if prompt_name is not None else default
    if name is None:
        return ""
    if name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise UserInputError(f"--prompt-name {name} is not one of this model's prompts ({known})",
                             hint="leave it out (the model's default prompt, if any, is used) or pick one of those")
    return prompts[name]
