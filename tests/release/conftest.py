"""Release fixtures: a writable copy of the tiny export, its package, and archive helpers."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny seeded BERT with a tokenizer_config that fits its 128 positions.

    The shared fixture borrows MiniLM's tokenizer files, whose model_max_length (512)
    exceeds the tiny model's position table; smoke rightly refuses that.
    """
    import json

    dst = tmp_path_factory.mktemp("release_model") / "tiny_bert"
    shutil.copytree(tiny_bert_dir, dst)
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    positions = json.loads((dst / "config.json").read_text())["max_position_embeddings"]
    cfg["model_max_length"] = positions
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_artifact) -> Path:
    """A session copy of the tiny export that packaging may record into. Treat as read-only."""
    dst = tmp_path_factory.mktemp("release_tiny") / "tiny"
    shutil.copytree(tiny_artifact, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, tiny_folder) -> Path:
    """tiny.tar.gz with the base variant and a Triton repository. Read-only."""
    from onnxforge.release import PackageOptions, package_artifact

    out = tmp_path_factory.mktemp("release_pkg") / "tiny.tar.gz"
    report = package_artifact(tiny_folder, out, PackageOptions(triton=True))
    assert report, report.failures
    return out


def unpack(archive: Path, dest: Path) -> Path:
    from onnxforge.release.archive import safe_extract

    return safe_extract(archive, dest)


def repack(folder: Path, out: Path) -> Path:
    """A plain tar.gz of ``folder`` (one top-level folder), as a person re-packing it would make."""
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=folder.name)
    return out


@pytest.fixture
def unpacked(tmp_path, tiny_package) -> Path:
    return unpack(tiny_package, tmp_path / "unpacked")


@pytest.fixture(scope="session")
def minilm_build(tmp_path_factory):
    """The README's main command, run once as a user runs it: `onnxforge build --out artifacts/minilm --force`.

    Returns (working folder, completed process). Read-only for tests.
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("minilm_build")
    exe = shutil.which("onnxforge")
    cmd = [exe] if exe else [sys.executable, "-m", "onnxforge.cli"]
    proc = subprocess.run([*cmd, "build", "--out", "artifacts/minilm", "--force", "--json", "summary.json"],
                          cwd=root, capture_output=True, text=True, timeout=900)
    return root, proc


@pytest.fixture(scope="session")
def minilm_unpacked(minilm_build, tmp_path_factory) -> Path:
    """The MiniLM build's archive, unpacked once (with the safe extractor). Read-only."""
    root, proc = minilm_build
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return unpack(root / "artifacts" / "minilm.tar.gz", tmp_path_factory.mktemp("minilm_unpacked"))
