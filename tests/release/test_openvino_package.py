"""An OpenVINO IR variant travels like the others: hashed .xml/.bin, goldens re-run on its
engine, reproducible bytes, and verify catches a changed weight file."""

from __future__ import annotations

import shutil

import pytest

from onnxforge.artifact import Artifact


@pytest.fixture(scope="module")
def ov_folder(tiny_folder, tmp_path_factory):
    """The tiny export with an OpenVINO variant: bf16 where the CPU has it, else NNCF int8
    (kept with allow_lossy: a random tiny BERT need not keep int8's gates)."""
    from onnxforge.optimize import OptimizeOptions, optimize_artifact
    from onnxforge.runtime.openvino import cpu_has_bf16

    folder = tmp_path_factory.mktemp("ov_pkg") / "tiny"
    shutil.copytree(tiny_folder, folder)
    if cpu_has_bf16():
        assert optimize_artifact(folder, OptimizeOptions(precision="bf16"))
        return folder, "bf16", "openvino/openvino_model"
    optimize_artifact(folder, OptimizeOptions(precision="int8", engine="openvino", allow_lossy=True))
    return folder, "ov-int8", "openvino/openvino_model_qint8_quantized"


def test_ir_variant_is_packaged_reproducibly_and_verifies(ov_folder, tmp_path, cli):
    import json
    import tarfile

    folder, variant, stem = ov_folder
    a, b = tmp_path / "a" / "m.tar.gz", tmp_path / "b" / "m.tar.gz"
    for out in (a, b):
        out.parent.mkdir()
        code, _, err = cli("package", folder, "--variant", "base", "--variant", variant, "--out", out)
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("m/onnxforge.json"))
    assert {f"m/{stem}.xml", f"m/{stem}.bin"} <= names
    assert {f"{stem}.xml", f"{stem}.bin"} <= set(manifest["files"])
    model = manifest["package"]["models"][variant]
    assert model["files"] == [f"{stem}.xml", f"{stem}.bin"] and model["producer"].startswith("OpenVINO")
    assert manifest["package"]["goldens"]["checks"][variant]["provider"].startswith("OpenVINO CPU")
    code, out, err = cli("verify", a)
    assert code == 0, out + err


def test_verify_catches_a_changed_ir_weight_file(ov_folder, tmp_path, cli):
    folder, variant, stem = ov_folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    weights = copy / f"{stem}.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, out, err = cli("verify", copy)
    assert code == 1, out + err
    assert f"{stem}.bin" in out + err
    assert Artifact.open(copy).variants[variant]["engine"] == "openvino"
