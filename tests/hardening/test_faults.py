"""Faults: SIGINT and SIGTERM while export, optimize, batch and package are working.

Each command runs as a real subprocess over a folder that already holds the previous
good result. The signal is sent once the command is provably inside its work (its
staging folder or ``.partial`` file exists, polled, never a blind sleep; every wait is
bounded). Afterwards the folder must be byte-for-byte what it was, with no temporary
name left, and the next run must work. ``slow_cli`` stretches the work (a sleep before
each model call or archive member) so the signal lands inside it on any machine.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import ROOT, cli_command, cli_env, leftovers, tree

START_TIMEOUT_S = 180  # torch import and model load on a busy 2-core machine
EXIT_TIMEOUT_S = 60


def _ctrl_c_as_a_terminal_sends_it() -> None:
    """In the child: SIGINT back to its default. A shell that starts jobs in the background
    (nohup, `&` in a script) leaves SIGINT ignored, and a Python started so never raises
    KeyboardInterrupt; the test is about the command's handling, not its launcher's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_and_signal(args, ready, sig, tmp_path: Path, slow: str = "") -> tuple[int, str]:
    """Start the CLI, wait until ``ready()``, send ``sig``; returns (exit code, stderr)."""
    out, err = open(tmp_path / "stdout.log", "w"), open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen(cli_command(*args), cwd=ROOT, stdout=out, stderr=err,
                            env=cli_env(ONNXFORGE_TEST_SLOW=slow), preexec_fn=_ctrl_c_as_a_terminal_sends_it)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the command ended (exit {proc.returncode}) before its work was seen:\n"
                            + (tmp_path / "stderr.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"the command did not start its work within {START_TIMEOUT_S}s")
            time.sleep(0.01)
        proc.send_signal(sig)
        code = proc.wait(timeout=EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
    stderr = (tmp_path / "stderr.log").read_text()
    (tmp_path / "stdout.log").unlink()
    (tmp_path / "stderr.log").unlink()
    return code, stderr


def exists(pattern_root: Path, pattern: str):
    return lambda: any(pattern_root.glob(pattern))


SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


def assert_interrupted(code: int, stderr: str) -> None:
    assert code == 130, stderr[-3000:]
    assert "interrupted: nothing was left half-written" in stderr
    assert "Traceback" not in stderr


@SIGNALS
def test_export_interrupted_keeps_the_previous_artifact(sig, hard_src, hard_artifact, tmp_path, cli):
    work = tmp_path / "work"
    work.mkdir()
    art = work / "art"
    shutil.copytree(hard_artifact, art)
    before = tree(work)

    # .raw appears inside the staging folder just before the exporter traces the model.
    code, stderr = run_and_signal(["export", hard_src, "--out", art, "--force"],
                                  exists(work, ".art.*.staging/.raw"), sig, tmp_path)

    assert_interrupted(code, stderr)
    assert tree(work) == before and not leftovers(work)
    code, _, err = cli("export", hard_src, "--out", art, "--force")
    assert code == 0, err
    code, _, err = cli("verify", art, "--no-goldens")
    assert code == 0, err
    assert not leftovers(work)


@SIGNALS
def test_optimize_interrupted_keeps_the_previous_variant(sig, hard_optimized, tmp_path, cli):
    from onnxforge.artifact import Artifact

    work = tmp_path / "work"
    work.mkdir()
    art = work / "art"
    shutil.copytree(hard_optimized, art)
    before = tree(work)

    code, stderr = run_and_signal(["optimize", art], exists(art, ".optimize-optimized-*/model_optimized.onnx"), sig,
                                  tmp_path, slow="onnxforge.optimize.optimizer:run_checks=1.0")

    assert_interrupted(code, stderr)
    assert tree(work) == before and not leftovers(work)
    code, _, err = cli("optimize", art)
    assert code == 0, err
    rebuilt = Artifact.open(art)
    assert rebuilt.recorded_mismatch("model_optimized.onnx") is None
    assert rebuilt.stage("optimize.optimized")["passed"] is True
    assert not leftovers(work)


def _batch_input(path: Path, n: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows((i, f"sentence {i} about Debian package number {i * 7 % 1000}") for i in range(n))
    return path


def _assert_complete(out: Path, n: int) -> None:
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [str(i) for i in range(n)], "rows missing, repeated or out of order"
    assert all(r["embedding"].startswith("[") and not r["error"] for r in rows)


BATCH_ROWS = 10_000  # three chunks of 4096 rows: the output is half-written when the signal lands
SLOW_MODEL = "onnxforge.runtime.runtime:Runtime.run=0.005"


@SIGNALS
def test_batch_interrupted_keeps_the_previous_output_and_reruns_complete(sig, hard_artifact, tmp_path, cli):
    work = tmp_path / "work"
    work.mkdir()
    src = _batch_input(work / "in.csv", BATCH_ROWS)
    out = work / "out.csv"
    out.write_text("previous results\n")
    before = tree(work)

    def half_written() -> bool:
        return any(p.stat().st_size > 0 for p in work.glob(".out.csv.*.partial"))

    code, stderr = run_and_signal(["batch", hard_artifact, src, "--out", out, "--no-progress"], half_written, sig,
                                  tmp_path, slow=SLOW_MODEL)

    assert_interrupted(code, stderr)
    assert tree(work) == before and not leftovers(work)
    code, _, err = cli("batch", hard_artifact, src, "--out", out, "--no-progress")
    assert code == 0, err
    _assert_complete(out, BATCH_ROWS)
    assert not leftovers(work)


def test_batch_killed_outright_never_leaves_a_partial_output(hard_artifact, tmp_path, cli):
    """SIGKILL allows no cleanup: the output is still the previous one (the rename never
    happened), a rerun is complete, and the dead run's temporary file keeps its hidden
    ``.partial`` name, so nothing can mistake it for results."""
    work = tmp_path / "work"
    work.mkdir()
    src = _batch_input(work / "in.csv", BATCH_ROWS)
    out = work / "out.csv"
    out.write_text("previous results\n")

    def half_written() -> bool:
        return any(p.stat().st_size > 0 for p in work.glob(".out.csv.*.partial"))

    code, _ = run_and_signal(["batch", hard_artifact, src, "--out", out, "--no-progress"], half_written,
                             signal.SIGKILL, tmp_path, slow=SLOW_MODEL)

    assert code == -signal.SIGKILL
    assert out.read_text() == "previous results\n"
    stale = list(work.glob(".out.csv.*.partial"))
    assert len(stale) == 1
    code, _, err = cli("batch", hard_artifact, src, "--out", out, "--no-progress")
    assert code == 0, err
    _assert_complete(out, BATCH_ROWS)
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["in.csv", "out.csv"]


@SIGNALS
def test_package_interrupted_keeps_the_previous_archive(sig, hard_artifact, hard_package, tmp_path, cli):
    work = tmp_path / "work"
    work.mkdir()
    art = work / "art"
    shutil.copytree(hard_artifact, art)
    archive = work / "tiny.tar.gz"
    shutil.copyfile(hard_package, archive)
    before = tree(work)

    code, stderr = run_and_signal(["package", art, "--out", archive, "--force"], exists(work, ".tiny.tar.gz.*.partial"),
                                  sig, tmp_path, slow="tarfile:TarFile.addfile=0.2")

    assert_interrupted(code, stderr)
    assert tree(work) == before and not leftovers(work)
    code, _, err = cli("package", art, "--out", archive, "--force")
    assert code == 0, err
    code, _, err = cli("verify", archive)
    assert code == 0, err
    assert not leftovers(work)


def test_an_interrupt_between_the_two_renames_waits_for_the_second(tmp_path, monkeypatch):
    """Replacing a folder takes two renames (old aside, new in). A Ctrl-C between them
    would leave --out missing; it is held until both are done, then delivered."""
    import os

    from onnxforge import files as artifact_module

    out = tmp_path / "art"
    out.mkdir()
    (out / "model.onnx").write_text("previous")
    real_replace = os.replace

    def replace_then_ctrl_c(src, dst):
        real_replace(src, dst)
        if Path(dst).name.startswith(".art.old-"):  # --out was just moved aside
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a signal not held would raise KeyboardInterrupt here

    monkeypatch.setattr(artifact_module.os, "replace", replace_then_ctrl_c)
    # Python's own Ctrl-C handler, even when this test process was started with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with artifact_module.staged_directory(out, force=True) as stage:
                (stage / "model.onnx").write_text("new")
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert (out / "model.onnx").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]
