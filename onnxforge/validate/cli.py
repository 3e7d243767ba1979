"""`onnxforge validate`: parity of an artifact variant against PyTorch, for people and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, Device, JsonOut, Variant, err_console, handle_errors, out_console, parse_overrides

TextFile = Annotated[Path | None, typer.Option("--text", help="Real texts: a .txt file (one text a line) or a CSV with --column (default: a built-in sample of 200 real sentences).")]
Column = Annotated[str | None, typer.Option("--column", help="CSV column holding the texts.")]
Atol = Annotated[list[str] | None, typer.Option("--atol", help="OUTPUT=VALUE (or VALUE for every output); repeatable; inf switches the element-wise check off.")]
Rtol = Annotated[list[str] | None, typer.Option("--rtol", help="OUTPUT=VALUE (or VALUE for every output); repeatable.")]
MinCosine = Annotated[list[str] | None, typer.Option("--min-cosine", help="OUTPUT=VALUE: smallest per-sample cosine similarity; repeatable.")]
MinArgmax = Annotated[list[str] | None, typer.Option("--min-argmax", help="OUTPUT=VALUE: smallest argmax agreement for logits; repeatable.")]
Shape = Annotated[list[str] | None, typer.Option("--shape", help="BATCHxSEQUENCE (e.g. 3x33), repeatable; replaces the default shape plan.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the random inputs.")]
MaxTexts = Annotated[int, typer.Option("--max-texts", help="Use at most this many texts of --text.")]
JunitOut = Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report (one testcase per output and shape group).")]
Threads = Annotated[int | None, typer.Option("--threads", help="Intra-op threads for PyTorch and ONNX Runtime (default: 1 for PyTorch on models under 50M parameters, else the libraries' defaults).")]
NoLocalize = Annotated[bool, typer.Option("--no-localize", help="Skip localizing the first departing layer on failure.")]


@handle_errors
def validate_command(
    artifact: ArtifactDir,
    variant: Variant = None,
    text: TextFile = None,
    column: Column = None,
    atol: Atol = None,
    rtol: Rtol = None,
    min_cosine: MinCosine = None,
    min_argmax: MinArgmax = None,
    device: Device = "cpu",
    shape: Shape = None,
    seed: Seed = 0,
    max_texts: MaxTexts = 1000,
    json_path: JsonOut = None,
    junit: JunitOut = None,
    threads: Threads = None,
    engine: Annotated[str | None, typer.Option("--engine", help="ort or openvino (default: the engine the variant records).", show_default=False)] = None,
    no_localize: NoLocalize = False,
) -> None:
    """Compare an artifact variant with the PyTorch model it came from. Exit 0 all pass, 1 any fail, 2 bad input."""
    from .options import ValidateOptions, parse_shape
    from .report import render, render_failures, write_json, write_junit
    from .validator import validate_artifact

    options = ValidateOptions(
        variant=variant or "base",
        text_file=text,
        column=column,
        atol=parse_overrides(atol, "--atol"),
        rtol=parse_overrides(rtol, "--rtol"),
        min_cosine=parse_overrides(min_cosine, "--min-cosine"),
        min_argmax=parse_overrides(min_argmax, "--min-argmax"),
        device=device,
        shapes=tuple(parse_shape(s) for s in shape) if shape else None,
        seed=seed,
        max_texts=max_texts,
        localize=not no_localize,
        threads=threads,
        engine=engine,
    )
    from ..errors import CheckFailed

    try:
        with err_console().status("validating") as status:
            result = validate_artifact(artifact, options, progress=lambda m: status.update(m))
    except CheckFailed as e:  # nothing was compared (CUDA fell back): CI still gets its reports
        from .report import write_error_reports

        write_error_reports(options.variant, e.message, json_path, junit)
        raise
    render(result, out_console())
    if json_path is not None:
        write_json(result, json_path)
    if junit is not None:
        write_junit(result, junit)
    if result:
        out_console().print(f"[green]passed[/]: every output of '{result.variant}' matches PyTorch within tolerance "
                            f"({len(result.checks)} checks)", markup=True)
        return
    render_failures(result, err_console())
    raise typer.Exit(1)


COMMANDS = {"validate": validate_command}
