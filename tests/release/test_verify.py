"""`verify`: passes on a package, fails (exit 1, naming the file) on any change to it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from onnxforge.artifact import sha256_file
from onnxforge.release.seal import seal

from .conftest import repack


def test_verify_passes_on_the_archive(tiny_package, tmp_path, cli):
    code, out, err = cli("verify", tiny_package, "--json", tmp_path / "v.json")
    assert code == 0, (out, err)
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] is True and report["kind"] == "archive"
    assert report["archive"]["sha256"] == sha256_file(tiny_package)
    kinds = {(c["kind"], c["target"]): c["status"] for c in report["checks"]}
    assert kinds[("manifest", "onnxforge.json")] == "passed"
    assert kinds[("signature", "model.onnx")] == "passed"
    assert kinds[("goldens", "model.onnx")] == "passed"
    assert kinds[("triton", "triton/tiny/config.pbtxt")] == "passed"
    assert kinds[("file", "tokenizer.json")] == "passed"
    assert report["counts"]["failed"] == 0


def _flip_byte(path, where: float = 0.5):
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _model(folder):
    _flip_byte(folder / "model.onnx", 0.6)  # inside the weights


def _tokenizer(folder):
    _flip_byte(folder / "tokenizer.json", 0.5)


def _manifest(folder):
    # A value, not a hash: only the manifest's own digest can notice.
    path = folder / "onnxforge.json"
    text = path.read_text()
    assert '"hidden_size": 64' in text
    path.write_text(text.replace('"hidden_size": 64', '"hidden_size": 65', 1))


def _manifest_whitespace(folder):
    path = folder / "onnxforge.json"
    path.write_bytes(path.read_bytes().replace(b"\n  ", b"\n   ", 1))


def _removed(folder):
    (folder / "vocab.txt").unlink()


def _added(folder):
    (folder / "notes.txt").write_text("an extra file\n")


CHANGES = {
    "model byte": (_model, "model.onnx"),
    "tokenizer byte": (_tokenizer, "tokenizer.json"),
    "manifest byte": (_manifest, "onnxforge.json"),
    "manifest whitespace": (_manifest_whitespace, "onnxforge.json"),
    "file removed": (_removed, "vocab.txt"),
    "file added": (_added, "notes.txt"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_verify_fails_naming_the_file(change, unpacked, tmp_path, cli):
    mutate, culprit = CHANGES[change]
    mutate(unpacked)
    archive = repack(unpacked, tmp_path / "changed.tar.gz")
    code, out, err = cli("verify", archive, "--json", tmp_path / "v.json")
    assert code == 1, (out, err)
    assert culprit in err
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] is False and culprit in report["failed"]


def test_verify_folder_form_fails_the_same_way(unpacked, cli):
    code, _, _ = cli("verify", unpacked)
    assert code == 0
    _flip_byte(unpacked / "goldens.npz", 0.9)
    code, _, err = cli("verify", unpacked)
    assert code == 1 and "goldens.npz" in err


def _reseal(folder, edit):
    """Change the manifest coherently (as a careful forger would): verify must still catch what is wrong."""
    m = json.loads((folder / "onnxforge.json").read_text())
    edit(m)
    for name in m["files"]:
        m["files"][name] = {"sha256": sha256_file(folder / name), "size": (folder / name).stat().st_size}
    (folder / "onnxforge.json").write_bytes(seal(m))


def test_goldens_catch_a_model_whose_hash_was_updated(unpacked, cli):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(unpacked / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims) if t.data_type == 1 else 0)
    weights = numpy_helper.to_array(init).copy()
    weights *= 1.5
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(unpacked / "model.onnx"))
    _reseal(unpacked, lambda m: None)
    code, out, err = cli("verify", unpacked)
    assert code == 1, out
    assert "model.onnx" in err and ("max abs" in err or "cosine" in err)


def test_goldens_catch_a_tokenizer_that_changed_behaviour(unpacked, cli):
    path = unpacked / "tokenizer.json"
    tok = json.loads(path.read_text())
    tok["normalizer"]["lowercase"] = not tok["normalizer"].get("lowercase", True)
    path.write_text(json.dumps(tok))
    _reseal(unpacked, lambda m: None)
    code, _, err = cli("verify", unpacked)
    assert code == 1
    assert "tokenizer.json" in err and "input ids" in err


def test_signature_is_checked_against_the_manifest(unpacked, cli):
    def edit(m):
        m["package"]["models"]["base"]["signature"]["inputs"][0]["dtype"] = "int32"

    _reseal(unpacked, edit)
    code, _, err = cli("verify", unpacked, "--no-goldens")
    assert code == 1 and "model.onnx" in err and "int32" in err


def test_artifact_folder_verifies_and_reports_extra_files(tmp_path, tiny_artifact, cli):
    folder = tmp_path / "art"
    shutil.copytree(tiny_artifact, folder)
    code, out, err = cli("verify", folder, "--json", tmp_path / "v.json")
    assert code == 0, (out, err)
    assert json.loads((tmp_path / "v.json").read_text())["kind"] == "artifact folder"
    (folder / "stray.onnx").write_bytes(b"x")
    code, _, err = cli("verify", folder)
    assert code == 1 and "stray.onnx" in err and "extra file" in err


def test_symlink_in_a_folder_is_refused(unpacked, cli):
    (unpacked / "vocab.txt").unlink()
    (unpacked / "vocab.txt").symlink_to(unpacked / "tokenizer.json")
    code, _, err = cli("verify", unpacked)
    assert code == 1 and "vocab.txt" in err


def test_any_flipped_manifest_byte_fails_cleanly(unpacked):
    """Every single-byte change to a package manifest is a failed check, never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from onnxforge.release.verify import VerifyOptions, verify_path

    path = unpacked / "onnxforge.json"
    original = path.read_bytes()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(original) - 1), st.integers(1, 255))
    def flip(i, x):
        data = bytearray(original)
        data[i] ^= x
        path.write_bytes(bytes(data))
        report = verify_path(unpacked, VerifyOptions(goldens=False))
        assert not report.passed
        assert "onnxforge.json" in report.failed_targets()

    try:
        flip()
    finally:
        path.write_bytes(original)


def test_every_renamed_manifest_key_fails_cleanly(unpacked):
    """A damaged key is the subtle case: the value is gone, the JSON still parses.

    Found by the byte-flip test above: a renamed "package" key made a package pass as an
    unsealed artifact folder; a renamed signature "name" crashed the Triton check.
    """
    import re

    from onnxforge.release.verify import VerifyOptions, verify_path

    path = unpacked / "onnxforge.json"
    original = path.read_bytes()
    keys = [m.start(1) for m in re.finditer(rb'"([A-Za-z_][A-Za-z_0-9.]*)": ', original)]
    assert len(keys) > 50
    try:
        for at in keys:
            data = bytearray(original)
            data[at] ^= 1  # "package" -> "qackage", "name" -> "oame"
            path.write_bytes(bytes(data))
            report = verify_path(unpacked, VerifyOptions(goldens=False))
            assert not report.passed, bytes(data[at - 20:at + 20])
            assert "onnxforge.json" in report.failed_targets(), bytes(data[at - 20:at + 20])
    finally:
        path.write_bytes(original)
