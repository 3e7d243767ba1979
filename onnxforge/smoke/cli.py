"""`onnxforge smoke` (thin: parse, call the API, report)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, JsonOut, Variant, err_console, handle_errors, out_console, print_json_maybe
from ..runtime.cli_options import Engine, MaxLength


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    from ..errors import UserInputError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserInputError(f"{flag} {text!r} is not a comma-separated list of integers", hint=f"e.g. {flag} 1,8,32") from None
    if not values:
        raise UserInputError(f"{flag} is empty", hint=f"e.g. {flag} 1,8,32")
    return values


def _fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


@handle_errors
def smoke_command(
    artifact_dir: ArtifactDir,
    device: Device = "cpu",
    variant: Variant = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A sentence to run besides the built-in ones (repeatable).")] = None,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Batch sizes to time, comma-separated.")] = "1,8,32",
    iterations: Annotated[int, typer.Option("--iterations", help="Timed runs per batch size (fewer if a batch size takes over 5 s).")] = 30,
    torch: Annotated[bool, typer.Option("--torch/--no-torch", help="Also compare with the PyTorch model rebuilt from the manifest.")] = True,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Record the result in the artifact's manifest.")] = True,
    max_length: MaxLength = None,
    engine: Engine = None,
    json_path: JsonOut = None,
) -> None:
    """Run real sentences through the artifact's tokenizer and model: goldens, PyTorch, latency. Exit 1 on a mismatch or a CUDA fallback."""
    from .smoke import SmokeOptions, smoke_artifact

    options = SmokeOptions(
        variant=variant, device=device, texts=tuple(text or ()), batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
        iterations=iterations, torch=torch, record=record, max_length=max_length, engine=engine,
    )
    with err_console().status("smoke") as status:
        report = smoke_artifact(artifact_dir, options, progress=lambda m: status.update(m))
    _render_smoke(report)
    print_json_maybe(json_path, report.to_dict())
    if not report:
        for failure in report.failures():
            err_console().print(f"[bold red]check failed:[/] {failure}", markup=True)
        raise typer.Exit(1)


def _render_smoke(report) -> None:
    from rich.table import Table

    console = out_console()
    engine = report.runtime.get("engine", "ort") if report.runtime else "ort"
    console.print(f"smoke {report.artifact} variant [bold]{report.variant}[/] ({report.precision}) on "
                  f"{report.device} via {engine} {report.providers}", markup=True)
    table = Table("check", "result", "max abs", "min cosine", "note")
    for c in report.checks:
        verdict = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        table.add_row(c.name, verdict, _fmt(c.metrics.get("max_abs")), _fmt(c.metrics.get("min_cosine"), ".7f"), c.detail)
    console.print(table)
    if not report.pytorch.get("ran"):
        console.print(f"PyTorch comparison skipped: {report.pytorch.get('reason')}")
    lat = Table("batch", "tokens (mean)", "p50 ms", "p95 ms", "p99 ms", "tokenize ms", "texts/s", title="latency (tokenize + run)")
    for row in report.latency:
        lat.add_row(str(row["batch_size"]), f"{row['mean_tokens']:.0f}", f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}",
                    f"{row['p99_ms']:.2f}", f"{row['tokenize_ms']:.2f}", f"{row['texts_per_s']:.1f}")
    if report.latency:
        console.print(lat)
    verdict = "[green]passed[/]" if report else "[red]FAILED[/]"
    console.print(f"smoke {verdict} in {report.seconds:.1f}s", markup=True)

COMMANDS = {"smoke": smoke_command}
