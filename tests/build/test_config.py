"""`build` options from TOML: where they are found, what they may hold, and CLI precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxforge.errors import UserInputError
from onnxforge.build.options import BuildOptions, load_config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_standalone_file_with_relative_paths(tmp_path):
    (tmp_path / "proj" / "models" / "bert").mkdir(parents=True)
    cfg = _write(tmp_path / "proj" / "onnxforge.toml", """
model = "models/bert"
out = "artifacts/bert"
precision = ["fp32", "int8"]
device = "cpu"
triton = true
[validate]
text = "data/texts.csv"
min_cosine = { pooler_output = 0.999 }
seed = 3
""")
    values, source = load_config(cfg)
    assert source == cfg.resolve()
    root = (tmp_path / "proj").resolve()
    assert values["model"] == str(root / "models" / "bert")  # an existing folder, relative to the file
    assert values["out"] == str(root / "artifacts" / "bert")
    assert values["validate"] == {"text": str(root / "data" / "texts.csv"), "min_cosine": {"pooler_output": 0.999}, "seed": 3}
    assert values["precision"] == ["fp32", "int8"] and values["triton"] is True


def test_pyproject_table_and_discovery(tmp_path, monkeypatch):
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.onnxforge]\nprecision = "fp32,int8"\nsmoke = false\n')
    monkeypatch.chdir(tmp_path)
    values, source = load_config()
    assert source == (tmp_path / "pyproject.toml").resolve()
    assert values == {"precision": ["fp32", "int8"], "smoke": False}
    # a standalone onnxforge.toml in the same folder wins over pyproject.toml
    _write(tmp_path / "onnxforge.toml", 'device = "auto"\n')
    values, source = load_config()
    assert source.name == "onnxforge.toml" and values == {"device": "auto"}


def test_no_config_anywhere(tmp_path, monkeypatch):
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')  # no [tool.onnxforge]: not a config
    monkeypatch.chdir(tmp_path)
    assert load_config() == ({}, None)
    with pytest.raises(UserInputError, match="no \\[tool.onnxforge\\] table"):
        load_config(tmp_path / "pyproject.toml")


@pytest.mark.parametrize("text, message", [
    ('precison = ["fp32"]\n', "unknown key 'precison'"),
    ('opset = "17"\n', "opset = '17' should be a number"),
    ("opset = true\n", "should be a number"),
    ("[validate]\nbatch = 3\n", "unknown key validate.'batch'"),
    ('precision = [1, 2]\n', "precision must be a list of names"),
    ("out = \n", "not valid TOML"),
])
def test_bad_config_is_bad_input(tmp_path, text, message):
    with pytest.raises(UserInputError) as err:
        load_config(_write(tmp_path / "onnxforge.toml", text))
    assert message in err.value.message


def test_cli_flags_win_over_the_file_which_wins_over_defaults():
    config = {"out": "/cfg/out", "precision": ["fp32", "int8"], "device": "cpu", "strict": True, "validate": {"seed": 2}}
    cli = {"out": None, "precision": ["fp16"], "device": None, "strict": False, "exporter": None, "force": None}
    options = BuildOptions.merged(cli, config)
    assert options.out == Path("/cfg/out")  # not given on the command line: from the file
    assert options.precisions == ("fp16",)  # given: the flag wins
    assert options.strict is False  # an explicit --no-strict beats strict = true
    assert options.exporter == "dynamo" and options.smoke is True  # neither: defaults
    assert options.validate == {"seed": 2}
    assert BuildOptions.merged({"precision": ["fp32,int8"]}, {}).precisions == ("fp32", "int8")
    from onnxforge.runtime.openvino import cpu_has_bf16

    assert BuildOptions().resolved_precisions("cpu") == (("fp32", "int8", "bf16") if cpu_has_bf16() else ("fp32", "int8"))
    assert BuildOptions().resolved_precisions("cuda") == ("fp32", "fp16", "int8")
    assert BuildOptions(out=Path("a/minilm")).archive == Path("a/minilm.tar.gz")


@pytest.mark.parametrize("kwargs, message", [
    ({"precisions": ("fp8",)}, "--precision fp8"),
    ({"device": "tpu"}, "--device tpu"),
    ({"exporter": "jit"}, "--exporter jit"),
    ({"package": Path("x.zip")}, "does not end in .tar.gz"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(UserInputError) as err:
        BuildOptions(**kwargs)
    assert message in err.value.message


def test_build_cli_reports_a_bad_config_with_exit_2(tmp_path, cli):
    cfg = _write(tmp_path / "onnxforge.toml", 'precison = ["fp32"]\n')
    code, out, err = cli("build", "--config", cfg, "--out", tmp_path / "out")
    assert code == 2 and "unknown key 'precison'" in err and "precision" in err
    assert not (tmp_path / "out").exists()
    code, _, err = cli("build", "--config", tmp_path / "missing.toml")
    assert code == 2 and "does not exist" in err


def test_cpu_defaults_leave_bf16_out_where_the_cpu_has_no_bf16(monkeypatch):
    import onnxforge.runtime.openvino as ov_engine
    from onnxforge.build.options import BuildOptions

    monkeypatch.setattr(ov_engine, "cpu_capabilities", lambda: ("FP32", "INT8"))
    assert BuildOptions().resolved_precisions("cpu") == ("fp32", "int8")
    assert BuildOptions(precisions=("bf16",)).resolved_precisions("cpu") == ("bf16",)  # asked: optimize refuses it
