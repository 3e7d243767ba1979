"""`onnxforge serve`'s new options, as a user meets them: exit codes, the warning, the key never shown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx

from tests.runtime_helpers import TINY_MAX_LENGTH
from tests.server_helpers import wait_until_ready

KEY = "cli-key-5f2c9a7e1d"


def test_budget_below_the_model_maximum_is_exit_2(tiny_artifact, cli):
    code, _, stderr = cli("serve", tiny_artifact, "--port", "0", "--max-length", TINY_MAX_LENGTH, "--max-batch-tokens", "64")
    assert code == 2 and "--max-batch-tokens 64 is less than the model's maximum length (128 tokens)" in stderr


def test_warning_when_listening_beyond_loopback_without_a_key(tiny_artifact, cli):
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: the bind fails after the
    # warning, so no socket is ever opened beyond loopback.
    code, _, stderr = cli("serve", tiny_artifact, "--host", "192.0.2.1", "--port", "0", "--max-length", TINY_MAX_LENGTH)
    assert code == 2 and "without an API key" in stderr and "cannot listen on 192.0.2.1" in stderr
    code, _, stderr = cli("serve", tiny_artifact, "--host", "192.0.2.1", "--port", "0", "--max-length", TINY_MAX_LENGTH,
                          "--api-key", KEY)
    assert code == 2 and "without an API key" not in stderr and KEY not in stderr


def test_key_from_the_environment_is_required_and_never_printed(tiny_artifact):
    env = {**os.environ, "COLUMNS": "200", "ONNXFORGE_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxforge.cli", "serve", str(tiny_artifact), "--port", "0", "--max-length",
         str(TINY_MAX_LENGTH), "--log-level", "debug"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match and "API-key auth" in line, line
        url = f"http://127.0.0.1:{match.group(1)}"
        wait_until_ready(url)
        assert httpx.post(f"{url}/embed", json={"texts": ["hi"]}).status_code == 401
        assert httpx.post(f"{url}/embed", json={"texts": ["hi"]}, headers={"Authorization": "Bearer bad"}).status_code == 401
        assert httpx.post(f"{url}/embed", json={"texts": ["hi"]}, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert KEY not in line + out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_performance_hint_is_exit_2(tiny_artifact, cli):
    code, _, stderr = cli("serve", tiny_artifact, "--port", "0", "--max-length", TINY_MAX_LENGTH, "--performance", "fastest")
    assert code == 2 and "--performance fastest is not known" in stderr and "latency or throughput" in stderr
