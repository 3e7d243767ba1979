"""`onnxforge batch` (thin: parse, call the API, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, JsonOut, Variant, err_console, handle_errors, out_console, print_json_maybe
from ..runtime.cli_options import MaxLength, Threads


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
    from .job import batch_file
    from .options import BatchOptions

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


COMMANDS = {"batch": batch_command}
