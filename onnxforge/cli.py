"""The typer CLI: a thin layer that parses options, calls the API and maps errors to exit codes.

Each stage folder has a ``cli.py`` exposing ``COMMANDS`` (name -> function); those
modules import only typer and the option aliases, so `onnxforge --help` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="onnxforge",
    help="PyTorch BERT -> checked, optimized, packaged ONNX. Exit codes: 0 ok, 1 a check failed, 2 bad input.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Pipeline order: this is also the order `onnxforge --help` lists them in.
_STAGE_CLIS = (
    "onnxforge.build.cli",
    "onnxforge.export.cli",
    "onnxforge.optimize.cli",
    "onnxforge.validate.cli",
    "onnxforge.smoke.cli",
    "onnxforge.serve.cli",
    "onnxforge.batch.cli",
    "onnxforge.bench.cli",
    "onnxforge.release.cli",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnxforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also ONNXFORGE_DEBUG=1).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    if debug:
        os.environ["ONNXFORGE_DEBUG"] = "1"


def _register() -> None:
    for module_name in _STAGE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # A stage not written yet (its folder or its cli.py missing) adds no commands.
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue
            raise
        for name, func in getattr(module, "COMMANDS", {}).items():
            app.command(name)(func)


_register()


def run() -> None:
    app()


if __name__ == "__main__":
    run()
