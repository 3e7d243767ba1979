"""Soak `onnxforge serve`: N requests at concurrency C against a real uvicorn server on
loopback, every response checked, the server's memory sampled over time.

    python benchmarks/soak_server.py --artifact artifacts/minilm            # 10,000 x 32
    python benchmarks/soak_server.py --artifact DIR --requests 500 --concurrency 16 --json soak.json

The server runs as its own process (``python -m onnxforge.cli serve --port 0``) on
127.0.0.1 only. The run is bounded in count (``--requests``) and time (``--max-seconds``:
no new request after it) and stops the server with SIGTERM at the end. Without
``--artifact`` the built-in MiniLM is exported into a temporary folder first.

Each request posts one or more real Debian package descriptions to /embed over a
keep-alive connection (a small asyncio HTTP/1.1 client: a full-featured client costs
as much CPU per request as the server's own work on a 2-core machine). A response
counts as served when it is 200 and its JSON holds one embedding of the model's
dimension per text; anything else is an error, by kind. Memory: the server process's
RSS (/proc/<pid>/status, or psutil) every ``--sample-every`` seconds; "steady" means
it grew less than ``--max-growth-mb`` between the end of the warm-up (the first 10% of
requests) and the end. Exit 0 when every request was served and memory was steady.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


# -- the server process ----------------------------------------------------------------
def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # the process is gone, or psutil is missing
        return None


class Sampler(threading.Thread):
    """RSS of ``pid`` every ``every`` seconds, with the number of requests done so far."""

    def __init__(self, pid: int, every: float, progress):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.every, self.progress = pid, every, progress
        self.samples: list[tuple[float, int, float]] = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> None:
        value = rss_mb(self.pid)
        if value is not None:
            self.samples.append((round(time.monotonic() - self.t0, 2), self.progress(), round(value, 1)))

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample()


def start_server(artifact: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "onnxforge.cli", "serve", str(artifact), "--host", "127.0.0.1", "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env, cwd=ROOT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not announce its port within {READY_TIMEOUT_S}s")


def stop_server(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# -- a small keep-alive HTTP/1.1 client -------------------------------------------------
async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        return status, b"".join(parts)
    return status, await reader.read()


async def request_json(port: int, method: str, path: str, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """One request on its own connection (health checks)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        return await asyncio.wait_for(_response(reader), timeout)
    finally:
        writer.close()


class Load:
    def __init__(self, port: int, texts: list[str], per_request: int, requests: int, concurrency: int,
                 deadline: float, timeout: float):
        self.port, self.texts, self.per_request = port, texts, per_request
        self.requests, self.concurrency, self.deadline, self.timeout = requests, concurrency, deadline, timeout
        self.next = 0
        self.done = 0
        self.served = 0
        self.errors: dict[str, int] = {}
        self.first_errors: list[str] = []
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.dimension: int | None = None
        self.stopped_by_deadline = False

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{kind}: {detail[:300]}")

    def _check(self, status: int, body: bytes, n_texts: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != 200:
            self._error(f"status {status}", body.decode(errors="replace"))
            return
        try:
            payload = json.loads(body)
            vectors = payload["embeddings"]
            dims = {len(v) for v in vectors}
        except (ValueError, KeyError, TypeError) as e:
            self._error("bad body", f"{type(e).__name__}: {body[:200]!r}")
            return
        if len(vectors) != n_texts or len(dims) != 1 or (self.dimension is not None and dims != {self.dimension}):
            self._error("bad body", f"{len(vectors)} vectors of sizes {sorted(dims)} for {n_texts} texts")
            return
        self.dimension = dims.pop()
        self.served += 1

    async def worker(self) -> None:
        reader = writer = None
        while self.next < self.requests:
            if time.monotonic() > self.deadline:
                self.stopped_by_deadline = True
                break
            i = self.next
            self.next += 1
            texts = [self.texts[(i * self.per_request + k) % len(self.texts)] for k in range(self.per_request)]
            body = json.dumps({"texts": texts}).encode()
            head = (f"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), self.timeout)
                writer.write(head + body)
                await writer.drain()
                status, payload = await asyncio.wait_for(_response(reader), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
                self._error(type(e).__name__, str(e))
                if writer is not None:
                    writer.close()
                reader = writer = None
            else:
                self.latencies.append((time.perf_counter() - started) * 1e3)
                self._check(status, payload, len(texts))
            self.done += 1
        if writer is not None:
            writer.close()

    async def run(self) -> None:
        await asyncio.gather(*(self.worker() for _ in range(self.concurrency)))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    return round(xs[min(len(xs) - 1, int(round((len(xs) - 1) * q / 100)))], 2)


# -- the soak ---------------------------------------------------------------------------
def run_soak(artifact: Path, *, requests: int = 10_000, concurrency: int = 32, texts_per_request: int = 1,
             max_seconds: float = 900, sample_every: float = 1.0, request_timeout: float = 60,
             max_growth_mb: float = 64, server_args: list[str] | None = None, log: Path | None = None) -> dict[str, Any]:
    from onnxforge.data import sample_texts

    texts = sample_texts()
    log = log or Path(tempfile.mkstemp(prefix="soak-server-", suffix=".log")[1])
    proc, port = start_server(artifact, log, server_args or [])
    load = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if asyncio.run(request_json(port, "GET", "/ready", timeout=5))[0] == 200:
                    break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server never became ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        started = time.monotonic()
        load = Load(port, texts, texts_per_request, requests, concurrency, started + max_seconds, request_timeout)
        sampler = Sampler(proc.pid, sample_every, lambda: load.done)
        sampler.sample()
        sampler.start()
        asyncio.run(load.run())
        wall = time.monotonic() - started
        sampler.stop()
        health = json.loads(asyncio.run(request_json(port, "GET", "/health"))[1])
    finally:
        code = stop_server(proc)
    server_log = log.read_text(errors="replace")

    samples = sampler.samples
    warm_at = max(1, requests // 10)
    warm = next((s for s in samples if s[1] >= warm_at), samples[-1])
    end = samples[-1]
    growth = round(end[2] - warm[2], 1)
    step = max(1, len(samples) // 20)
    error_count = sum(load.errors.values())
    return {
        "artifact": str(artifact),
        "requests": requests,
        "sent": load.done,
        "served": load.served,
        "errors": error_count,
        "error_kinds": load.errors,
        "first_errors": load.first_errors,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "stopped_by_deadline": load.stopped_by_deadline,
        "concurrency": concurrency,
        "texts_per_request": texts_per_request,
        "dimension": load.dimension,
        "wall_s": round(wall, 2),
        "requests_per_s": round(load.done / wall, 1) if wall else None,
        "latency_ms": {"p50": _percentile(load.latencies, 50), "p95": _percentile(load.latencies, 95),
                       "p99": _percentile(load.latencies, 99), "max": round(max(load.latencies), 2) if load.latencies else None,
                       "mean": round(statistics.fmean(load.latencies), 2) if load.latencies else None},
        "rss_mb": {"start": samples[0][2], "after_warmup": warm[2], "end": end[2], "max": max(s[2] for s in samples),
                   "growth_after_warmup": growth, "steady": growth < max_growth_mb, "max_growth_mb": max_growth_mb,
                   "timeline": [{"t_s": t, "requests": n, "rss_mb": r} for t, n, r in samples[::step] + [end]]},
        "server": {"exit_code": code, "traceback": "Traceback" in server_log, "batches": health.get("batches"),
                   "batched_texts": health.get("batched_texts"), "timeouts": health.get("timeouts"),
                   "model": health.get("model", {}).get("variant")},
    }


def passed(report: dict[str, Any]) -> bool:
    return (report["errors"] == 0 and report["served"] == report["requests"] and report["rss_mb"]["steady"]
            and report["server"]["exit_code"] == 0 and not report["server"]["traceback"])


def _default_artifact(workdir: Path) -> Path:
    built = ROOT / "artifacts" / "minilm"
    if (built / "onnxforge.json").is_file():
        return built
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    out = workdir / "minilm"
    print(f"no --artifact: exporting the built-in MiniLM to {out}", file=sys.stderr)
    export_model(resolve_source(None), out, ExportOptions())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", type=Path, help="artifact folder (default: artifacts/minilm, else a fresh MiniLM export)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--texts-per-request", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=900, help="send no request after this long")
    ap.add_argument("--sample-every", type=float, default=1.0, help="seconds between RSS samples")
    ap.add_argument("--max-growth-mb", type=float, default=64, help="RSS growth after warm-up still called steady")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("server_args", nargs="*", help="extra `onnxforge serve` flags, after --")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.texts_per_request < 1:
        ap.error("--requests, --concurrency and --texts-per-request must be at least 1")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        artifact = args.artifact or _default_artifact(Path(tmp))
        report = run_soak(artifact, requests=args.requests, concurrency=args.concurrency,
                          texts_per_request=args.texts_per_request, max_seconds=args.max_seconds,
                          sample_every=args.sample_every, max_growth_mb=args.max_growth_mb,
                          server_args=args.server_args, log=Path(tmp) / "server.log")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    r = report["rss_mb"]
    print(f"served {report['served']:,}/{report['requests']:,} requests at concurrency {report['concurrency']} in "
          f"{report['wall_s']:.1f}s ({report['requests_per_s']} req/s), errors {report['errors']} {report['error_kinds'] or ''}\n"
          f"latency ms p50 {report['latency_ms']['p50']} p95 {report['latency_ms']['p95']} p99 {report['latency_ms']['p99']} "
          f"max {report['latency_ms']['max']}\n"
          f"server RSS MB: start {r['start']}, after warm-up {r['after_warmup']}, end {r['end']}, max {r['max']} "
          f"(growth after warm-up {r['growth_after_warmup']}: {'steady' if r['steady'] else 'GROWING'})\n"
          f"server: {report['server']['batches']} batches, exit {report['server']['exit_code']}")
    for line in report["first_errors"]:
        print(f"  {line}")
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
