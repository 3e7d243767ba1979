"""Subprocesses for the harness: timed runs with their peak memory, servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ONNXFORGE = [sys.executable, "-m", "onnxforge.cli"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    return e


def run_measured(cmd: list[str], *, timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion (killed after ``timeout``); wall time, exit code, output."""
    t0 = time.perf_counter()
    # A new session, so a timeout kills the whole group (the measuring wrapper's child too).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=cwd, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
            raise
        return {"cmd": cmd, "returncode": None, "timed_out": True, "wall_s": time.perf_counter() - t0,
                "stdout": out[-20000:], "stderr": err[-4000:]}
    return {"cmd": cmd, "returncode": proc.returncode, "timed_out": False, "wall_s": time.perf_counter() - t0,
            "stdout": out[-20000:], "stderr": err[-4000:]}


_WRAPPER = (
    "import json, os, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "wall = time.perf_counter() - t0\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "sys.stderr.write('\\n@@measure ' + json.dumps({'returncode': code, 'wall_s': wall, "
    "'peak_rss_mib': usage.ru_maxrss / 1024, 'user_s': usage.ru_utime, 'sys_s': usage.ru_stime}) + '\\n')\n"
    "sys.exit(code if code >= 0 else 1)\n"
)


def measured(cmd: list[str], *, timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` under a tiny wrapper that waits for it with ``os.wait4`` and reports
    its wall time, CPU time and peak resident memory (ru_maxrss of that child alone)."""
    import json

    result = run_measured([sys.executable, "-c", _WRAPPER, *cmd], timeout=timeout, cwd=cwd)
    result["cmd"] = cmd
    marker = "@@measure "
    for line in reversed(result.get("stderr", "").splitlines()):
        if line.startswith(marker):
            result.update(json.loads(line[len(marker):]))
            break
    else:
        result.setdefault("peak_rss_mib", None)
    result["stderr"] = "\n".join(l for l in result.get("stderr", "").splitlines() if not l.startswith(marker))
    return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


@contextmanager
def server(cmd: list[str], port: int, ready_path: str, *, boot_timeout: float = 180.0, log: Path | None = None):
    """Start a server, wait until ``ready_path`` answers 200, yield (process, boot seconds),
    then stop it with SIGINT (graceful) and, if it lingers, SIGKILL."""
    log_f = open(log, "w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}{ready_path}"
        while True:
            if proc.poll() is not None:
                tail = Path(log).read_text()[-2000:] if log else ""
                raise RuntimeError(f"server exited with code {proc.returncode} before it was ready: {' '.join(cmd)}\n{tail}")
            if _get(url) == 200:
                break
            if time.perf_counter() - t0 > boot_timeout:
                raise RuntimeError(f"server not ready after {boot_timeout:.0f}s: {' '.join(cmd)}")
            time.sleep(0.1)
        yield proc, time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            log_f.close()
