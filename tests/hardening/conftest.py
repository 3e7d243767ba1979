"""Hardening fixtures: a tiny artifact whose tokenizer fits it, damaged copies, and folders
that cannot be written (read-only, full).

Read-only and full folders are real file systems where the machine allows it: a small
tmpfs mounted read-only or with 64 KiB of space (needs root or CAP_SYS_ADMIN, which CI
containers often have). Root ignores permission bits, so ``chmod`` alone would prove
nothing there; without root, ``chmod 0555`` is honest and used instead. Where neither
works the test is skipped with the reason; ``test_enospc_in_process`` simulates a full
disk in-process everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_POSITIONS = 128


# -- artifacts -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def hard_src(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny seeded BERT folder, its tokenizer_config limited to the model's 128 positions."""
    src = tmp_path_factory.mktemp("hard_src") / "tiny"
    shutil.copytree(tiny_bert_dir, src)
    cfg_path = src / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = TINY_POSITIONS
    cfg_path.write_text(json.dumps(cfg))
    return src


def _export(src: Path, out: Path, **options) -> Path:
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    report = export_model(resolve_source(str(src)), out, ExportOptions(**options))
    assert report, report.check
    return out


@pytest.fixture(scope="session")
def hard_artifact(tmp_path_factory, hard_src) -> Path:
    """The tiny export (weights inside model.onnx). Read-only: copy it to change it."""
    return _export(hard_src, tmp_path_factory.mktemp("hard_art") / "art")


@pytest.fixture(scope="session")
def hard_ext_artifact(tmp_path_factory, hard_src) -> Path:
    """The tiny export with its weights in model.onnx.data. Read-only."""
    return _export(hard_src, tmp_path_factory.mktemp("hard_ext") / "art", external_data_threshold=0)


@pytest.fixture(scope="session")
def hard_package(tmp_path_factory, hard_artifact) -> Path:
    """A package (.tar.gz) of the tiny artifact. Read-only."""
    from onnxforge.release.package import PackageOptions, package_artifact

    work = tmp_path_factory.mktemp("hard_pkg")
    art = work / "art"
    shutil.copytree(hard_artifact, art)
    report = package_artifact(art, work / "tiny.tar.gz", PackageOptions())
    assert report, report.failures
    return work / "tiny.tar.gz"


@pytest.fixture(scope="session")
def hard_optimized(tmp_path_factory, hard_artifact) -> Path:
    """The tiny artifact with its fp32 fused variant (model_optimized.onnx) built. Read-only."""
    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    art = tmp_path_factory.mktemp("hard_opt") / "art"
    shutil.copytree(hard_artifact, art)
    assert optimize_artifact(art, OptimizeOptions())
    return art


@pytest.fixture(scope="session")
def hard_runtime(hard_artifact):
    from onnxforge.runtime import Runtime

    return Runtime.load(hard_artifact)


# -- what a folder holds -------------------------------------------------------------
def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (hidden ones included) -> sha256 of a file, or "dir"."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


LEFTOVER_MARKS = (".partial", ".staging", ".old-", ".optimize-", ".raw")


def leftovers(root: Path) -> list[str]:
    """Temporary names a stage uses while writing: none may survive a finished command."""
    return sorted(p for p in tree(root) if any(m in p for m in LEFTOVER_MARKS))


# -- folders that cannot be written ----------------------------------------------------
def _mount_tmpfs(path: Path, options: str) -> str | None:
    """Mount a tmpfs at ``path``; None on success, else why not."""
    if not shutil.which("mount") or os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    path.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mount failed: {e}"
    return None if result.returncode == 0 else f"mount failed: {result.stderr.strip()[:200]}"


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


class Places:
    """Makes read-only and full folders on demand; undoes them at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self._undo: list = []

    def readonly(self) -> Path:
        path = self.tmp_path / "readonly"
        if os.geteuid() != 0:
            path.mkdir()
            path.chmod(0o555)
            self._undo.append(lambda: path.chmod(0o755))
            return path
        why = _mount_tmpfs(path, "ro,size=64k")
        if why:
            pytest.skip(f"no read-only folder as root here ({why}); chmod does not stop root")
        self._undo.append(lambda: _unmount(path))
        return path

    def full(self) -> Path:
        path = self.tmp_path / "full"
        why = _mount_tmpfs(path, "size=64k")
        if why:
            pytest.skip(f"no small file system to fill here ({why}); see test_enospc_in_process")
        self._undo.append(lambda: _unmount(path))
        return path

    def close(self) -> None:
        for undo in reversed(self._undo):
            with contextlib.suppress(Exception):
                undo()


@pytest.fixture
def places(tmp_path):
    p = Places(tmp_path)
    yield p
    p.close()


# -- running the CLI in a subprocess (fault tests, soak) ------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("ONNXFORGE_DEBUG", None)
    return env


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "tests.hardening.slow_cli", *map(str, args)]


