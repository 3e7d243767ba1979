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


# ``--prompt-name ""`` / ``"prompt_name": ""``: no prompt, even where the model has a
# default one (sentence-transformers' ``encode(prompt="")``).
NO_PROMPT = ""


class PromptProblem(UserInputError):
    """A prompt that cannot be applied: ``kind`` is unknown_prompt or prompt_not_pooled."""

    def __init__(self, kind: str, message: str, *, hint: str):
        super().__init__(message, hint=hint)
        self.kind = kind


def pools_prompt(artifact: Any) -> bool:
    """False when the model's Pooling leaves the prompt's tokens out (``include_prompt: false``)."""
    pipeline = (getattr(artifact, "manifest", None) or {}).get("pipeline") or {}
    return bool(pipeline.get("include_prompt", True))


def choose_prefix(prompts: dict[str, str], default: str | None, prompt_name: str | None, *,
                  prompt_pooled: bool = True) -> str:
    """The text put in front of every input: ``prompt_name``'s prompt, else the default one, else "".

    A model whose Pooling excludes the prompt's tokens (``include_prompt: false``) pools
    over fewer tokens than it sees; the exported graph pools over every token, so such
    a prompt is refused rather than embedded differently from sentence-transformers.
    """
    name = prompt_name if prompt_name is not None else default
    if name is None or name == NO_PROMPT:
        return ""
    if name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise PromptProblem("unknown_prompt", f"prompt name {name!r} is not one of this model's prompts ({known})",
                            hint="leave it out (the model's default prompt, if any, is used), name one of those, "
                                 "or pass an empty name for no prompt")
    prefix = prompts[name]
    if prefix and not prompt_pooled:
        raise PromptProblem(
            "prompt_not_pooled",
            f"prompt {name!r} cannot be applied faithfully: this model's Pooling leaves the prompt's tokens out "
            "(include_prompt: false), and the exported graph pools over every token it is given",
            hint="pass an empty prompt name to embed the texts without a prompt")
    return prefix


def prompt_prefix(artifact: Any, prompt_name: str | None) -> str:
    """``choose_prefix`` for an artifact's own prompts (batch's ``--prompt-name``)."""
    prompts, default = model_prompts(artifact)
    return choose_prefix(prompts, default, prompt_name, prompt_pooled=pools_prompt(artifact))
