"""The real MiniLM-L6: fp32 and fp16 (CPU provider) against PyTorch on 200 real sentences.

Speed is measured by benchmarks/validate_minilm.py (end to end, through the CLI);
this test checks the verdicts and what was fed.
"""

from __future__ import annotations

import pytest

from onnxforge.artifact import Artifact
from onnxforge.validate import ValidateOptions, validate_artifact
from tests.validate.conftest import add_fused_variants


@pytest.mark.slow
def test_minilm_fp32_and_fp16_pass_on_200_real_sentences(minilm_artifact, copy_artifact):
    art = copy_artifact(minilm_artifact)
    add_fused_variants(art)
    for variant, precision in (("base", "fp32"), ("fp16", "fp16")):
        # The full shape plan runs in benchmarks/validate_minilm.py; here the longest and
        # the widest random groups plus the 200 sentences keep the test folder quick.
        result = validate_artifact(art, ValidateOptions(variant=variant, shapes=((8, 33), (3, 512))))
        assert result, result.failures()
        assert result.precision == precision and result.provider == "CPUExecutionProvider"
        text = [g for g in result.groups if g["kind"] == "text"][0]
        assert text["samples"] == 200 and text["max_length"] > 64
        assert [g["name"] for g in result.groups] == ["random 8x33", "random 3x512", "text (200 texts)"]
        worst = result.outputs["last_hidden_state"]
        if precision == "fp32":
            assert worst["max_abs"] < 1e-4
        else:
            # fp16 really is fp16 (not silently fp32) and still within its tolerance.
            assert 1e-4 < worst["max_abs"] < 2e-2 and worst["min_cosine"] > 0.9999
        print(f"{variant}: {result.seconds}")
    stages = Artifact.open(art).manifest["stages"]
    assert stages["validate.base"]["passed"] and stages["validate.fp16"]["passed"]
