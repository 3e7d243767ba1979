"""What each transformers encoder architecture needs to export faithfully.

onnxforge exports any encoder ``transformers`` loads without remote code. The
architectures below are tested (tiny random models, parity at batch 3 x 37 with
right padding, both exporters); others are tried and refused only when the export
or its parity check fails, with the reason.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserInputError

# model_type values tested end to end (tests/fixtures/architectures.py builds them).
TESTED_ARCHITECTURES = (
    "bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet", "deberta-v2", "modernbert",
)

# Position ids start after the padding index: RoBERTa-style models count from
# pad_token_id + 1; MPNet hard-codes padding_idx = 1.
_ROBERTA_STYLE = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "data2vec-text")
_FIXED_POSITION_OFFSET = {"mpnet": 2}


def position_offset(config: Any) -> int:
    """How many rows of the position table come before the first real position."""
    model_type = str(getattr(config, "model_type", ""))
    if model_type in _ROBERTA_STYLE:
        return int(getattr(config, "pad_token_id", 1) or 0) + 1
    return _FIXED_POSITION_OFFSET.get(model_type, 0)


def supported_attention(model_class: Any, wanted: str | None) -> str | None:
    """``wanted`` if the architecture implements it, else eager (which every model has).

    The exporters fuse SDPA (dynamo, via onnxscript) and eager (TorchScript, via ORT's
    BERT optimizer) attention; MPNet and DeBERTa-v2 implement only eager attention.
    """
    if wanted in (None, "eager"):
        return wanted
    supports = {"sdpa": "_supports_sdpa", "flash_attention_2": "_supports_flash_attn"}.get(wanted)
    if supports and not getattr(model_class, supports, False):
        return "eager"
    return wanted


def refuse_non_encoder(config: Any, folder: Any) -> None:
    """Encoder-decoder and decoder-only checkpoints need inputs this exporter does not feed."""
    model_type = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False):
        raise UserInputError(
            f"{folder} holds a '{model_type}' encoder-decoder model; onnxforge exports encoders "
            "(inputs: input_ids, attention_mask, token_type_ids)",
            hint="export the encoder alone: save model.get_encoder() from a module:function factory",
        )
    if getattr(config, "is_decoder", False):
        raise UserInputError(
            f"{folder} holds a '{model_type}' model configured as a decoder (is_decoder=true); "
            "onnxforge exports bidirectional encoders",
        )
