"""`onnxforge build`: the whole pipeline as one command (the API is ``onnxforge.build.build``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import JsonOut, err_console, handle_errors, out_console, print_json_maybe
from ..sources.cli_options import AppDir, HiddenSize, ModelArg, NumHeads, NumLayers, Task, TokenizerPath, Weights

BuildOut = Annotated[Path | None, typer.Option("--out", "-o", help="Artifact folder to write (default: artifacts/minilm).", show_default=False)]
Config = Annotated[Path | None, typer.Option("--config", help="TOML options: onnxforge.toml or a pyproject.toml with a \\[tool.onnxforge] table (default: ./onnxforge.toml, else ./pyproject.toml's table). Flags win.", show_default=False)]
Precision = Annotated[list[str] | None, typer.Option("--precision", help="fp32 (fused), fp16, int8; repeatable or comma-separated (default: fp32,int8 on CPU, plus fp16 on CUDA).", show_default=False)]
BuildDevice = Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto (default: cpu).", show_default=False)]
Exporter = Annotated[str | None, typer.Option("--exporter", help="dynamo (default) or torchscript.", show_default=False)]
Opset = Annotated[int | None, typer.Option("--opset", help="ONNX opset (default: the exporter's).", show_default=False)]
Strict = Annotated[bool | None, typer.Option("--strict/--no-strict", help="Fail when optimize cannot fuse the model completely.", show_default=False)]
Smoke = Annotated[bool | None, typer.Option("--smoke/--no-smoke", help="Run the smoke test of every variant (default: on).", show_default=False)]
PackageOut = Annotated[Path | None, typer.Option("--package", help="Archive to write (default: <out>.tar.gz beside the folder).", show_default=False)]
Triton = Annotated[bool | None, typer.Option("--triton/--no-triton", help="Add a Triton model repository to the package.", show_default=False)]
BuildForce = Annotated[bool, typer.Option("--force", help="Redo every stage, and replace --out even if `build` did not write it.")]

_STYLES = {"passed": "green", "reused": "cyan", "failed": "bold red", "error": "bold red", "skipped": "yellow", "not run": "dim"}


class _Display:
    """A rich progress bar over the stages, a line per finished stage, a summary table."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = err_console()
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]}"), BarColumn(bar_width=20),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=self.console, transient=True)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, kind: str, payload) -> None:
        if kind == "plan":
            self.task = self.progress.add_task("", total=len(payload), stage="build")
        elif self.task is None:
            return
        elif kind == "start":
            self.progress.update(self.task, stage=payload, description="")
        elif kind == "progress":
            self.progress.update(self.task, description=f"[dim]{payload}[/]")
        elif kind == "done":
            style = _STYLES.get(payload.status, "")
            took = f" {payload.seconds:.1f}s" if payload.status != "reused" else ""
            self.progress.console.print(f"[{style}]{payload.status:>7}[/] {payload.name}{took}  [dim]{payload.detail}[/]",
                                        markup=True, highlight=False)
            self.progress.advance(self.task)


def render_summary(report, console) -> None:
    from rich.table import Table

    table = Table(title=f"build {report.out} ({report.device}, {', '.join(report.precisions)})", title_justify="left")
    for col in ("stage", "verdict", "seconds", "detail"):
        table.add_column(col, overflow="fold")
    for s in report.stages:
        style = _STYLES.get(s.status, "")
        seconds = f"{s.seconds:.1f}" if s.status in ("passed", "failed", "error") else ""
        table.add_row(s.name, f"[{style}]{s.status}[/]", seconds, s.detail)
    console.print(table)


@handle_errors
def build_command(
    model: ModelArg = None,
    out: BuildOut = None,
    config: Config = None,
    precision: Precision = None,
    device: BuildDevice = None,
    exporter: Exporter = None,
    opset: Opset = None,
    task: Task = None,
    weights: Weights = None,
    tokenizer: TokenizerPath = None,
    app_dir: AppDir = None,
    num_heads: NumHeads = None,
    hidden_size: HiddenSize = None,
    num_layers: NumLayers = None,
    strict: Strict = None,
    smoke: Smoke = None,
    package: PackageOut = None,
    triton: Triton = None,
    force: BuildForce = False,
    json_path: JsonOut = None,
) -> None:
    """Export, optimize, validate, smoke-test, package and verify MODEL (the built-in MiniLM by default).

    Stops with exit 1 at the first failed check; the artifact folder keeps the reports.
    Unchanged inputs reuse finished stages (content hashes in the manifest); --force redoes all.
    """
    from ..sources import SourceArgs
    from .options import BuildOptions, load_config
    from .runner import build

    values, config_file = load_config(config)
    source = SourceArgs(model=model, task=task, weights=weights, tokenizer=tokenizer, app_dir=app_dir,
                        num_heads=num_heads, hidden_size=hidden_size, num_layers=num_layers)
    cli = dict(source.to_dict(), out=str(out) if out else None, precision=precision, device=device, exporter=exporter,
               opset=opset, strict=strict, smoke=smoke, package=str(package) if package else None, triton=triton,
               force=force or None)
    options = BuildOptions.merged(cli, values, config_file)
    if config_file:
        err_console().print(f"[dim]options from {config_file}[/]", markup=True)
    with _Display() as display:
        report = build(options, events=display)
    render_summary(report, out_console())
    print_json_maybe(json_path, report.to_dict())
    if report.error is not None:
        raise report.error  # its message, hint and exit code (handle_errors)
    if not report:
        failed = report.failed_stage
        err_console().print(
            f"[bold red]check failed:[/] build stopped at {failed.name if failed else '?'}: {failed.detail if failed else ''}",
            markup=True,
        )
        err_console().print(f"  the reports are in {report.out}/onnxforge.json (stages.{failed.name if failed else ''})")
        raise typer.Exit(1)
    out_console().print(f"[green]built and verified[/]: {report.archive} (sha256 {report.archive_sha256})", markup=True)


COMMANDS = {"build": build_command}
