"""`build`'s options: the frozen ``BuildOptions``, and the TOML file that can set them.

TOML: a standalone ``onnxforge.toml`` or ``[tool.onnxforge]`` in pyproject.toml. Keys
are the long CLI option names with ``_`` for ``-``; a flag given on the command line
wins over the file. Relative paths are relative to the file's folder, so a config
committed beside the code works from any working directory. Unknown keys and wrong
types are errors: a typo must not silently build something else.

Example::

    [tool.onnxforge]
    model = "models/my-bert"        # folder, package.module:function, or omit for the built-in
    out = "artifacts/my-bert"
    precision = ["fp32", "int8"]
    device = "cpu"

    [tool.onnxforge.validate]
    text = "data/texts.csv"
    column = "text"
    min_cosine = { pooler_output = 0.999 }
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UserInputError
# What optimize can build: a subset of vocab.PRECISIONS (see optimize.options).
from ..optimize.options import PRECISIONS as BUILD_PRECISIONS
from ..sources.args import SOURCE_FIELDS, SourceArgs, field_schema
from ..vocab import DEVICES, EXPORTERS

# bf16 joins the CPU defaults only where the CPU has bf16 compute (resolved_precisions).
DEFAULT_PRECISIONS = {"cpu": ("fp32", "int8", "bf16"), "cuda": ("fp32", "fp16", "int8")}



def _cpu_has_bf16() -> bool:
    """Where OpenVINO can run bf16 (AMX / AVX512-BF16); False without openvino."""
    from ..errors import OnnxforgeError

    try:
        from ..runtime.openvino import cpu_has_bf16

        return cpu_has_bf16()
    except OnnxforgeError:
        return False


STANDALONE_NAME = "onnxforge.toml"
PYPROJECT_NAME = "pyproject.toml"

# TOML key -> (expected type(s), is a path); the model-source keys come from SourceArgs.
TOP_LEVEL: dict[str, tuple[tuple[type, ...], bool]] = {
    **{name: ((kind,), is_path) for name, (kind, is_path) in field_schema().items()},
    "out": ((str,), True),
    "exporter": ((str,), False),
    "opset": ((int,), False),
    "precision": ((list, str), False),
    "device": ((str,), False),
    "strict": ((bool,), False),
    "smoke": ((bool,), False),
    "package": ((str,), True),
    "triton": ((bool,), False),
    "validate": ((dict,), False),
}
VALIDATE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "text": ((str,), True),
    "column": ((str,), False),
    "atol": ((dict, int, float), False),
    "rtol": ((dict, int, float), False),
    "min_cosine": ((dict, int, float), False),
    "min_argmax": ((dict, int, float), False),
    "max_texts": ((int,), False),
    "sample_size": ((int,), False),
    "seed": ((int,), False),
}
# Validate overrides that are per output name (a table) or for all outputs (a number).
_PER_OUTPUT = ("atol", "rtol", "min_cosine", "min_argmax")


@dataclass(frozen=True)
class BuildOptions:
    """Everything `onnxforge build` needs; CLI flags and the TOML config both land here."""

    source: SourceArgs = SourceArgs()
    out: Path = Path("artifacts/minilm")
    exporter: str = EXPORTERS[0]  # dynamo
    opset: int | None = None
    # Empty: fused fp32 + int8 on CPU, plus fp16 on CUDA.
    precisions: tuple[str, ...] = ()
    device: str = "cpu"
    strict: bool = False
    smoke: bool = True
    # The archive; None: <out>.tar.gz beside the folder.
    package: Path | None = None
    triton: bool = False
    # ValidateOptions overrides (the VALIDATE_KEYS above).
    validate: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    config_file: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.package is not None:
            object.__setattr__(self, "package", Path(self.package))
        precisions = tuple(dict.fromkeys(p.strip().lower() for p in self.precisions if p.strip()))
        bad = [p for p in precisions if p not in BUILD_PRECISIONS]
        if bad:
            raise UserInputError(f"--precision {', '.join(bad)} is not known", hint=f"choose from {', '.join(BUILD_PRECISIONS)}")
        object.__setattr__(self, "precisions", precisions)
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        if self.exporter not in EXPORTERS:
            raise UserInputError(f"--exporter {self.exporter} is not known", hint=f"choose one of {', '.join(EXPORTERS)}")
        if self.package is not None and not self.package.name.endswith((".tar.gz", ".tgz")):
            raise UserInputError(f"--package {self.package} does not end in .tar.gz", hint="e.g. --package artifacts/minilm.tar.gz")
        unknown = sorted(set(self.validate) - set(VALIDATE_KEYS))
        if unknown:
            raise UserInputError(f"unknown validate options: {', '.join(unknown)}", hint=f"known: {', '.join(VALIDATE_KEYS)}")

    @property
    def archive(self) -> Path:
        return self.package or self.out.parent / f"{self.out.name}.tar.gz"

    def resolved_precisions(self, device: str) -> tuple[str, ...]:
        if self.precisions:
            return self.precisions
        if device == "cpu" and not _cpu_has_bf16():
            return tuple(p for p in DEFAULT_PRECISIONS[device] if p != "bf16")
        return DEFAULT_PRECISIONS[device]

    def validate_options(self, variant: str, device: str):
        """The ValidateOptions for one variant: the ``validate`` overrides under their option names."""
        from ..validate import ValidateOptions

        values: dict[str, Any] = {"variant": variant, "device": device}
        for key, value in self.validate.items():
            if key == "text":
                values["text_file"] = Path(value)
            elif key in _PER_OUTPUT:
                # A bare number applies to every output.
                values[key] = value if isinstance(value, dict) else {"*": float(value)}
            else:
                values[key] = value
        return ValidateOptions(**values)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as the manifest's ``build.options`` has always recorded them."""
        source = self.source.to_dict()
        d: dict[str, Any] = {"model": source.pop("model"), "out": str(self.out)}
        d.update(source)
        for f in fields(self):
            if f.name not in ("source", "out"):
                d[f.name] = getattr(self, f.name)
        for k in ("package", "config_file"):
            d[k] = None if d[k] is None else str(d[k])
        d["precisions"] = list(self.precisions)
        d["validate"] = dict(self.validate)
        return d

    @classmethod
    def merged(cls, cli: dict[str, Any], config: dict[str, Any], config_file: Path | None = None) -> "BuildOptions":
        """CLI values that were given (not None) win over the config file, which wins over defaults.

        Both are flat (``model``, ``num_heads``, ``precision``...), as the TOML keys are.
        """
        renamed = {"precision": "precisions"}
        values: dict[str, Any] = {}
        for key, value in config.items():
            values[renamed.get(key, key)] = value
        for key, value in cli.items():
            if value is not None and not (isinstance(value, (list, tuple)) and not value):
                values[renamed.get(key, key)] = value
        if "precisions" in values:
            flat = []
            for item in values["precisions"]:
                flat += [p for p in str(item).split(",") if p.strip()]
            values["precisions"] = tuple(flat)
        source = SourceArgs(**{k: values.pop(k) for k in SOURCE_FIELDS if k in values})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:  # pragma: no cover - load_config rejects unknown keys first
            raise UserInputError(f"unknown build options: {', '.join(sorted(unknown))}")
        return cls(source=source, config_file=config_file, **values)


# -- the TOML file ----------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true or false", list: "a list",
               dict: "a table"}


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path} is not valid TOML: {e}", hint="fix the line it names") from None
    except OSError as e:
        raise UserInputError(f"cannot read {path}: {e.strerror}") from None


def _table(doc: dict[str, Any], path: Path, *, required: bool) -> dict[str, Any] | None:
    tool = doc.get("tool", {})
    if isinstance(tool, dict) and "onnxforge" in tool:
        table = tool["onnxforge"]
    elif path.name == PYPROJECT_NAME:
        if required:
            raise UserInputError(f"{path} has no [tool.onnxforge] table", hint="add one, or pass a standalone onnxforge.toml")
        return None
    else:
        table = doc
    if not isinstance(table, dict):
        raise UserInputError(f"{path}: [tool.onnxforge] must be a table")
    return table


def _check(table: dict[str, Any], schema: dict, where: str, path: Path) -> dict[str, Any]:
    clean = {}
    for key, value in table.items():
        if key not in schema:
            raise UserInputError(f"{path}: unknown key {where}{key!r}", hint=f"known keys: {', '.join(sorted(schema))}")
        types, is_path = schema[key]
        # bool is an int in Python; a number key must not accept true/false.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
            raise UserInputError(f"{path}: {where}{key} = {value!r} should be {names}")
        if is_path:
            value = str((path.parent / value).resolve()) if not Path(value).is_absolute() else value
        clean[key] = value
    return clean


def load_config(path: str | Path | None = None, cwd: str | Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The build options a TOML file sets, and the file they came from (None: no file).

    Without ``path``: ``./onnxforge.toml``, else ``./pyproject.toml`` when it has a
    ``[tool.onnxforge]`` table, else nothing. The working directory only, never a parent.
    """
    cwd = Path(cwd or Path.cwd())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"--config {path} does not exist", hint="pass an onnxforge.toml or a pyproject.toml")
        table = _table(_read_toml(path), path, required=True)
    else:
        path = cwd / STANDALONE_NAME
        if path.is_file():
            table = _table(_read_toml(path), path, required=True)
        else:
            path = cwd / PYPROJECT_NAME
            table = _table(_read_toml(path), path, required=False) if path.is_file() else None
            if table is None:
                return {}, None
    config = _check(table, TOP_LEVEL, "", path)
    if "validate" in config:
        config["validate"] = _check(config["validate"], VALIDATE_KEYS, "validate.", path)
    model = config.get("model")
    if model and not Path(model).is_absolute() and (path.parent / model).exists():
        config["model"] = str((path.parent / model).resolve())
    if isinstance(config.get("precision"), str):
        config["precision"] = [p.strip() for p in config["precision"].split(",") if p.strip()]
    if any(not isinstance(p, str) for p in config.get("precision", [])):
        raise UserInputError(f"{path}: precision must be a list of names such as [\"fp32\", \"int8\"]")
    return config, path.resolve()
