"""Hugging Face model folders (config.json + weights + tokenizer files)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from ..spec import ModelSpec
from .architectures import position_offset, refuse_non_encoder, supported_attention
from .ref import LoadedModel, SourceRef
from .sentence_transformers import (
    DEFAULT_PIPELINE, pipeline_files, read_pipeline, resolve_max_seq_length, sentence_module,
)
from .wrap import derive_outputs, forward_inputs, make_wrapper

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


def _model_class(task: str, config):
    """The class transformers' Auto class would build for ``config`` (None if it has none)."""
    try:
        return _auto_class(task)._model_mapping[type(config)]
    except (KeyError, AttributeError):
        return None


def spec_numbers_from_config(config) -> dict:
    """Heads, hidden size, layers, vocabulary and positions from a transformers config."""
    max_positions = int(getattr(config, "max_position_embeddings", 512)) - position_offset(config)
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
    pipeline = read_pipeline(folder) if ref.task in (None, "feature-extraction") else None
    model_folder = folder / pipeline.transformer_path if pipeline else folder
    config_path = model_folder / "config.json"
    if not config_path.is_file():
        raise UserInputError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder",
            hint="save the model with model.save_pretrained(folder), or pass package.module:function",
        )
    try:
        config = transformers.AutoConfig.from_pretrained(model_folder, local_files_only=True)
    except (ValueError, OSError, KeyError) as e:
        raise UserInputError(
            f"cannot read {config_path}: {str(e).splitlines()[0][:300]}",
            hint="onnxforge loads architectures transformers knows without remote code (trust_remote_code)",
        ) from None
    refuse_non_encoder(config, folder)
    task = "feature-extraction" if pipeline else ref.task or infer_task(config)
    if task not in HF_TASKS:
        raise UserInputError(f"--task {task} is not a Hugging Face task", hint=f"choose one of {', '.join(HF_TASKS)}")
    kwargs = {"local_files_only": True}
    model_class = _model_class(task, config)
    if model_class is None:
        raise UserInputError(f"transformers has no {task} model for '{config.model_type}' ({folder})",
                             hint=f"choose another --task among {', '.join(HF_TASKS)}")
    attn_implementation = supported_attention(model_class, attn_implementation)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = _auto_class(task).from_pretrained(model_folder, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserInputError(f"cannot load the weights in {folder}: {e}") from None
    model.eval()
    torch.set_grad_enabled(False)
    input_names = forward_inputs(model)
    numbers = spec_numbers_from_config(config)
    call_kwargs = {"return_dict": True}
    described = DEFAULT_PIPELINE if task == "feature-extraction" else None
    extra_files = {}
    if pipeline:
        # The folder's own sentence-transformers pipeline, inside the graph.
        pipeline = resolve_max_seq_length(pipeline, model_folder, config, numbers["max_positions"])
        model = sentence_module(folder, pipeline, model, input_names)
        call_kwargs = {}
        described, extra_files = pipeline.to_manifest(), pipeline_files(folder, pipeline)
    outputs = derive_outputs(model, input_names, numbers["vocab_size"], call_kwargs)
    labels = ()
    if task in ("sequence-classification", "token-classification") and getattr(config, "id2label", None):
        labels = tuple(str(config.id2label[i]) for i in sorted(config.id2label))
    spec = ModelSpec(input_names=input_names, outputs=outputs, task=task, labels=labels, **numbers)
    wrapper = make_wrapper(model, input_names, spec.output_names, call_kwargs)
    from ..tokenizer import collect_tokenizer_files

    tokenizer_files = collect_tokenizer_files(model_folder, required=False)
    return LoadedModel(
        module=wrapper,
        spec=spec,
        source=ref,
        tokenizer_files=tokenizer_files,
        config_path=config_path,
        attn_implementation=attn_implementation,
        pipeline=described,
        extra_files=extra_files,
    )
