"""Shared pieces of the typer CLI: option aliases, console, and error-to-exit-code mapping.

Kept free of heavy imports: every stage's ``cli.py`` imports this at start-up.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OnnxforgeError

# -- reusable option aliases (huggingface_hub's _cli_utils style) ----------------------
ArtifactDir = Annotated[Path, typer.Argument(help="Artifact folder written by `onnxforge export`.", show_default=False)]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the artifact to.")]
Force = Annotated[bool, typer.Option("--force", help="Replace existing output.")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or auto (cuda when ONNX Runtime can use it).")]
Variant = Annotated[str | None, typer.Option("--variant", help="Model variant to use (base, optimized, fp16, int8...).")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this path.")]

console_err = None
console_out = None


def err_console():
    global console_err
    if console_err is None:
        from rich.console import Console

        console_err = Console(stderr=True, highlight=False, soft_wrap=True)
    return console_err


def out_console():
    global console_out
    if console_out is None:
        from rich.console import Console

        console_out = Console(highlight=False, soft_wrap=True)
    return console_out


def debug_enabled() -> bool:
    return os.environ.get("ONNXFORGE_DEBUG", "").lower() in ("1", "true", "yes")


def _sigterm_to_interrupt(signum, frame):  # pragma: no cover - exercised by fault tests
    raise KeyboardInterrupt


# File-system errors that come from where the user pointed us (a full disk, a read-only
# or foreign folder, a path through a file), not from a bug: exit 2 with the path.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write somewhere else",
    errno.EFBIG: "the file is larger than this file system allows: write somewhere else",
    errno.EROFS: "that file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: choose a path you can write to (or read)",
    errno.EPERM: "operation not permitted: choose a path you can write to (or read)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder where a file was expected",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}


def environment_error(e: OSError) -> "OnnxforgeError | None":
    """A ``UserInputError`` for an ``OSError`` caused by the file system, else None."""
    from .errors import UserInputError

    hint = _ENVIRONMENT_ERRNOS.get(e.errno)
    if hint is None:
        return None
    where = f" {e.filename}" if e.filename else ""
    if e.filename2:
        where += f" -> {e.filename2}"
    reason = e.strerror or os.strerror(e.errno)
    return UserInputError(f"cannot use{where}: {reason}", hint=hint + "; nothing was left half-written")


def _report(e: OnnxforgeError) -> None:
    from rich.markup import escape

    label = "check failed" if e.exit_code == 1 else "error"
    # Messages quote user text (file names, CSV headers): never read it as markup.
    err_console().print(f"[bold red]{label}:[/] {escape(e.message)}", markup=True)
    if e.hint:
        err_console().print(f"  [dim]hint:[/] {escape(e.hint)}", markup=True)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; map onnxforge errors to exit codes with a short message.

    SIGTERM is turned into KeyboardInterrupt so the same cleanup (temporary files,
    staged folders) runs for Ctrl-C and for a CI job being cancelled.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with_debug = debug_enabled()
        try:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            pass
        try:
            return fn(*args, **kwargs)
        except OnnxforgeError as e:
            if with_debug:
                raise
            _report(e)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console().print("interrupted: nothing was left half-written")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except typer.Exit:
            raise
        except OSError as e:
            mapped = environment_error(e)
            if with_debug:
                raise
            if mapped is None:
                _internal(e)
            _report(mapped)
            raise typer.Exit(mapped.exit_code) from None
        except Exception as e:
            if with_debug:
                raise
            _internal(e)

    return wrapper


def _internal(e: BaseException) -> None:
    from rich.markup import escape

    err_console().print(
        f"[bold red]internal error:[/] {escape(f'{type(e).__name__}: {e}')}\n"
        "  This is a bug in onnxforge; re-run with --debug for the traceback and report it.",
        markup=True,
    )
    raise typer.Exit(EXIT_INTERNAL) from None


def print_json_maybe(path: Path | None, obj: Any) -> None:
    if path is not None:
        from .artifact import atomic_write_json

        atomic_write_json(Path(path), obj)


def parse_overrides(values: list[str] | None, flag: str) -> dict[str, float]:
    """Parse ``NAME=VALUE`` pairs (``--atol last_hidden_state=1e-3``); a bare VALUE sets ``*``."""
    from .errors import UserInputError

    parsed: dict[str, float] = {}
    for item in values or []:
        name, sep, value = item.rpartition("=")
        key = name if sep else "*"
        try:
            parsed[key] = float(value)
        except ValueError:
            raise UserInputError(f"{flag} {item!r} is not NAME=NUMBER or NUMBER") from None
    return parsed
