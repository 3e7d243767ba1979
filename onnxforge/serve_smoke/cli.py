"""`onnxforge smoke`, `onnxforge serve` and `onnxforge batch` (thin: parse, call the API, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, JsonOut, Variant, err_console, handle_errors, out_console, print_json_maybe

MaxLength = Annotated[int | None, typer.Option("--max-length", help="Truncate texts to this many tokens (default: the tokenizer's model_max_length, at most the model's positions).")]
Threads = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime intra-op threads (default: one per physical core).")]


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
    json_path: JsonOut = None,
) -> None:
    """Run real sentences through the artifact's tokenizer and model: goldens, PyTorch, latency. Exit 1 on a mismatch or a CUDA fallback."""
    from .smoke import SmokeOptions, smoke_artifact

    options = SmokeOptions(
        variant=variant, device=device, texts=tuple(text or ()), batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
        iterations=iterations, torch=torch, record=record, max_length=max_length,
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
    console.print(f"smoke {report.artifact} variant [bold]{report.variant}[/] ({report.precision}) on "
                  f"{report.device} {report.providers}", markup=True)
    table = Table("check", "result", "max abs", "min cosine", "note")
    for c in report.checks:
        verdict = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]"
        table.add_row(c["name"], verdict, _fmt(c.get("max_abs")), _fmt(c.get("min_cosine"), ".7f"), c.get("reason") or "")
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


@handle_errors
def serve_command(
    artifact_dir: ArtifactDir,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port, printed at start).")] = 8000,
    device: Device = "cpu",
    variant: Variant = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most texts per ONNX Runtime call (concurrent requests are batched).")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Under load, how long to wait for more requests to fill a batch.")] = 2.0,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Most texts per request (more: 413).")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Most characters per text (more: 413).")] = 20_000,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Texts waiting for the model before requests get 503 + Retry-After.")] = 4096,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Seconds a request waits for its result before a 503 + Retry-After.")] = 60.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", help="Seconds a client may take to send its body (then 408).")] = 30.0,
    max_connections: Annotated[int, typer.Option("--max-connections", help="Connections served at once; more get 503.")] = 1024,
    max_length: MaxLength = None,
    threads: Threads = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the model over HTTP: POST /embed and /predict (JSON {"texts": [...]}), GET /health and /ready."""
    from .runtime import Runtime
    from .server import ServeOptions, serve

    options = ServeOptions(host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, max_texts_per_request=max_texts,
                           max_chars_per_text=max_chars, max_queue_texts=max_queue, log_level=log_level,
                           request_timeout_s=request_timeout, body_timeout_s=body_timeout, max_connections=max_connections)
    runtime = Runtime.load(artifact_dir, variant, device, max_length=max_length, threads=threads)
    try:
        serve(runtime, options, announce=lambda line: err_console().print(line, markup=False))
    except KeyboardInterrupt:
        pass  # uvicorn already finished the requests in flight
    err_console().print("server stopped")


@handle_errors
def batch_command(
    artifact_dir: ArtifactDir,
    input_csv: Annotated[Path, typer.Argument(help="CSV file with a header row (UTF-8, RFC 4180).", show_default=False)],
    column: Annotated[str, typer.Option("--column", "-c", help="Column holding the texts.")] = "text",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (replaced atomically when complete).")] = Path("predictions.csv"),
    fmt: Annotated[str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from --out's suffix).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per ONNX Runtime call (length-sorted).")] = 32,
    keep: Annotated[str | None, typer.Option("--keep", help="Comma-separated input columns to carry (default: all but --column).")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalize embeddings.")] = True,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator of the input CSV.")] = ",",
    device: Device = "cpu",
    variant: Variant = None,
    max_length: MaxLength = None,
    threads: Threads = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row is empty, undecodable, or has a different number of fields than the header.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar (on a terminal).")] = True,
    json_path: JsonOut = None,
) -> None:
    """Run a CSV column through the model; rows keep their order and other columns. Empty or undecodable rows are reported."""
    from .batch import BatchOptions, batch_file

    keep_cols = None if keep is None else tuple(k.strip() for k in keep.split(",") if k.strip())
    options = BatchOptions(column=column, format=fmt, batch_size=batch_size, keep=keep_cols, normalize=normalize,
                           delimiter=delimiter, variant=variant, device=device, max_length=max_length, threads=threads)
    console = err_console()
    if progress and console.is_terminal:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("batch", total=None)

            def update(rows: int, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=f"{rows:,} rows")

            report = batch_file(artifact_dir, input_csv, out, options, progress=update)
    else:
        report = batch_file(artifact_dir, input_csv, out, options)
    _render_batch(report)
    print_json_maybe(json_path, report.to_dict())
    if strict and not report:
        from rich.markup import escape

        err_console().print(f"[bold red]check failed:[/] --strict: {report.error_count} row(s) without a result "
                            f"({report.ragged_count} of them ragged); {escape(report.output)} lists each in its error column",
                            markup=True)
        raise typer.Exit(1)


def _render_batch(report) -> None:
    console = out_console()
    console.print(f"wrote {report.rows:,} rows to {report.output} ({report.format}) in {report.seconds:.2f}s "
                  f"({report.rows_per_s:,.0f} rows/s; model '{report.variant}' on {report.device}; columns "
                  f"{', '.join(report.result_columns)}, error)")
    if report.empty_count:
        rows = ", ".join(map(str, report.empty_rows)) + (" ..." if report.empty_count > len(report.empty_rows) else "")
        err_console().print(f"[yellow]{report.empty_count} empty row(s)[/] (data rows {rows}): error column set, no result", markup=True)
    if report.undecodable_count:
        rows = ", ".join(map(str, report.undecodable_rows)) + (" ..." if report.undecodable_count > len(report.undecodable_rows) else "")
        err_console().print(f"[yellow]{report.undecodable_count} undecodable row(s)[/] (data rows {rows}): not UTF-8, error column set",
                            markup=True)
    if report.truncated_count:
        err_console().print(f"{report.truncated_count} text(s) were longer than the model's maximum and were truncated")
    if report.ragged_count:
        rows = ", ".join(map(str, report.ragged_rows)) + (" ..." if report.ragged_count > len(report.ragged_rows) else "")
        err_console().print(f"[yellow]{report.ragged_count} row(s) had a different number of fields than the header[/] "
                            f"(data rows {rows}): error column set, no result", markup=True)


COMMANDS = {"smoke": smoke_command, "serve": serve_command, "batch": batch_command}
