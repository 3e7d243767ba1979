"""Choosing the prompt put in front of every text (batch's --prompt-name, serve's prompt_name)."""

from __future__ import annotations

import json

import pytest

from onnxforge.errors import UserInputError
from onnxforge.runtime.prompts import NO_PROMPT, PromptProblem, choose_prefix

PROMPTS = {"query": "query: ", "passage": "passage: "}


def test_named_default_and_empty_prompts():
    assert choose_prefix(PROMPTS, "passage", "query") == "query: "
    assert choose_prefix(PROMPTS, "passage", None) == "passage: "  # the default, as encode() does
    assert choose_prefix(PROMPTS, "passage", NO_PROMPT) == ""  # an empty name: no prompt at all
    assert choose_prefix({}, None, None) == ""


def test_an_unknown_prompt_names_the_known_ones():
    with pytest.raises(PromptProblem, match=r"'nope' is not one of this model's prompts \(passage, query\)") as e:
        choose_prefix(PROMPTS, None, "nope")
    assert e.value.kind == "unknown_prompt" and isinstance(e.value, UserInputError)


def test_a_prompt_the_pooling_leaves_out_is_refused_not_embedded_differently():
    for name in ("query", None):  # named, or the default
        with pytest.raises(PromptProblem, match="include_prompt: false") as e:
            choose_prefix(PROMPTS, "query", name, prompt_pooled=False)
        assert e.value.kind == "prompt_not_pooled" and "empty prompt name" in e.value.hint
    assert choose_prefix(PROMPTS, "query", NO_PROMPT, prompt_pooled=False) == ""
    assert choose_prefix({"blank": ""}, "blank", None, prompt_pooled=False) == ""  # nothing to leave out


def test_batch_refuses_such_a_prompt_before_writing_anything(tiny_artifact, copy_artifact, tmp_path, cli):
    art = copy_artifact(tiny_artifact)
    manifest = json.loads((art / "onnxforge.json").read_text())
    manifest["pipeline"] = {"kind": "sentence-transformers", "prompts": {"query": "query: "},
                            "default_prompt_name": "query", "include_prompt": False}
    (art / "onnxforge.json").write_text(json.dumps(manifest))
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = cli("batch", str(art), str(src), "--out", str(out), "--max-length", "32", "--no-progress")
    assert code == 2 and "include_prompt: false" in stderr and "Traceback" not in stderr, stderr
    assert not out.exists()
    code, _, stderr = cli("batch", str(art), str(src), "--out", str(out), "--max-length", "32", "--no-progress",
                          "--prompt-name", "")
    assert code == 0 and len(out.read_text().splitlines()) == 1, stderr
