"""`package`: reproducible bytes, a complete sealed manifest, and refusal to ship a broken folder."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from onnxforge.artifact import Artifact, sha256_file
from onnxforge.release.seal import check_seal


def test_package_twice_gives_identical_bytes(tmp_path, tiny_folder, tiny_package, cli):
    again = tmp_path / "again" / "tiny.tar.gz"
    code, out, err = cli("package", tiny_folder, "--out", again, "--triton")
    assert code == 0, err
    assert again.read_bytes() == tiny_package.read_bytes()
    assert sha256_file(again) in out


def test_archive_layout_and_manifest(unpacked, tiny_folder):
    names = sorted(p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file())
    assert names == sorted([
        "MODEL_CARD.md", "config.json", "goldens.npz", "model.onnx", "onnxforge.json", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.txt", "triton/tiny/config.pbtxt", "triton/tiny/1/model.onnx",
    ])
    data = (unpacked / "onnxforge.json").read_bytes()
    assert check_seal(data) is None
    m = json.loads(data)
    # every file but the manifest, with the sha256 and size it really has
    assert sorted(m["files"]) == sorted(n for n in names if n != "onnxforge.json")
    for name, entry in m["files"].items():
        assert entry == {"sha256": sha256_file(unpacked / name), "size": (unpacked / name).stat().st_size}
    model = m["package"]["models"]["base"]
    assert model["opset"] == 17 and model["ir_version"] >= 7 and model["precision"] == "fp32"
    assert model["producer"].startswith("pytorch")
    sig = model["signature"]
    assert [(v["name"], v["dtype"], v["dims"]) for v in sig["inputs"]] == [
        (n, "int64", ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    assert [(v["name"], v["dtype"], v["dims"]) for v in sig["outputs"]] == [
        ("last_hidden_state", "float32", ["batch", "sequence", 64]), ("pooler_output", "float32", ["batch", 64])]
    assert model["fused_ops"] == {} and model["quantized"] is False
    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "onnxforge"):
        assert m["versions"][pkg], pkg
    parity = m["package"]["parity"]["base"]
    assert parity["passed"] is True and parity["source"] == "export"
    goldens = m["package"]["goldens"]
    assert goldens["texts"] == 4 and goldens["checks"]["base"]["status"] == "passed"
    assert goldens["checks"]["base"]["outputs"]["last_hidden_state"]["max_abs"] < 1e-4
    assert len(m["goldens"]["texts"]) == 4
    # packaging's own record stays out of the package (it would change the next package)
    assert "package" not in m["stages"] and "export" in m["stages"]
    assert Artifact.open(tiny_folder).stage("package")["sha256"]


def test_unpacked_package_is_an_artifact_folder(unpacked):
    art = Artifact.open(unpacked)
    assert art.spec.hidden_size == 64
    assert art.variant_path("base").name == "model.onnx"


def test_model_card_names_the_numbers(unpacked):
    card = (unpacked / "MODEL_CARD.md").read_text()
    m = json.loads((unpacked / "onnxforge.json").read_text())
    assert "## Run it: five lines of Python" in card and "## Parity with PyTorch" in card
    assert m["files"]["model.onnx"]["sha256"][:16] in card
    assert "opset 17" in card and "torch 2.13" in card
    assert "onnxforge verify tiny.tar.gz" in card


@pytest.fixture
def folder_copy(tmp_path, tiny_folder):
    dst = tmp_path / "art"
    shutil.copytree(tiny_folder, dst)
    return dst


def test_changed_file_is_refused_and_nothing_written(folder_copy, tmp_path, cli):
    tok = folder_copy / "tokenizer.json"
    tok.write_bytes(tok.read_bytes().replace(b'"[UNK]"', b'"[UNX]"', 1))
    out = tmp_path / "pkg" / "x.tar.gz"
    code, _, err = cli("package", folder_copy, "--out", out)
    assert code == 1
    assert "tokenizer.json changed after its stage recorded it" in err
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temporary file either
    record = Artifact.open(folder_copy).stage("package")
    assert record["passed"] is False and "tokenizer.json" in record["failures"][0]


def test_variant_that_failed_validation_is_not_shipped(folder_copy, tmp_path, cli):
    art = Artifact.open(folder_copy)
    art.record_stage("validate.base", {"passed": False, "failures": ["made up for this test"]})
    art.save()
    code, _, err = cli("package", folder_copy, "--out", tmp_path / "x.tar.gz", "--variant", "base")
    assert code == 1 and "failed validate.base" in err
    assert not (tmp_path / "x.tar.gz").exists()
    code, _, err = cli("package", folder_copy, "--out", tmp_path / "x.tar.gz")
    assert code == 2 and "every variant" in err


@pytest.mark.parametrize("args, message", [
    (["--out", "{folder}/inside.tar.gz"], "inside the artifact folder"),
    (["--out", "{tmp}/x.zip"], "does not end in .tar.gz"),
    (["--out", "{tmp}/x.tar.gz", "--variant", "fp64"], "--variant fp64 is not in"),
    (["--out", "{tmp}/x.tar.gz", "--device", "tpu"], "--device tpu"),
    (["--out", "{tmp}/x.tar.gz", "--triton-name", "Bad Name"], "not a valid model folder name"),
    (["--out", "{tmp}/x.tar.gz", "--triton-variant", "base"], "need --triton"),
])
def test_bad_input_exits_2(folder_copy, tmp_path, cli, args, message):
    args = [a.format(folder=folder_copy, tmp=tmp_path) for a in args]
    code, _, err = cli("package", folder_copy, *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.tar.gz")) and not (folder_copy / "inside.tar.gz").exists()


def test_existing_archive_needs_force(folder_copy, tmp_path, cli):
    out = tmp_path / "x.tar.gz"
    out.write_bytes(b"old")
    code, _, err = cli("package", folder_copy, "--out", out)
    assert code == 2 and "--force" in err and out.read_bytes() == b"old"
    code, _, err = cli("package", folder_copy, "--out", out, "--force")
    assert code == 0, err
    with tarfile.open(out) as tar:
        assert "x/onnxforge.json" in tar.getnames()


def test_external_weights_travel_with_their_graph(tmp_path, tiny_model_dir, cli):
    """A model whose weights live in model.onnx.data (the >2 GB path): packaged, served, verified."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    folder = tmp_path / "ext"
    assert export_model(resolve_source(str(tiny_model_dir)), folder, ExportOptions(external_data_threshold=1000))
    assert (folder / "model.onnx.data").is_file()
    archive = tmp_path / "ext.tar.gz"
    code, _, err = cli("package", folder, "--out", archive, "--triton")
    assert code == 0, err
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert {"ext/model.onnx.data", "ext/triton/ext/1/model.onnx", "ext/triton/ext/1/model.onnx.data"} <= set(names)
    code, out, err = cli("verify", archive)
    assert code == 0, (out, err)
    from .conftest import repack, unpack

    unpacked = unpack(archive, tmp_path / "u")
    data = bytearray((unpacked / "model.onnx.data").read_bytes())
    data[100] ^= 0x10
    (unpacked / "model.onnx.data").write_bytes(bytes(data))
    code, _, err = cli("verify", repack(unpacked, tmp_path / "changed.tar.gz"))
    assert code == 1 and "model.onnx.data" in err
