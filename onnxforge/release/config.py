"""`build` options from TOML: a standalone ``onnxforge.toml`` or ``[tool.onnxforge]`` in pyproject.toml.

Keys are the long CLI option names with ``_`` for ``-``; a flag given on the command
line wins over the file. Relative paths are relative to the file's folder, so a
config committed beside the code works from any working directory. Unknown keys and
wrong types are errors: a typo must not silently build something else.

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

from pathlib import Path
from typing import Any

from ..errors import UserInputError

STANDALONE_NAME = "onnxforge.toml"
PYPROJECT_NAME = "pyproject.toml"

# key -> (expected type(s), is a path)
TOP_LEVEL: dict[str, tuple[tuple[type, ...], bool]] = {
    "model": ((str,), False),
    "out": ((str,), True),
    "task": ((str,), False),
    "weights": ((str,), True),
    "tokenizer": ((str,), True),
    "app_dir": ((str,), True),
    "num_heads": ((int,), False),
    "hidden_size": ((int,), False),
    "num_layers": ((int,), False),
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
