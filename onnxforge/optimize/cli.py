"""`onnxforge optimize`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..cli_common import ArtifactDir, JsonOut, err_console, handle_errors, out_console, print_json_maybe

Precision = Annotated[str, typer.Option(
    "--precision", help="fp32 (fused), fp16 (for CUDA), int8 (for CPU) or bf16 (an OpenVINO IR for CPUs with AMX or "
                        "AVX512-BF16).")]
Engine = Annotated[str | None, typer.Option(
    "--engine", help="ort (fused ONNX graph) or openvino (an IR under openvino/; int8 by NNCF). "
                     "Default: openvino for bf16, ort otherwise.", show_default=False)]
AllowLossy = Annotated[bool, typer.Option(
    "--allow-lossy", help="Keep an int8/bf16 variant that misses the quality gates (recorded as lossy, exit 0).")]
TargetDevice = Annotated[str | None, typer.Option(
    "--device", help="cpu or cuda: the provider the graph is built for; no GPU is needed to build either "
                     "(default: cuda for fp16, cpu otherwise).", show_default=False)]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 (and mark the variant failed) when the graph is not fully fused.")]


def _render(report, console) -> None:
    from rich.table import Table

    d = report.to_dict()
    f = d["fusion"]
    console.print(f"[bold]{d['file']}[/]: {d['precision']} for {d['target_device']}, fused by {f['route']}, "
                  f"{f['nodes_before']} -> {f['nodes_after']} nodes, {report.seconds:.1f}s", markup=True)
    # OpenVINO variants: fused by the plugin when it compiles, nothing to count here.
    table = Table(title_justify="left") if f["expected"] else None
    for col in (("fused op", "expected", "achieved", "") if table is not None else ()):
        table.add_column(col)
    for op, want in (f["expected"].items() if table is not None else ()):
        got = f["achieved"][op]
        if not want and not got:  # e.g. RotaryEmbedding on a model without rotary positions
            continue
        if got >= want:
            mark = "[green]ok[/]"
        elif op in f["optional"]:
            mark = "[yellow]optional, not fused[/]"
        else:
            mark = "[red]MISSING[/]"
        table.add_row(op, str(want), str(got), mark)
    if table is not None:
        console.print(table)
    for tool in f["tools"]:
        did = ", ".join(f"{op} {n}" for op, n in tool["fused"].items() if n) or "nothing new"
        console.print(f"  {tool['tool']}: {did}")
    for op, why in f["missing"].items():
        console.print(f"  [yellow]why {op} did not fuse:[/] {why}", markup=True)
    if d["int8"]:
        q = d["int8"]
        console.print(f"  int8: {q['quantized_nodes']['MatMul']} MatMul + {q['quantized_nodes']['Attention']} Attention "
                      f"quantized; outlier channels ({q['outliers']['method']}) in {len(q['outliers']['matmuls'])} MatMuls")
        kept = q["fp32_nodes"]["Attention"]
        if kept:
            console.print(f"  int8: {len(kept)} Attention left fp32: {next(iter(kept.values()))}")
    if d.get("openvino"):
        o = d["openvino"]
        extra = f"; NNCF {o['config']['name']}, {o['fake_quantize_nodes']} FakeQuantize" if o.get("config") else ""
        console.print(f"  openvino {o['openvino']}: runs with inference precision {o['inference_precision']}{extra}")
    if d["fp16"]:
        blocked = d["fp16"]["blocked_ops_present"]
        hot = d["fp16"]["overflow_scan"]["blocked_nodes"]
        console.print(f"  fp16: blocked op types present: {', '.join(f'{k} {v}' for k, v in blocked.items()) or 'none'}; "
                      f"nodes kept fp32 for overflow: {len(hot)}")
    for c in d["checks"]:
        verdict = "[green]passed[/]" if c["passed"] else "[red]FAILED[/]"
        parts = []
        for name, o in c["outputs"].items():
            if d["precision"] in ("int8", "bf16"):
                parts.append(f"{name} cosine min {o['pooled_min_cosine']:.5f} mean {o['pooled_mean_cosine']:.5f}")
            else:
                parts.append(f"{name} max abs {o['max_abs']:.2e}")
        console.print(f"  check {c['name']} vs {c['reference']}: {verdict}  " + "; ".join(parts), markup=True)
    for note in d["notes"]:
        console.print(f"  [dim]note:[/] {note}", markup=True)


@handle_errors
def optimize_command(
    artifact: ArtifactDir,
    precision: Precision = "fp32",
    device: TargetDevice = None,
    strict: Strict = False,
    engine: Engine = None,
    allow_lossy: AllowLossy = False,
    json_path: JsonOut = None,
) -> None:
    """Fuse the export (Attention, SkipLayerNorm, Gelu, EmbedLayerNorm) and write an fp32, fp16 or int8 variant."""
    from . import OptimizeOptions, optimize_artifact

    options = OptimizeOptions(precision=precision, device=device or ("cuda" if precision == "fp16" else "cpu"),
                              strict=strict, engine=engine, allow_lossy=allow_lossy)
    console = err_console()
    with console.status(f"optimizing ({options.precision})") as status:
        report = optimize_artifact(artifact, options, progress=lambda m: status.update(m))
    _render(report, out_console())
    print_json_maybe(json_path, report.to_dict())
    if not report.fully_fused:
        label = "check failed" if strict else "warning"
        err_console().print(f"[bold {'red' if strict else 'yellow'}]{label}:[/] {artifact} is NOT fully fused: "
                            + "; ".join(_missing(report.fusion)), markup=True)
    failed_checks = [c for c in report.parity_checks if not c.passed]
    if failed_checks:
        err_console().print("[bold red]check failed:[/] " + "; ".join(c.message() for c in failed_checks), markup=True)
    if failed_checks and allow_lossy and (report.fully_fused or not strict):
        err_console().print("[bold yellow]kept with --allow-lossy:[/] the variant is recorded as lossy", markup=True)
    elif not report:
        raise typer.Exit(1)


def _missing(fusion: dict[str, Any]) -> list[str]:
    return [f"{op} {fusion['achieved'][op]}/{fusion['expected'][op]}" for op in fusion["missing"] if op in fusion["required"]]


COMMANDS = {"optimize": optimize_command}
