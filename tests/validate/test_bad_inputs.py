"""Bad input exits 2 with a message that says what was asked, what was found, how to fix."""

from __future__ import annotations

import pytest

from tests.validate.conftest import REPO, read_json, set_source


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_args, needles",
    [
        (lambda d: ["--variant", "fp99"], ["variant 'fp99' is not in", "available variants: base"]),
        (lambda d: ["--text", _write(d / "empty.txt", b"")], ["holds no text"]),
        (lambda d: ["--text", _write(d / "blank.txt", b"\n  \n\t\n")], ["holds no text"]),
        (lambda d: ["--text", _write(d / "latin1.txt", "caf\u00e9 cr\u00e8me\n".encode("latin-1"))],
         ["is not UTF-8", "byte 0xe9 at offset 3", "iconv"]),
        (lambda d: ["--text", _write(d / "t.csv", b"id,body\n1,hello\n"), "--column", "text"],
         ["has no column 'text'", "its columns are: id, body"]),
        (lambda d: ["--text", _write(d / "t.csv", b"id,body\n1,hello\n")], ["pass --column NAME", "id, body"]),
        (lambda d: ["--text", _write(d / "e.csv", b"")], ["no header row"]),
        (lambda d: ["--text", _write(d / "v.csv", b"id,body\n1,\n2,  \n"), "--column", "body"],
         ["no non-empty value in column 'body'"]),
        (lambda d: ["--column", "body"], ["--column body needs --text"]),
        (lambda d: ["--text", d / "missing.txt"], ["does not exist"]),
        (lambda d: ["--atol", "logits=1e-3"], ["override for logits: no such output", "last_hidden_state, pooler_output"]),
        (lambda d: ["--atol", "last_hidden_state=tiny"], ["not NAME=NUMBER"]),
        (lambda d: ["--rtol", "-1"], ["--rtol *=-1.0 is out of range"]),
        (lambda d: ["--min-cosine", "last_hidden_state=2"], ["between 0 and 1"]),
        (lambda d: ["--shape", "3by3"], ["not BATCHxSEQUENCE"]),
        (lambda d: ["--shape", "1x4096"], ["longer than the model's 128 positions"]),
        (lambda d: ["--device", "tpu"], ["--device tpu is not known"]),
    ],
)
def test_bad_inputs_exit_2(deep_tiny_artifact, copy_artifact, cli, tmp_path, make_args, needles):
    art = copy_artifact(deep_tiny_artifact)
    manifest = (art / "onnxforge.json").read_bytes()
    json_path = tmp_path / "r.json"
    code, out, err = cli("validate", art, *make_args(tmp_path), "--json", json_path)
    assert code == 2, (out, err)
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in out + err
    # Nothing half-written: no report, the manifest untouched.
    assert not json_path.exists()
    assert (art / "onnxforge.json").read_bytes() == manifest


@pytest.mark.parametrize(
    "source, needles",
    [
        ({"kind": "factory", "location": "tests.fixtures.custom_models:no_such_factory", "task": "custom",
          "app_dir": str(REPO)}, ["cannot be rebuilt from the artifact's source", "no callable 'no_such_factory'"]),
        ({"kind": "factory", "location": "tests.fixtures.custom_models:build_raises", "task": "custom",
          "app_dir": str(REPO)}, ["cannot be rebuilt", "factory exploded on purpose"]),
        ({"kind": "hf", "location": "/nonexistent/model/folder"}, ["cannot be rebuilt", "has no config.json"]),
    ],
)
def test_unbuildable_source_exits_2(deep_tiny_artifact, copy_artifact, cli, source, needles):
    art = copy_artifact(deep_tiny_artifact)
    set_source(art, source)
    code, out, err = cli("validate", art, "--shape", "1x7")
    assert code == 2, (out, err)
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in out + err
    assert "validate.base" not in read_json(art / "onnxforge.json")["stages"]


def test_source_that_now_builds_another_model_exits_2(deep_tiny_artifact, copy_artifact, cli):
    art = copy_artifact(deep_tiny_artifact)
    set_source(art, {"kind": "factory", "location": "tests.fixtures.custom_models:build_dict_bert", "task": "custom",
                     "app_dir": str(REPO)})
    code, _, err = cli("validate", art, "--shape", "1x7")
    assert code == 2 and "now builds a different model" in err


def test_text_needs_the_artifact_tokenizer(baked_artifact, cli, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("one text\n")
    code, _, err = cli("validate", baked_artifact, "--text", texts)
    assert code == 2 and "no tokenizer.json" in err


def test_not_an_artifact(cli, tmp_path):
    code, _, err = cli("validate", tmp_path)
    assert code == 2 and "not an onnxforge artifact" in err
