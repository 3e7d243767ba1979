"""`onnxforge package` and `onnxforge verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, Force, JsonOut, err_console, handle_errors, out_console, print_json_maybe

ArchiveOut = Annotated[Path, typer.Option("--out", "-o", help="The archive to write (.tar.gz), beside the artifact folder.", show_default=False)]
Variants = Annotated[list[str] | None, typer.Option("--variant", help="Variant to include (repeatable; default: every variant that did not fail a check).")]
Triton = Annotated[bool, typer.Option("--triton", help="Add a Triton Inference Server model repository (triton/<name>/config.pbtxt, 1/model.onnx).")]
TritonVariant = Annotated[str | None, typer.Option("--triton-variant", help="Variant Triton serves (default: optimized, else base, else the first).")]
TritonName = Annotated[str | None, typer.Option("--triton-name", help="Triton model name (default: from the archive name).")]
MaxBatch = Annotated[int, typer.Option("--max-batch-size", help="Triton max_batch_size (dynamic batching up to this).")]
PackagePath = Annotated[Path, typer.Argument(help="A .tar.gz written by `onnxforge package`, an unpacked package, or an artifact folder.", show_default=False)]
NoGoldens = Annotated[bool, typer.Option("--no-goldens", help="Check hashes, sizes and signatures only; do not run the models.")]


@handle_errors
def package_command(
    artifact: ArtifactDir,
    out: ArchiveOut,
    variant: Variants = None,
    triton: Triton = False,
    triton_variant: TritonVariant = None,
    triton_name: TritonName = None,
    max_batch_size: MaxBatch = 64,
    device: Device = "cpu",
    force: Force = False,
    json_path: JsonOut = None,
) -> None:
    """Write a reproducible .tar.gz: variants, tokenizer, goldens, sealed manifest, MODEL_CARD.md."""
    from .package import PackageOptions, package_artifact

    options = PackageOptions(variants=tuple(variant or ()), triton=triton, triton_variant=triton_variant,
                             triton_name=triton_name, max_batch_size=max_batch_size, device=device, force=force)
    with err_console().status("packaging") as status:
        report = package_artifact(artifact, out, options, progress=lambda m: status.update(m))
    print_json_maybe(json_path, report.to_dict())
    for note in report.notes:
        err_console().print(f"note: {note}")
    if not report:
        for failure in report.failures():
            err_console().print(f"[bold red]check failed:[/] {failure}", markup=True)
        err_console().print(f"  nothing was written; {artifact}/onnxforge.json records why (stages.package)")
        raise typer.Exit(1)
    out_console().print(
        f"packaged {', '.join(report.variants)} into {report.out} ({report.size / 1e6:.1f} MB, {len(report.files)} files"
        f"{', Triton repository ' + report.triton['folder'] if report.triton else ''}) in {report.seconds:.1f}s\n"
        f"  sha256 {report.sha256}"
    )


def render_verify(report, console) -> None:
    from rich.table import Table

    from .verify import check_dict

    table = Table(title=f"verify {report.path} ({report.kind})", title_justify="left")
    for col in ("check", "target", "status", "detail"):
        table.add_column(col, overflow="fold")
    styles = {"passed": "[green]passed[/]", "failed": "[bold red]FAILED[/]", "skipped": "[yellow]skipped[/]"}
    rows = [check_dict(c) for c in report.checks]
    shown = [r for r in rows if r["status"] != "passed" or r["kind"] != "file"]
    for r in shown:
        table.add_row(r["kind"], r["target"], styles[r["status"]], r["detail"])
    console.print(table)
    hidden = sum(1 for r in rows if r["status"] == "passed" and r["kind"] == "file")
    if hidden:
        console.print(f"  and {hidden} files whose sha256 and size match the manifest")


@handle_errors
def verify_command(
    path: PackagePath,
    device: Device = "cpu",
    no_goldens: NoGoldens = False,
    json_path: JsonOut = None,
) -> None:
    """Check every hash and size, no missing or extra file, graph signatures, and the golden texts. Exit 0 or 1."""
    from .verify import VerifyOptions, verify_path

    options = VerifyOptions(device=device, goldens=not no_goldens)
    with err_console().status("verifying") as status:
        report = verify_path(path, options, progress=lambda m: status.update(m))
    render_verify(report, out_console())
    print_json_maybe(json_path, report.to_dict())
    if not report:
        for failure in report.failures():
            err_console().print(f"[bold red]check failed:[/] {failure}", markup=True)
        raise typer.Exit(1)
    out_console().print(f"[green]verified[/]: {path} ({len(report.checks)} checks)", markup=True)


COMMANDS = {"package": package_command, "verify": verify_command}
