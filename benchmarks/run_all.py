"""Reproduce (and beat) the seed blog's tables on this machine, in one command.

    python benchmarks/run_all.py --out benchmarks/results            # ~10 min on 2 cores
    python benchmarks/run_all.py --quick --out /tmp/bench-smoke       # smoke, ~1 min

Sections (``--sections``): inference time per phrase (every variant and PyTorch, CPU
and GPU when present), tokenizer time per phrase, the CSV batch job (`onnxforge batch`
vs the seed-style naive pipeline vs pure compute), the HTTP server (`onnxforge serve`
vs the seed-style naive server). Models (``--models``): the built-in MiniLM-L6 and a
BERT-base-sized model built from ``BertConfig()`` with random weights, both exported
and optimized by onnxforge's CLI into ``--work`` (cached between runs).

Writes ``<out>/<machine>.json`` (every figure, the command, machine facts and library
versions) and ``<out>/<machine>.md`` (the tables, beside the seed's numbers).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from harness import artifacts, csvjob, inference, report, serving, tokenization
from harness.seed import SEED

SECTIONS = ("inference", "tokenizers", "csv", "server")


def _loads(text: str) -> list[tuple[int, int]]:
    """``"1:200,16:800"`` -> [(1, 200), (16, 800)]: concurrency:requests pairs."""
    pairs = []
    for item in text.split(","):
        c, _, n = item.partition(":")
        pairs.append((int(c), int(n)))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for <machine>.json and .md")
    p.add_argument("--work", type=Path, default=Path("benchmarks/.work"), help="folder for artifacts, CSVs, logs (cached)")
    p.add_argument("--label", help="file name for the results (default: from the GPU or CPU model)")
    p.add_argument("--quick", action="store_true", help="smoke-sized counts; the numbers are rough")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--models", default=None, help="models for inference and server (default: minilm,bert-base; quick: minilm)")
    p.add_argument("--csv-models", default="minilm", help="models for the CSV job (bert-base takes ~8x longer per row)")
    p.add_argument("--artifact", action="append", default=[], metavar="MODEL=DIR",
                   help="use an existing artifact folder for a model instead of building one")
    p.add_argument("--no-optimize", action="store_true", help="do not run `onnxforge optimize` on built artifacts")
    p.add_argument("--device", default="auto", help="devices for the inference section: cpu, cuda, auto")
    p.add_argument("--batched", type=int, default=16, help="the batched size in the inference table")
    p.add_argument("--tokenizer-texts", type=int, default=None, help="texts per tokenizer pass (default 2000; quick 200)")
    p.add_argument("--tokenizer-cycles", type=int, default=None, help="tokenizer passes per contender (default 3; quick 1)")
    p.add_argument("--csv-rows", type=int, default=None, help="rows of the CSV job (default 10000; quick 200)")
    p.add_argument("--naive-csv-rows", type=int, default=None,
                   help="rows the naive pipeline runs (default 2000, scaled to --csv-rows: fixed padding makes "
                        "every row cost the same; pass the same as --csv-rows to run it in full)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of `onnxforge batch` and of pure compute")
    p.add_argument("--naive-max-length", type=int, default=128,
                   help="the naive pipeline's and server's fixed padding length (MiniLM's tokenizer.json uses 128)")
    p.add_argument("--naive-chunk", type=int, default=256, help="the naive pipeline's pandas chunk size (the seed's 256)")
    p.add_argument("--server-loads", default=None, help="concurrency:requests pairs for MiniLM (default 1:200,16:800; quick 1:20,16:64)")
    p.add_argument("--base-server-loads", default=None, help="the same for bert-base (default 1:50,16:200)")
    p.add_argument("--max-batch", type=int, default=None, help="--max-batch for `onnxforge serve` (default: its own)")
    args = p.parse_args(argv)
    q = args.quick
    args.models = args.models or ("minilm" if q else "minilm,bert-base")
    args.tokenizer_texts = args.tokenizer_texts or (200 if q else 2000)
    args.tokenizer_cycles = args.tokenizer_cycles or (1 if q else 3)
    args.csv_rows = args.csv_rows or (200 if q else 10000)
    args.naive_csv_rows = min(args.naive_csv_rows or (200 if q else 2000), args.csv_rows)
    args.server_loads = args.server_loads or ("1:20,16:64" if q else "1:200,16:800")
    args.base_server_loads = args.base_server_loads or ("1:10,16:32" if q else "1:50,16:200")
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {sorted(unknown)}; choose from {SECTIONS}")
    bad = (set(args.models.split(",")) | set(args.csv_models.split(","))) - set(artifacts.MODELS)
    if bad:
        p.error(f"--models/--csv-models: unknown {sorted(bad)}; choose from {artifacts.MODELS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from onnxforge.bench.machine import machine_info, machine_slug
    from onnxforge.data import sample_texts

    started = time.perf_counter()
    t_start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {message}", file=sys.stderr, flush=True)

    machine = machine_info()
    label = args.label or machine_slug(machine)
    sections = args.sections.split(",")
    models = args.models.split(",")
    csv_models = [m for m in args.csv_models.split(",") if "csv" in sections]
    given = {}
    for item in args.artifact:
        name, _, path = item.partition("=")
        given[name] = Path(path)
    texts = sample_texts()
    results = {
        "kind": "onnxforge-benchmarks", "schema": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/run_all.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "quick": args.quick, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine,
        "data": f"onnxforge.data.sample_texts(): {len(texts)} real English texts (Debian package descriptions); "
                f"the CSV job cycles them to {args.csv_rows} rows",
        "seed": SEED, "models": {}, "sections": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"{label}.json", args.out / f"{label}.md"

    def save() -> None:
        results["seconds"] = time.perf_counter() - started
        results["machine_after"] = {"load_average": machine_info()["load_average"]}
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        md_path.write_text(report.markdown(results))

    needed = sorted(set(models if {"inference", "server", "tokenizers"} & set(sections) else []) | set(csv_models),
                    key=artifacts.MODELS.index)
    arts = {}
    for name in needed:
        info = artifacts.prepare(name, args.work, given=given.get(name), optimize=not args.no_optimize, log=log)
        results["models"][name] = info
        arts[name] = Path(info["artifact"])
    devices = tuple(args.device.split(","))

    failures = []
    for section in SECTIONS:
        if section not in sections:
            continue
        log(f"== {section}")
        try:
            run_section(section, args, results, arts, texts, models, csv_models, devices, log)
        except Exception as e:  # one broken section must not lose the others' figures
            import traceback

            failures.append(section)
            results["sections"][section] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            log(f"{section} failed: {type(e).__name__}: {e}")
        save()
    failures += report.failures(results)
    save()
    log(f"wrote {json_path} and {md_path} in {time.perf_counter() - started:.0f}s")
    print(md_path.read_text())
    if failures:
        log(f"failed: {', '.join(sorted(set(failures)))}")
    return 1 if failures else 0


def run_section(section, args, results, arts, texts, models, csv_models, devices, log) -> None:
    if section == "inference":
        results["sections"]["inference"] = {
            m: inference.run(arts[m], texts, devices=devices, batched=args.batched, quick=args.quick, log=log)
            for m in models}
    elif section == "tokenizers":
        results["sections"]["tokenizers"] = tokenization.run(
            arts[models[0]], texts[: args.tokenizer_texts], cycles=args.tokenizer_cycles, log=log)
    elif section == "csv":
        results["sections"]["csv"] = {
            m: csvjob.run(arts[m], texts, rows=args.csv_rows, naive_rows=args.naive_csv_rows,
                          batch_size=args.batch_size, naive_max_length=args.naive_max_length,
                          naive_chunk=args.naive_chunk, work=args.work / f"csv-{m}", log=log)
            for m in csv_models}
    elif section == "server":
        results["sections"]["server"] = {
            m: serving.run(arts[m], texts, loads=_loads(args.server_loads if m == "minilm" else args.base_server_loads),
                           max_batch=args.max_batch, naive_max_length=args.naive_max_length,
                           work=args.work / f"server-{m}", log=log, quick=args.quick)
            for m in models}


if __name__ == "__main__":
    sys.exit(main())
