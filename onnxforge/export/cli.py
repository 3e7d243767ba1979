"""`onnxforge export` and `onnxforge inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import Force, JsonOut, OutDir, err_console, handle_errors, out_console, print_json_maybe
from ..sources.cli_options import AppDir, HiddenSize, ModelArg, NumHeads, NumLayers, Task, TokenizerPath, Weights

Exporter = Annotated[str, typer.Option("--exporter", help="dynamo (default: torch's supported exporter) or torchscript (fused fully by ORT's BERT optimizer).")]
Opset = Annotated[int | None, typer.Option("--opset", help="ONNX opset (default: 17 for torchscript, 18 for dynamo).")]
ExternalThreshold = Annotated[
    int | None,
    typer.Option("--external-data-threshold", help="Store weights in model.onnx.data above this many bytes (default: ~2 GB, the protobuf limit).", hidden=False),
]


@handle_errors
def export_command(
    model: ModelArg = None,
    out: OutDir = Path("artifacts/model"),
    exporter: Exporter = "dynamo",
    opset: Opset = None,
    task: Task = None,
    weights: Weights = None,
    tokenizer: TokenizerPath = None,
    app_dir: AppDir = None,
    num_heads: NumHeads = None,
    hidden_size: HiddenSize = None,
    num_layers: NumLayers = None,
    external_data_threshold: ExternalThreshold = None,
    force: Force = False,
) -> None:
    """Export a PyTorch encoder to ONNX with its tokenizer and a manifest, then check it at a new shape."""
    from ..export import ExportOptions, export_model
    from ..sources import SourceArgs

    source = SourceArgs(model=model, task=task, weights=weights, tokenizer=tokenizer, app_dir=app_dir,
                        num_heads=num_heads, hidden_size=hidden_size, num_layers=num_layers).resolve()
    kwargs = {} if external_data_threshold is None else {"external_data_threshold": external_data_threshold}
    options = ExportOptions(exporter=exporter, opset=opset, force=force, **kwargs)
    console = err_console()
    with console.status("exporting") as status:
        report = export_model(source, out, options, progress=lambda m: status.update(m))
    check = report.check
    verdict = "[green]passed[/]" if report else "[red]FAILED[/]"
    out_console().print(
        f"exported {out}/model.onnx in {report.seconds:.1f}s; parity at batch {check['batch']}, "
        f"sequence {check['sequence']} vs PyTorch: {verdict}",
        markup=True,
    )
    for name, d in check["outputs"].items():
        worst = "not finite" if d.get("max_abs") is None else f"{d['max_abs']:.2e}"
        out_console().print(f"  {name}: max abs {worst} (atol {check['atol']:g})")
    if not report:
        err_console().print(f"[bold red]check failed:[/] {'; '.join(report.failures())}", markup=True)
        err_console().print("  the graph does not compute what PyTorch computes at a shape other than the trace shape")
        raise typer.Exit(1)


@handle_errors
def inspect_command(
    path: Annotated[Path, typer.Argument(help="Artifact folder or .onnx file.", show_default=False)],
    json_path: JsonOut = None,
) -> None:
    """Show inputs/outputs, opset, op histogram, fused ops, parameters and file sizes."""
    from ..inspection import inspect_path, render

    report = inspect_path(path)
    render(report, out_console())
    print_json_maybe(json_path, report)


COMMANDS = {"export": export_command, "inspect": inspect_command}
