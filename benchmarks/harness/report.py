"""The results as Markdown tables, each beside the seed's published figures."""

from __future__ import annotations

from typing import Any

MODEL_LABELS = {"minilm": "MiniLM-L6 (22M)", "bert-base": "BERT-base size (110M, random weights)"}


def _f(x: Any, fmt: str = "{:.1f}", unit: str = "") -> str:
    if x is None:
        return "-"
    try:
        return fmt.format(x) + unit
    except (TypeError, ValueError):
        return str(x)


def _ratio(a: Any, b: Any) -> float | None:
    try:
        return a / b if a and b else None
    except TypeError:
        return None


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(cells: list[str]) -> list[str]:
    return [_row(cells), "|" + "|".join("---" for _ in cells) + "|"]


def inference_md(results: dict[str, Any]) -> list[str]:
    sec = results["sections"].get("inference")
    if not sec:
        return []
    first = next(iter(sec.values()))
    b = first["batched"]
    lines = ["## 1. Inference time per phrase", "",
             f"Batch 1 at the median token length of the real texts, and per phrase at batch {b}; "
             "PyTorch eager fp32 is the reference (ratio > 1: faster). Timed by `onnxforge bench`'s engine "
             "(blocks of calls per contender, cycles repeated, medians).", ""]
    lines += _head(["model", "contender", "device", "per phrase, batch 1", f"per phrase, batch {b}",
                    "vs torch fp32 (batch 1)", f"vs torch fp32 (batch {b})", "noise"])
    for model, data in sec.items():
        for r in data["rows"]:
            lines.append(_row([f"{MODEL_LABELS.get(model, model)}, {data['median_tokens']} tokens", r["contender"], r["device"],
                               _f(r["per_phrase_ms_batch1"], "{:.2f}", " ms"), _f(r["per_phrase_ms_batched"], "{:.2f}", " ms"),
                               _f(r["speedup_batch1"], "{:.2f}", "x"), _f(r["speedup_batched"], "{:.2f}", "x"),
                               _f(r["noise_batch1"] * 100 if r["noise_batch1"] is not None else None, "{:.0f}", "%")]))
    for name, ms in results["seed"]["inference_per_phrase_ms"].items():
        lines.append(_row(["seed: BERT (bert-base-cased)", name, "6-core CPU" if "CPU" in name else "GTX 1050",
                           f"~{ms:g} ms", "-", "-", "-", "-"]))
    return lines + [""]


def tokenizers_md(results: dict[str, Any]) -> list[str]:
    sec = results["sections"].get("tokenizers")
    if not sec:
        return []
    lines = ["## 2. Tokenizer time per phrase", "",
             f"{sec['texts']} real texts, special tokens, truncation to {sec['max_length']}, no padding; median of "
             f"{sec['cycles']} passes. In transformers 5 the pure-Python WordPiece tokenizer is `BertTokenizerLegacy` "
             "(the name `BertTokenizer` now means the Rust-backed one).", ""]
    lines += _head(["tokenizer", "per phrase", "vs pure Python", "same ids as pure Python"])
    for r in sec["rows"]:
        lines.append(_row([r["contender"], _f(r["us_per_phrase"], "{:.0f}", " µs"), _f(r["speedup_vs_pure_python"], "{:.1f}", "x"),
                           "yes" if r["ids_differ_from_pure_python"] == 0 else f"{r['ids_differ_from_pure_python']} texts differ"]))
    for name, us in results["seed"]["tokenizer_us_per_phrase"].items():
        lines.append(_row([f"seed: {name}", f"{us} µs", "-", "-"]))
    return lines + [""]


def csv_md(results: dict[str, Any]) -> list[str]:
    sec = results["sections"].get("csv")
    if not sec:
        return []
    seed = results["seed"]["csv_10k"]
    lines = ["## 3. Batch inference on a CSV", ""]
    for model, d in sec.items():
        rows = d["rows"]
        of, nv, pc = d.get("onnxforge", {}), d.get("naive", {}), d.get("pure_compute", {})
        phases = nv.get("phases", {})
        scaled = nv.get("scale", 1) != 1
        lines += [f"**{MODEL_LABELS.get(model, model)}**, {d['data']}; `onnxforge batch` with variant "
                  f"`{d['variant']}`, batch size {d['batch_size']}. Naive pipeline: the seed's design (pandas chunks of "
                  f"{phases.get('chunk_size', '?')}, fixed padding to {phases.get('max_length', '?')}, one session call per "
                  f"chunk, `model.onnx`)" + (f", run on {phases.get('rows')} rows and scaled x{nv.get('scale'):.0f} "
                                               "(every row costs the same under fixed padding)" if scaled else "") + ".", ""]
        lines += _head([f"{rows} phrases", "seed Python", "seed Rust", "naive (seed's way, here)", "onnxforge batch (here)",
                        "pure compute (here)"])
        sc = nv.get("scale", 1)
        ophases = of.get("phases", {})
        naive_total = nv.get("estimated_total_s") if scaled else nv.get("wall_s")
        of_total = of.get("wall_s")
        lines.append(_row(["Booting time", f"{seed['Python']['boot_s']:g} s", f"{seed['Rust']['boot_s']:g} s",
                           _f(phases.get("boot_s"), "{:.2f}", " s"), _f(ophases.get("boot_s"), "{:.2f}", " s"), "-"]))
        lines.append(_row(["Encoding time", f"{seed['Python']['encode_s']:g} s", f"{seed['Rust']['encode_s']:g} s",
                           _f(phases.get("encode_s", 0) * sc if phases else None, "{:.2f}", " s"),
                           _f(ophases.get("read_tokenize_s"), "{:.2f}", " s (read + tokenize, overlapped)"),
                           _f(pc.get("encode_s"), "{:.2f}", " s")]))
        lines.append(_row(["DL inference time", f"{seed['Python']['inference_s']:g} s", f"{seed['Rust']['inference_s']:g} s",
                           _f(phases.get("inference_s", 0) * sc if phases else None, "{:.1f}", " s"),
                           _f(ophases.get("inference_s"), "{:.1f}", " s"), _f(pc.get("inference_s"), "{:.1f}", " s")]))
        lines.append(_row(["Total time", f"{seed['Python']['total_s']:g} s", f"{seed['Rust']['total_s']:g} s",
                           _f(naive_total, "{:.1f}", " s") + (" (scaled)" if scaled else ""), _f(of_total, "{:.1f}", " s"), "-"]))
        lines.append(_row(["Peak memory", f"{seed['Python']['memory_gib']:g} GiB", f"{seed['Rust']['memory_gib']:g} GiB",
                           _f(nv.get("peak_rss_mib"), "{:.0f}", " MiB") + (f" ({phases.get('rows')} rows)" if scaled else ""),
                           _f(of.get("peak_rss_mib"), "{:.0f}", " MiB"), "-"]))
        vs_pure = _ratio(of_total, pc.get("inference_s"))
        vs_naive = _ratio(naive_total, of_total)
        lines += ["", f"Targets: total <= 1.15x pure compute: **{_f(vs_pure, '{:.2f}', 'x')}**; "
                      f">= 2x faster than the naive pipeline: **{_f(vs_naive, '{:.2f}', 'x')}**. Pure compute: every row "
                      f"tokenized beforehand, sorted by length, batches of {pc.get('batch_size', '?')}, only the ORT calls timed "
                      f"({pc.get('tokens', '?')} tokens, {pc.get('padded_tokens', '?')} with padding).", ""]
        ag = d.get("agreement")
        if ag:
            lines += [f"Same results: cosine between the two pipelines' embeddings over {ag['rows_compared']} rows "
                      f"(min {_f(ag['min_cosine'], '{:.6f}')}, mean {_f(ag['mean_cosine'], '{:.6f}')}); "
                      f"{ag['rows_truncated_by_naive']} rows longer than the naive fixed length left out.", ""]
        if of.get("skipped"):
            lines += [f"`onnxforge batch`: {of['skipped']}.", ""]
    return lines


def server_md(results: dict[str, Any]) -> list[str]:
    sec = results["sections"].get("server")
    if not sec:
        return []
    seed = results["seed"]["server"]
    lines = ["## 4. Serving over HTTP", ""]
    for model, d in sec.items():
        comp = d.get("components", {}).get("ms", {})
        of, nv = d.get("onnxforge", {}), d.get("naive", {})
        loads = d["loads"]

        def run_at(side: dict, c: int) -> dict:
            return next((r for r in side.get("runs", []) if r["concurrency"] == c), {})

        lines += [f"**{MODEL_LABELS.get(model, model)}**: {d['requests']}; loopback; the load generator shares the CPU "
                  f"with the server. Naive server: FastAPI `async def`, BertTokenizerFast, padding to "
                  f"{d.get('components', {}).get('naive_padded_to', '?')}, one ORT call per request on `model.onnx`. "
                  f"`onnxforge serve`: variant `{d.get('components', {}).get('variant', '?')}`, micro-batching.", ""]
        lines += _head(["", "seed FastAPI", "seed Actix", "naive (seed's way, here)", "onnxforge serve (here)"])

        def both(fn) -> list[str]:
            return [fn(nv, "naive"), fn(of, "onnxforge")]

        lines.append(_row(["Encoding time", f"{seed['Python FastAPI']['encode_us']:g} µs", f"{seed['Rust Actix Web']['encode_us']:g} µs",
                           _f(comp.get("naive encode", 0) * 1e3 if comp else None, "{:.0f}", " µs"),
                           _f(comp.get("onnxforge encode", 0) * 1e3 if comp else None, "{:.0f}", " µs")]))
        lines.append(_row(["ONNX inference time", f"~{seed['Python FastAPI']['inference_ms']:g} ms", f"~{seed['Rust Actix Web']['inference_ms']:g} ms",
                           _f(comp.get("naive inference"), "{:.2f}", " ms"), _f(comp.get("onnxforge inference"), "{:.2f}", " ms")]))
        c1n, c1o = run_at(nv, 1), run_at(of, 1)
        over_n = (c1n.get("mean_ms") or 0) - comp.get("naive encode", 0) - comp.get("naive inference", 0) if c1n and comp else None
        over_o = (c1o.get("mean_ms") or 0) - comp.get("onnxforge encode", 0) - comp.get("onnxforge inference", 0) if c1o and comp else None
        lines.append(_row(["API overhead (c=1 mean - encoding - inference)", f"~{seed['Python FastAPI']['overhead_ms']:g} ms", f"~{seed['Rust Actix Web']['overhead_ms']:g} ms",
                           _f(over_n, "{:.2f}", " ms"), _f(over_o, "{:.2f}", " ms")]))
        for c, _n in loads:
            rn, ro = run_at(nv, c), run_at(of, c)
            seed_mean = (f"{seed['Python FastAPI']['mean_ms']:g} ms", f"{seed['Rust Actix Web']['mean_ms']:g} ms") if c == 1 else ("-", "-")
            seed_rps = (f"{seed['Python FastAPI']['rps']:g}", f"{seed['Rust Actix Web']['rps']:g}") if c == 1 else ("-", "-")
            lines.append(_row([f"Mean latency, concurrency {c}", *seed_mean, _f(rn.get("mean_ms"), "{:.1f}", " ms"), _f(ro.get("mean_ms"), "{:.1f}", " ms")]))
            lines.append(_row([f"p99 latency, concurrency {c}", "-", "-", _f(rn.get("p99_ms"), "{:.1f}", " ms"), _f(ro.get("p99_ms"), "{:.1f}", " ms")]))
            lines.append(_row([f"Requests/s, concurrency {c}", *seed_rps, _f(rn.get("requests_per_s"), "{:.1f}"), _f(ro.get("requests_per_s"), "{:.1f}")]))
            errs = (rn.get("errors") or 0) + (ro.get("errors") or 0)
            if errs:
                lines.append(_row([f"errors, concurrency {c}", "-", "-", str(rn.get("errors")), str(ro.get("errors"))]))
        top = max(c for c, _ in loads)
        gain = _ratio(run_at(of, top).get("requests_per_s"), run_at(nv, top).get("requests_per_s"))
        lines += ["", f"Target: requests/s at concurrency {top} >= 3x the naive server: **{_f(gain, '{:.2f}', 'x')}**. "
                      f"Boot to ready: naive {_f(nv.get('boot_s'), '{:.1f}', ' s')}, onnxforge {_f(of.get('boot_s'), '{:.1f}', ' s')}.", ""]
        if of.get("skipped"):
            lines += [f"`onnxforge serve`: {of['skipped']}.", ""]
    return lines


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m.get("versions", {})
    gpu = ", ".join(g["name"] for g in m.get("gpus", [])) or "none"
    la = m.get("load_average") or []
    la_after = (results.get("machine_after") or {}).get("load_average") or []
    lines = [
        f"# onnxforge benchmarks on {m.get('cpu')} ({m.get('usable_cores')} cores), GPU: {gpu}", "",
        f"Measured {results['created']} with `{results['command']}`" + (" (**quick mode: rough smoke numbers**)" if results.get("quick") else "")
        + f"; {results.get('seconds', 0):.0f} s.",
        f"Versions: onnxruntime {v.get('onnxruntime')}, torch {v.get('torch')}, transformers {v.get('transformers')}, "
        f"tokenizers {v.get('tokenizers')}, python {v.get('python')}. CPU flags: {' '.join(m.get('cpu_flags', []))}.",
        f"Load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in la) or '?'}, at end "
        f"{'/'.join(f'{x:.1f}' for x in la_after) or '?'}: a load above the core count means other work shared the CPU.",
        f"Data: {results['data']}.",
        f"Seed figures: {results['seed']['hardware']} (a different machine and model: compare designs and ratios, not raw times).",
        "",
    ]
    for section, data in results["sections"].items():
        if isinstance(data, dict) and "error" in data:
            lines += [f"**{section} failed**: {data['error']}", ""]
    bad = failures(results)
    if bad:
        lines += [f"**Did not complete:** {', '.join(bad)} (see the JSON for each error).", ""]
    ok = {k: v for k, v in results["sections"].items() if not (isinstance(v, dict) and "error" in v)}
    view = dict(results, sections=ok)
    lines += inference_md(view) + tokenizers_md(view) + csv_md(view) + server_md(view)
    return "\n".join(lines) + "\n"


def failures(results: dict[str, Any]) -> list[str]:
    """What did not run or did not work: failed sections, subprocesses, servers, requests."""
    found = []
    for section, data in results["sections"].items():
        if not isinstance(data, dict):
            continue
        if "error" in data:
            found.append(section)
            continue
        for model, d in data.items():
            if not isinstance(d, dict):
                continue
            for side in ("onnxforge", "naive"):
                part = d.get(side)
                if not isinstance(part, dict) or part.get("skipped"):
                    continue
                bad_rc = part.get("returncode") not in (None, 0) or part.get("timed_out")
                bad_runs = any(r.get("errors") for r in part.get("runs", []))
                if "error" in part or bad_rc or bad_runs:
                    found.append(f"{section}/{model}/{side}")
    return found
