"""``--engine ray`` on a local 2-CPU Ray instance: the local engine's values, every row once, resume, nothing left running."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.slow

# The tiny fixture's tokenizer_config says 512; its model has 128 positions.
MAX_LENGTH = 128
ROOT = Path(__file__).resolve().parents[2]


def write_rows(path: Path, n: int, *, broken_at: int | None = None, empty: tuple[int, ...] = ()) -> Path:
    """``n`` data rows (ids r1..rn); row ``broken_at`` opens a quote that never closes."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,text,note\n")
        w = csv.writer(f, lineterminator="\n")
        for i in range(1, n + 1):
            if i == broken_at:
                f.write(f'r{i},"this quote never closes, so the rows after it would be swallowed,n\n')
            else:
                w.writerow([f"r{i}", "" if i in empty else f"Sentence {i} about Debian packages, " + "more words " * (i % 9),
                            f"note {i}"])
    return path


def ray_processes(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (a job's private Ray temp folder)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in cmd and p.pid != os.getpid():
            found.append(f"{p.pid} {cmd[:120]}")
    return found


def short_temp_dir() -> str:
    # Ray puts Unix sockets under its temp folder: keep the path short (108-byte limit).
    return tempfile.mkdtemp(prefix="ofr", dir="/tmp")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance with 2 CPUs for the in-process jobs of this module; nothing left after."""
    import ray

    temp = short_temp_dir()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        deadline = time.time() + 20
        while ray_processes(temp) and time.time() < deadline:
            time.sleep(0.5)
        assert not ray_processes(temp), ray_processes(temp)
        shutil.rmtree(temp, ignore_errors=True)


def local_batch(artifact, src, out, **kw):
    from onnxforge.batch import BatchOptions, batch_file

    return batch_file(artifact, src, out, BatchOptions(max_length=MAX_LENGTH, **kw))


def ray_job(artifact, src, out, *, on_bad_rows="fail", **ray_kw):
    from onnxforge.batch import BatchOptions
    from onnxforge.batch.ray_job import RayOptions, ray_batch

    return ray_batch(artifact, str(src), str(out), BatchOptions(max_length=MAX_LENGTH, on_bad_rows=on_bad_rows),
                     RayOptions(**{"shard_rows": 64, **ray_kw}))


def shard_table(folder: Path):
    return pq.read_table(sorted(folder.glob("part-*.parquet"))).sort_by("row")


def test_ray_matches_the_local_engine_and_accounts_for_every_row(ray_local, tiny_artifact, tmp_path):
    n = 300
    src = write_rows(tmp_path / "in.csv", n, broken_at=150, empty=(7, 200))
    # The local engine, given the same input, stops on the broken quote (exit 2) ...
    from onnxforge.errors import UserInputError

    with pytest.raises(UserInputError, match="line 151"):
        ray_job(tiny_artifact, src, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # found before anything was written
    # ... and reports it with --on-bad-rows report: 299 rows written, 1 reported.
    report = ray_job(tiny_artifact, src, tmp_path / "shards", on_bad_rows="report")
    assert report.counts().to_dict() == {"read": n, "written": n - 1, "reported": 1, "ok": n - 3, "without_result": 3}
    out = tmp_path / "shards"
    assert (out / "_SUCCESS").exists()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"]["read"] == n and manifest["artifact"]["sha256"] == report.artifact_sha256
    assert sum(s["written"] for s in manifest["shards"]) == n - 1
    bad = [json.loads(line) for line in (out / "bad_rows.jsonl").read_text().splitlines()]
    assert [(b["row"], b["line"], b["fields"]["id"]) for b in bad] == [(150, 151, "r150")]
    table = shard_table(out)
    # Every row exactly once, in the output or the report, with its id.
    ids = table.column("id").to_pylist() + [b["fields"]["id"] for b in bad]
    assert sorted(ids, key=lambda s: int(s[1:])) == [f"r{i}" for i in range(1, n + 1)]
    assert table.column("row").to_pylist() == [i for i in range(1, n + 1) if i != 150]
    errors = dict(zip(table.column("id").to_pylist(), table.column("error").to_pylist()))
    assert errors["r7"].startswith("empty") and errors["r200"].startswith("empty") and errors["r1"] is None

    # The same values as the single-process engine (same tokenizer, variant), row by row.
    clean = write_rows(tmp_path / "clean.csv", n, empty=(7, 200))
    local = local_batch(tiny_artifact, clean, tmp_path / "local.parquet")
    assert local.rows == n
    expected = pq.read_table(tmp_path / "local.parquet")
    keep = [i for i in range(n) if i + 1 != 150]
    want = expected.take(keep)
    assert want.column("id").to_pylist() == table.column("id").to_pylist()
    ok = [e is None for e in table.column("error").to_pylist()]
    got_vec = np.array([v for v, k in zip(table.column("embedding").to_pylist(), ok) if k])
    want_vec = np.array([v for v, k in zip(want.column("embedding").to_pylist(), ok) if k])
    assert got_vec.shape == (n - 3, want_vec.shape[1])
    assert np.abs(got_vec - want_vec).max() <= 1e-5


def test_ray_single_file_output_equals_the_local_engines(ray_local, tiny_artifact, tmp_path):
    src = write_rows(tmp_path / "in.csv", 120, empty=(3,))
    local_batch(tiny_artifact, src, tmp_path / "local.jsonl")
    report = ray_job(tiny_artifact, src, tmp_path / "ray.jsonl", shard_rows=50)
    assert report.format == "jsonl" and report.shards == 3 and report.counts().written == 120
    local = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    remote = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [list(r) for r in remote] == [list(r) for r in local]  # same columns, same order
    assert [r["id"] for r in remote] == [r["id"] for r in local]
    assert [r["error"] for r in remote] == [r["error"] for r in local]
    a = np.array([r["embedding"] for r in local if r["embedding"]])
    b = np.array([r["embedding"] for r in remote if r["embedding"]])
    assert np.abs(a - b).max() <= 1e-5
    assert not list(tmp_path.glob(".ray.jsonl*"))  # the staging shards are gone


JOB = """
import sys
from onnxforge.batch import BatchOptions
from onnxforge.batch.ray_job import RayOptions, ray_batch
ray_batch(sys.argv[1], sys.argv[2], sys.argv[3], BatchOptions(max_length=128), RayOptions(shard_rows=10, actors=1, local_cpus=2))
"""


def test_killed_run_leaves_no_ray_process_and_resume_skips_written_shards(tiny_artifact, tmp_path):
    """The job starts its own Ray instance; SIGTERM mid-run stops it cleanly, and --resume finishes the rest."""
    # 1,200 rows in 120 shards of 10: the single actor needs seconds, so SIGTERM lands mid-run.
    src = write_rows(tmp_path / "in.csv", 1200)
    out = tmp_path / "out"
    temp = short_temp_dir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": temp}
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(tiny_artifact), str(src), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while not list(out.glob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(out.glob("part-*.parquet")), proc.communicate()[0].decode()[-2000:] if proc.poll() is not None else "no shard"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, "the job finished before SIGTERM"
    assert not (out / "_SUCCESS").exists()
    deadline = time.time() + 30
    while ray_processes(temp) and time.time() < deadline:
        time.sleep(0.5)
    assert not ray_processes(temp), ray_processes(temp)
    shutil.rmtree(temp, ignore_errors=True)
    written = {p.name for p in out.glob("part-*.parquet")}
    assert 0 < len(written) < 120

    # The resumed run through the CLI, as a user runs it: it too leaves no Ray process.
    temp = short_temp_dir()
    env["RAY_TMPDIR"] = temp
    summary = tmp_path / "resumed.json"
    done = subprocess.run([sys.executable, "-m", "onnxforge.cli", "batch", str(tiny_artifact), str(src), "--out", str(out),
                           "--engine", "ray", "--resume", "--shard-rows", "10", "--max-length", str(MAX_LENGTH),
                           "--no-progress", "--json", str(summary)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not ray_processes(temp), ray_processes(temp)
    shutil.rmtree(temp, ignore_errors=True)
    report = json.loads(summary.read_text())
    assert report["shards"] == 120 and report["shards_skipped"] >= len(written) - 1  # a shard may land after the scan
    assert report["rows"]["written"] == 1200 and (out / "_SUCCESS").exists()
    table = shard_table(out)
    assert table.column("row").to_pylist() == list(range(1, 1201))
    local_batch(tiny_artifact, src, tmp_path / "local.parquet")
    want = np.array(pq.read_table(tmp_path / "local.parquet").column("embedding").to_pylist())
    assert np.abs(np.array(table.column("embedding").to_pylist()) - want).max() <= 1e-5


def test_ray_cli_exits_1_when_every_row_failed_after_writing_every_row(ray_local, tiny_artifact, cli, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,\n2,"  "\n3,\n')
    out = tmp_path / "out"
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, "--engine", "ray", "--max-length", str(MAX_LENGTH),
                       "--no-progress")
    assert code == 1 and "every row failed: none of the 3 row(s) got a result" in err
    assert (out / "_SUCCESS").exists()  # complete: each row is there with its reason
    table = shard_table(out)
    assert table.column("id").to_pylist() == ["1", "2", "3"]
    assert all(e.startswith("empty") for e in table.column("error").to_pylist())
    assert table.column("embedding").null_count == 3
