"""Hugging Face model folders (config.json + weights + tokenizer files)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from ..spec import ModelSpec
from .ref import LoadedModel, SourceRef
from .wrap import derive_outputs, forward_inputs, make_wrapper

# Architectures whose graphs onnxruntime.transformers' BERT optimizer understands.
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra")

_TASK_SUFFIXES = {
    "ForSequenceClassification": "sequence-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
}
HF_TASKS = ("feature-extraction", "sequence-classification", "token-classification", "question-answering")


def infer_task(config) -> str:
    for arch in getattr(config, "architectures", None) or []:
        for suffix, task in _TASK_SUFFIXES.items():
            if arch.endswith(suffix):
                return task
    return "feature-extraction"


def _auto_class(task: str):
    import transformers

    return {
        "feature-extraction": transformers.AutoModel,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "question-answering": transformers.AutoModelForQuestionAnswering,
    }[task]


def spec_numbers_from_config(config) -> dict:
    """Heads, hidden size, layers, vocabulary and positions from a transformers config."""
    max_positions = int(getattr(config, "max_position_embeddings", 512))
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        # RoBERTa position ids start after the padding index.
        max_positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return dict(
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
        vocab_size=int(config.vocab_size),
        max_positions=max_positions,
        type_vocab_size=int(getattr(config, "type_vocab_size", 0) or 0),
        pad_token_id=int(getattr(config, "pad_token_id", 0) or 0),
        intermediate_size=getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None),
        model_type=str(config.model_type),
    )


def load_hf_folder(ref: SourceRef, attn_implementation: str | None) -> LoadedModel:
    import torch
    import transformers

    # Weight-loading progress bars and notices would bury onnxforge's own output.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    folder = Path(ref.location)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserInputError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder",
            hint="save the model with model.save_pretrained(folder), or pass package.module:function",
        )
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, OSError, KeyError) as e:
        raise UserInputError(f"cannot read {config_path}: {e}") from None
    if config.model_type not in BERT_FAMILY:
        raise UserInputError(
            f"{folder} holds a '{config.model_type}' model; onnxforge exports BERT-family models",
            hint=f"supported model_type values: {', '.join(BERT_FAMILY)}",
        )
    task = ref.task or infer_task(config)
    if task not in HF_TASKS:
        raise UserInputError(f"--task {task} is not a Hugging Face task", hint=f"choose one of {', '.join(HF_TASKS)}")
    kwargs = {"local_files_only": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = _auto_class(task).from_pretrained(folder, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserInputError(f"cannot load the weights in {folder}: {e}") from None
    model.eval()
    torch.set_grad_enabled(False)
    input_names = forward_inputs(model)
    numbers = spec_numbers_from_config(config)
    call_kwargs = {"return_dict": True}
    outputs = derive_outputs(model, input_names, numbers["vocab_size"], call_kwargs)
    labels = ()
    if task in ("sequence-classification", "token-classification") and getattr(config, "id2label", None):
        labels = tuple(str(config.id2label[i]) for i in sorted(config.id2label))
    spec = ModelSpec(input_names=input_names, outputs=outputs, task=task, labels=labels, **numbers)
    wrapper = make_wrapper(model, input_names, spec.output_names, call_kwargs)
    from ..tokenizer import collect_tokenizer_files

    tokenizer_files = collect_tokenizer_files(folder, required=False)
    return LoadedModel(
        module=wrapper,
        spec=spec,
        source=ref,
        tokenizer_files=tokenizer_files,
        config_path=config_path,
        attn_implementation=attn_implementation,
    )
