"""sentence-transformers folders (``modules.json``): the model's own embedding pipeline.

A folder saved by sentence-transformers lists its modules in ``modules.json``:
Transformer (the HF model, usually at the folder root), Pooling (``1_Pooling/``),
optionally Dense (``2_Dense/``) and Normalize. onnxforge exports the whole pipeline:
the graph's ``sentence_embedding`` output is pooling, Dense and Normalize inside the
graph, beside the token-level ``last_hidden_state``. ``sentence_bert_config.json``
gives the truncation (``max_seq_length``) and lower-casing the runtime must apply;
``config_sentence_transformers.json`` gives the prompts. All of it is recorded in
the manifest's ``pipeline`` entry, and the files are copied into the artifact so
sentence-transformers' own ONNX/OpenVINO loaders see the same model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .st_modules import POOLING_MODES

MODULES_FILE = "modules.json"
ST_CONFIG_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
# What the manifest says for a folder without modules.json.
DEFAULT_PIPELINE = {"kind": "transformers", "pooling": ["mean"], "normalize": True,
                    "note": "no modules.json in the source: onnxforge's default mean pooling, L2-normalized"}
_LEGACY_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                 "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


@dataclass(frozen=True)
class DenseLayer:
    path: str
    config: dict[str, Any]


@dataclass(frozen=True)
class SentencePipeline:
    """What ``modules.json`` and its configs say, in the order the modules run."""

    transformer_path: str
    pooling: tuple[str, ...]
    include_prompt: bool = True
    dense: tuple[DenseLayer, ...] = ()
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    module_paths: tuple[str, ...] = ()

    def to_manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d["dense"] = [{"path": layer.path, "in_features": layer.config.get("in_features"),
                       "out_features": layer.config.get("out_features"),
                       "activation_function": layer.config.get("activation_function")} for layer in self.dense]
        d.pop("transformer_path")
        d["pooling"] = list(self.pooling)
        d["module_paths"] = list(self.module_paths)
        return {"kind": "sentence-transformers", **d}


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{path} is missing; {what} needs it") from None
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read {path}: {e}") from None


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """Modes from a 1_Pooling/config.json: ``pooling_mode`` (6.x) or the legacy booleans."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in _LEGACY_MODES.items() if config.get(key))
        modes = modes or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    bad = [m for m in modes if m not in POOLING_MODES]
    if bad:
        raise UserInputError(f"pooling mode {', '.join(bad)} is not one sentence-transformers defines",
                             hint=f"known modes: {', '.join(POOLING_MODES)}")
    return modes


def read_pipeline(folder: Path) -> SentencePipeline | None:
    """The pipeline a sentence-transformers folder declares, or None without modules.json."""
    folder = Path(folder)
    if not (folder / MODULES_FILE).is_file():
        return None
    modules = _read_json(folder / MODULES_FILE, "the sentence-transformers pipeline")
    if not isinstance(modules, list):
        raise UserInputError(f"{folder / MODULES_FILE} is not a list of modules")
    transformer_path = None
    pooling: tuple[str, ...] | None = None
    include_prompt, normalize = True, False
    dense: list[DenseLayer] = []
    paths = []
    for entry in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
        path = str(entry.get("path", ""))
        paths.append(path)
        if kind == "Transformer" and transformer_path is None:
            transformer_path = path
        elif kind == "Pooling":
            config = _read_json(folder / path / "config.json", "the Pooling module")
            pooling = pooling_modes(config)
            include_prompt = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            config = _read_json(folder / path / "config.json", "the Dense module")
            for key in ("module_input_name", "module_output_name"):
                if config.get(key, "sentence_embedding") not in ("sentence_embedding", None):
                    raise UserInputError(f"{folder / path} reads or writes '{config[key]}'; onnxforge exports "
                                         "Dense modules on the sentence embedding only")
            dense.append(DenseLayer(path, config))
        elif kind == "Normalize":
            normalize = True
        else:
            raise UserInputError(
                f"{folder / MODULES_FILE} lists a {entry.get('type')} module, which onnxforge cannot export",
                hint="supported modules: Transformer, Pooling, Dense, Normalize",
            )
    if transformer_path is None:
        raise UserInputError(f"{folder / MODULES_FILE} lists no Transformer module")
    if pooling is None:
        raise UserInputError(f"{folder / MODULES_FILE} lists no Pooling module, so there is no sentence embedding",
                             hint="export the folder's Transformer subfolder as a plain Hugging Face model")
    st_config_path = folder / transformer_path / "sentence_bert_config.json"
    st_config = _read_json(st_config_path, "the Transformer module") if st_config_path.is_file() else {}
    extra_path = folder / "config_sentence_transformers.json"
    extra = _read_json(extra_path, "sentence-transformers") if extra_path.is_file() else {}
    max_seq = st_config.get("max_seq_length")
    return SentencePipeline(
        transformer_path=transformer_path,
        pooling=pooling,
        include_prompt=include_prompt,
        dense=tuple(dense),
        normalize=normalize,
        max_seq_length=int(max_seq) if max_seq is not None else None,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        prompts={str(k): str(v) for k, v in (extra.get("prompts") or {}).items()},
        default_prompt_name=extra.get("default_prompt_name"),
        similarity_fn_name=extra.get("similarity_fn_name"),
        module_paths=tuple(p for p in paths if p),
    )


def resolve_max_seq_length(pipeline: SentencePipeline, model_folder: Path, config: Any,
                           max_positions: int) -> SentencePipeline:
    """The truncation sentence-transformers applies, as it decides it (6.x ``Transformer``).

    ``max_seq_length`` in sentence_bert_config.json wins (older folders write it there);
    else the tokenizer's ``model_max_length`` capped at ``max_position_embeddings`` (6.x
    saves it there). Never past the model's position table.
    """
    from dataclasses import replace

    from ..tokenizer import tokenizer_model_max_length

    length = pipeline.max_seq_length
    if length is None:
        length = tokenizer_model_max_length(Path(model_folder)) or max_positions
        table = getattr(config, "max_position_embeddings", -1)
        if isinstance(table, int) and table > 0:
            length = min(length, table)
    return replace(pipeline, max_seq_length=min(int(length), max_positions))


def _dense_state(folder: Path) -> dict[str, Any]:
    import torch

    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise UserInputError(f"{folder} holds no Dense weights (model.safetensors or pytorch_model.bin)")


def sentence_module(folder: Path, pipeline: SentencePipeline, encoder, input_names: tuple[str, ...]):
    """The traceable pipeline: encoder -> pooling -> Dense... -> Normalize."""
    from .st_modules import build_dense, build_sentence_module

    dense = []
    for layer in pipeline.dense:
        try:
            dense.append(build_dense(layer.config, _dense_state(Path(folder) / layer.path)))
        except (ValueError, KeyError) as e:
            raise UserInputError(f"cannot build the Dense module in {Path(folder) / layer.path}: {e}") from None
    return build_sentence_module(encoder, input_names, pipeline.pooling, dense, pipeline.normalize)


def pipeline_files(folder: Path, pipeline: SentencePipeline) -> dict[str, Path]:
    """The sentence-transformers files to copy into the artifact, by relative name."""
    folder = Path(folder)
    files = {name: folder / name for name in ST_CONFIG_FILES if (folder / name).is_file()}
    st_config = folder / pipeline.transformer_path / "sentence_bert_config.json"
    if st_config.is_file():
        files["sentence_bert_config.json"] = st_config
    for path in pipeline.module_paths:
        if path == pipeline.transformer_path:
            continue
        for f in sorted((folder / path).rglob("*")):
            if f.is_file():
                files[f.relative_to(folder).as_posix()] = f
    return files


def root_transformer_modules(modules_json: Path) -> None:
    """Point the Transformer module at the artifact's root, where its files are copied.

    Older folders keep the HF model in ``0_Transformer/``; the artifact holds config,
    tokenizer and model.onnx at its root, so its modules.json must say ``path: ""``.
    """
    modules = json.loads(Path(modules_json).read_text(encoding="utf-8"))
    changed = False
    for entry in modules:
        if str(entry.get("type", "")).rsplit(".", 1)[-1] == "Transformer" and entry.get("path"):
            entry["path"] = ""
            changed = True
    if changed:
        Path(modules_json).write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
