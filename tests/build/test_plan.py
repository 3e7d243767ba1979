"""The build's plan and option checks, without running a stage."""

from __future__ import annotations

import pytest

from onnxforge.build.options import BuildOptions
from onnxforge.build.runner import plan
from onnxforge.errors import UserInputError


def test_plan_orders_stages_per_variant():
    options = BuildOptions()
    assert plan(options, ("fp32", "int8")) == ["export", "optimize.optimized", "optimize.int8", "validate.optimized",
                                               "validate.int8", "smoke.optimized", "smoke.int8", "package", "verify"]
    assert plan(BuildOptions(smoke=False), ("fp16",)) == ["export", "optimize.fp16", "validate.fp16", "package", "verify"]


def test_validate_overrides_become_typed_validate_options(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a sentence\n")
    opts = BuildOptions(validate={"text": str(text), "atol": 1e-3, "min_cosine": {"pooler_output": 0.99}, "seed": 3})
    v = opts.validate_options("int8", "cpu")
    assert v.variant == "int8" and v.text_file == text and v.seed == 3
    assert v.atol == {"*": 1e-3} and v.min_cosine == {"pooler_output": 0.99}
    with pytest.raises(UserInputError, match="unknown validate options: batch"):
        BuildOptions(validate={"batch": 3})
