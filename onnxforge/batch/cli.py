"""`onnxforge batch` (thin: parse, call the API, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, JsonOut, Variant, err_console, handle_errors, out_console, print_json_maybe
from ..runtime.cli_options import MaxLength, RuntimeEngine, Threads


Engine = Annotated[str, typer.Option("--engine", help="Where the job runs: local (this process) or ray (a Ray cluster: an actor pool, Parquet shards, --resume).")]
RayAddress = Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster (auto, or ray://host:10001); default: start a local one for the job and stop it after.")]
Actors = Annotated[int | None, typer.Option("--actors", help="Ray actors, one runtime each (default: one per --cpus-per-actor CPUs, or per --gpus-per-actor GPU share).")]
GpusPerActor = Annotated[float, typer.Option("--gpus-per-actor", help="GPU share per Ray actor (0.25: four actors per GPU); above 0 runs on CUDA.")]
CpusPerActor = Annotated[float, typer.Option("--cpus-per-actor", help="CPUs per Ray actor (also its ONNX Runtime threads unless --threads).")]
ShardRows = Annotated[int, typer.Option("--shard-rows", help="Rows per Ray shard (one Parquet file each; the unit --resume skips).")]
Resume = Annotated[bool, typer.Option("--resume", help="Ray: keep the shards a previous run of the same job wrote and verified; run the rest.")]
InputFormat = Annotated[str | None, typer.Option("--input-format", help="Ray: csv, jsonl or parquet (default: from the input's suffix).")]
OnBadRows = Annotated[str, typer.Option("--on-bad-rows", help="A record the input format rejects (a CSV quote that never closes): fail (exit 2, nothing written) or report (to the bad-row report, the job goes on).")]
MaxBadFraction = Annotated[float | None, typer.Option("--max-bad-fraction", help="Exit 1 when more than this fraction of the rows gets no result (default: only when every row fails).")]


@handle_errors
def batch_command(
    artifact_dir: ArtifactDir,
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="CSV file with a header row (UTF-8, RFC 4180); with --engine ray also JSONL or Parquet, a folder of them, or a URI (s3://...).", show_default=False)],
    column: Annotated[str, typer.Option("--column", "-c", help="Column holding the texts.")] = "text",
    out: Annotated[str, typer.Option("--out", "-o", help="Output file (replaced atomically when complete); with --engine ray a folder of Parquet shards unless it ends in .csv/.jsonl/.parquet.")] = "predictions.csv",
    fmt: Annotated[str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from --out's suffix).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per ONNX Runtime call (length-sorted).")] = 32,
    keep: Annotated[str | None, typer.Option("--keep", help="Comma-separated input columns to carry (default: all but --column).")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalize embeddings.")] = True,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator of the input CSV.")] = ",",
    device: Device = "cpu",
    variant: Variant = None,
    max_length: MaxLength = None,
    threads: Threads = None,
    engine: Engine = "local",
    runtime_engine: RuntimeEngine = None,
    prompt_name: Annotated[str | None, typer.Option("--prompt-name", help="The model's prompt to put in front of every text (sentence-transformers' prompt_name; default: the model's default prompt, if any; \"\" for none).")] = None,
    ray_address: RayAddress = None,
    actors: Actors = None,
    gpus_per_actor: GpusPerActor = 0.0,
    cpus_per_actor: CpusPerActor = 1.0,
    shard_rows: ShardRows = 1000,
    resume: Resume = False,
    input_format: InputFormat = None,
    on_bad_rows: OnBadRows = "fail",
    max_bad_fraction: MaxBadFraction = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row gets no result (--max-bad-fraction 0).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar: rows, rows/s, ETA (on a terminal).")] = True,
    json_path: JsonOut = None,
) -> None:
    """Run a text column through the model, here or on a Ray cluster. Every row ends in the output (with a result or an error cell) or in the bad-row report."""
    from ..errors import UserInputError
    from ..vocab import BATCH_ENGINES, ENGINES
    from .bad_rows import failures
    from .options import BatchOptions
    from .progress import batch_progress

    if engine not in BATCH_ENGINES:
        raise UserInputError(f"--engine {engine} is not known", hint=f"choose one of {', '.join(BATCH_ENGINES)}")
    if runtime_engine is not None and runtime_engine not in ENGINES:
        raise UserInputError(f"--runtime-engine {runtime_engine} is not known", hint=f"choose one of {', '.join(ENGINES)}")
    keep_cols = None if keep is None else tuple(k.strip() for k in keep.split(",") if k.strip())
    options = BatchOptions(column=column, format=fmt, batch_size=batch_size, keep=keep_cols, normalize=normalize,
                           delimiter=delimiter, variant=variant, device=device, max_length=max_length, threads=threads,
                           on_bad_rows=on_bad_rows, max_bad_fraction=0.0 if strict else max_bad_fraction,
                           runtime_engine=runtime_engine, prompt_name=prompt_name)
    ray_only = {"--ray-address": ray_address is not None, "--actors": actors is not None, "--gpus-per-actor": gpus_per_actor != 0.0,
                "--cpus-per-actor": cpus_per_actor != 1.0, "--shard-rows": shard_rows != 1000, "--resume": resume,
                "--input-format": input_format is not None}

    def announce(line: str) -> None:  # the first line: which variant and engine run
        out_console().print(line, markup=False, highlight=False)

    with batch_progress(err_console(), progress) as update:
        if engine == "ray":
            from .ray_job import RayOptions, ray_batch

            ray_options = RayOptions(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                                     cpus_per_actor=cpus_per_actor, shard_rows=shard_rows, resume=resume, input_format=input_format)
            report = ray_batch(artifact_dir, input_path, out, options, ray_options,
                               progress=lambda done, total: update(done, done, total))
        else:
            given = [flag for flag, set_ in ray_only.items() if set_]
            if given:
                raise UserInputError(f"{', '.join(given)} only apply to --engine ray", hint="add --engine ray, or leave them out")
            from .job import batch_file

            report = batch_file(artifact_dir, Path(input_path), Path(out), options, progress=update, announce=announce)
    if engine == "ray":
        _render_ray(report)
    else:
        _render_batch(report)
    print_json_maybe(json_path, report.to_dict())
    failed = failures(report.counts(), options.bad_rows)
    if failed:
        from rich.markup import escape

        for failure in failed:
            err_console().print(f"[bold red]check failed:[/] {escape(failure)}; each such row has its reason in "
                                f"{escape(report.output)}'s error column or the bad-row report", markup=True)
        raise typer.Exit(1)


def _render_ray(report) -> None:
    c = report.counts()
    out_console().print(f"wrote {c.written:,} rows to {report.output} ({report.format}) in {report.seconds:.2f}s "
                        f"({report.rows_per_s:,.0f} rows/s; Ray, {report.actors} actor(s), {report.shards} shard(s)"
                        f"{f', {report.shards_skipped} already written' if report.shards_skipped else ''}; "
                        f"model '{report.variant}' on {report.device})")
    if report.error_count:
        err_console().print(f"[yellow]{report.error_count} row(s) without a result[/]: their error column says why", markup=True)
    if c.reported:
        err_console().print(f"[yellow]{c.reported} record(s) the input format rejects[/] went to {report.bad_rows_path}",
                            markup=True)
    if report.truncated_count:
        err_console().print(f"{report.truncated_count} text(s) were longer than the model's maximum and were truncated")


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
    if report.bad:
        lines = ", ".join(str(b["line"]) for b in report.bad[:10]) + (" ..." if len(report.bad) > 10 else "")
        err_console().print(f"[yellow]{len(report.bad)} record(s) the CSV format rejects[/] (lines {lines}) went to "
                            f"{report.bad_rows_path}", markup=True)


COMMANDS = {"batch": batch_command}
