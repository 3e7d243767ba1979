"""A light HTTP/1.1 load generator: asyncio streams, keep-alive, one request in flight
per connection, N connections.

Why not httpx: on the 2-core machines this harness targets, the client shares the CPU
with the server it measures, and a full-featured client spends about a millisecond of
CPU per request, the same order as the server's own work. This client builds each
request as bytes once and reads only the status line, headers and body. Every response
is checked for status 200; the first one's JSON is parsed and handed to a checker.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class HttpError(RuntimeError):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        raise HttpError(f"response without Content-Length or chunked encoding: {headers}")
    return status, body


def _request_bytes(host: str, port: int, path: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode("utf-8")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode("latin-1") + body


async def _load(host: str, port: int, path: str, payloads: list[Any], concurrency: int, total: int,
                warmup: int, check: Callable[[Any, Any], None] | None) -> dict[str, Any]:
    requests = [_request_bytes(host, port, path, p) for p in payloads]
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    checked = False

    async def worker(count_limit: int, record: bool) -> None:
        nonlocal next_index, checked
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < count_limit:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                writer.write(requests[i % len(requests)])
                await writer.drain()
                status, body = await _read_response(reader)
                dt = time.perf_counter() - t0
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                    continue
                if check is not None and not checked:
                    checked = True
                    check(payloads[i % len(payloads)], json.loads(body))
                if record:
                    latencies.append(dt)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    # Warm-up on one connection (first requests compile/allocate in the server).
    next_index = 0
    await worker(warmup, record=False)
    next_index = 0
    start = time.perf_counter()
    await asyncio.gather(*(worker(total, record=True) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = [x * 1e3 for x in latencies]
    return {
        "concurrency": concurrency, "requests": total, "ok": len(latencies), "errors": len(errors),
        "first_errors": errors[:3], "wall_s": wall, "requests_per_s": len(latencies) / wall if wall else 0.0,
        "mean_ms": statistics.fmean(ms) if ms else None, "p50_ms": _percentile(ms, 50) if ms else None,
        "p90_ms": _percentile(ms, 90) if ms else None, "p99_ms": _percentile(ms, 99) if ms else None,
        "max_ms": max(ms) if ms else None,
    }


def run_load(url_host: str, port: int, path: str, payloads: list[Any], *, concurrency: int, total: int,
             warmup: int = 5, check: Callable[[Any, Any], None] | None = None) -> dict[str, Any]:
    """Send ``total`` POST requests with ``concurrency`` connections; latency and throughput."""
    return asyncio.run(_load(url_host, port, path, payloads, concurrency, total, warmup, check))
