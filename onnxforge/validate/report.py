"""Reports of a validation: a rich table, a JSON file, and a JUnit XML file for CI."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..artifact import atomic_write_bytes, atomic_write_json
from ..parity.judge import public
from ..report import Check
from .result import ValidationResult


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _num(x: Any, fmt: str = ".1e") -> str:
    if x is None:
        return "-"
    return format(x, fmt)


def _tol(t: dict[str, Any]) -> str:
    parts = []
    if t.get("atol") is not None:
        parts.append(f"atol {t['atol']:g}")
    if t.get("min_cosine") is not None:
        parts.append(f"cos>={t['min_cosine']:g}")
    return ", ".join(parts) or "-"


def _group_label(name: str) -> str:
    # "random 3x33" -> "3x33", "text (200 texts)" -> "text (200)": the table must fit 80 columns.
    return name.removeprefix("random ").replace(" texts)", ")")


def render(result: ValidationResult, console) -> None:
    """The terminal report: a table per output (one row per shape group), then notes.

    ``1-cos`` is one minus the smallest per-sample cosine similarity (0 is identical),
    which keeps the digits that matter visible in a narrow column.
    """
    from rich import box
    from rich.table import Table

    console.print(f"{result.variant} ({result.file}, {result.precision}) vs PyTorch, ONNX Runtime on {result.provider}",
                  markup=False)
    for output in dict.fromkeys(c.about["output"] for c in result.checks):
        checks = [c for c in result.checks if c.about["output"] == output]
        has_argmax = any(c.metrics.get("argmax_agreement") is not None for c in checks)
        tol = checks[0].about["tolerance"]
        table = Table(title=f"{escape(output)}  [dim]({_tol(tol)}, rtol {tol.get('rtol', 0):g})[/]", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("group", no_wrap=True)
        for col in ("max abs", "mean abs", "max rel", "1-cos") + (("argmax",) if has_argmax else ()) + ("atol need",):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        for c in checks:
            m = c.metrics
            if c.about["error"]:
                cells = ["-"] * (5 + has_argmax) + ["[red]ERROR[/]"]
            else:
                cos = m.get("min_cosine")
                cells = [_num(m.get("max_abs")), _num(m.get("mean_abs")), _num(m.get("max_rel")),
                         "-" if cos is None else _num(max(0.0, 1.0 - cos))]
                if has_argmax:
                    cells.append("-" if m.get("argmax_agreement") is None else f"{m['argmax_agreement']:.4f}")
                cells += [_num(m.get("atol_needed")), "[green]ok[/]" if c.passed else "[red]FAIL[/]"]
            table.add_row(escape(_group_label(c.about["group"])), *cells)
        console.print(table)
    samples = sum(g["samples"] for g in result.groups)
    console.print(
        f"{len(result.groups)} groups, {samples} samples; PyTorch {result.seconds.get('pytorch', 0):.1f}s, "
        f"ONNX Runtime {result.seconds.get('onnxruntime', 0):.1f}s, total {result.seconds.get('total', 0):.1f}s",
        markup=False,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)


def render_failures(result: ValidationResult, console) -> None:
    """Every failing output with every group it fails on, then the localization."""
    failing = [c for c in result.checks if not c.passed]
    console.print(f"[bold red]check failed:[/] {len(failing)} of {len(result.checks)} checks of "
                  f"'{escape(result.variant)}' ({result.precision}) failed; failing outputs: "
                  f"{escape(', '.join(result.failing_outputs()))}", markup=True)
    for output in result.failing_outputs():
        mine = [c for c in failing if c.about["output"] == output]
        total = sum(1 for c in result.checks if c.about["output"] == output)
        console.print(f"  {output}: fails on {len(mine)} of {total} groups", markup=False)
        for c in mine:
            console.print(f"    - {c.about['group']}: {c.about['error'] or '; '.join(c.about['reasons'])}", markup=False)
    loc = result.localization
    if loc:
        console.print(f"[bold]localization[/] (on {escape(str(loc.get('group')))}): {escape(str(loc.get('message')))}",
                      markup=True, highlight=False)
        for row in loc.get("stages") or []:
            err = row.get("rel_error")
            console.print(
                f"    {row['stage']:<18} rel error {'-' if err is None else f'{err:.2e}'}  "
                f"onnx {row.get('onnx_tensor') or '-'}", markup=False,
            )


def write_json(result: ValidationResult, path: Path) -> None:
    atomic_write_json(Path(path), result.to_dict())


def _failure_text(c: Check, result: ValidationResult) -> str:
    lines = [c.message(), "metrics: " + ", ".join(f"{k}={v}" for k, v in public(c.metrics).items()),
             "tolerance: " + ", ".join(f"{k}={v}" for k, v in c.about['tolerance'].items())]
    loc = result.localization
    if loc and loc.get("message"):
        lines.append(f"localization: {loc['message']}")
    return "\n".join(lines)


def junit_tree(result: ValidationResult) -> ET.ElementTree:
    """One testcase per output and shape group; failing ones carry <failure>."""
    failures = sum(1 for c in result.checks if not c.passed)
    total_time = f"{result.seconds.get('total', 0.0):.3f}"
    suites = ET.Element("testsuites", name="onnxforge validate", tests=str(len(result.checks)),
                        failures=str(failures), errors="0", time=total_time)
    suite = ET.SubElement(
        suites, "testsuite", name=f"onnxforge.validate.{result.variant}", tests=str(len(result.checks)),
        failures=str(failures), errors="0", skipped="0", time=total_time, hostname=socket.gethostname(),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("artifact", result.artifact), ("variant", result.variant), ("file", result.file),
                       ("precision", result.precision), ("provider", result.provider),
                       ("file_sha256", result.file_sha256 or "")):
        ET.SubElement(props, "property", name=key, value=str(value))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"onnxforge.validate.{result.variant}.{c.about['output']}",
                             name=c.about['group'], time=f"{c.about['seconds']:.4f}")
        if not c.passed:
            failure = ET.SubElement(case, "failure", type="RuntimeFailure" if c.about["error"] else "ParityFailure",
                                    message=c.message())
            failure.text = _failure_text(c, result)
    if result.localization:
        ET.SubElement(suite, "system-out").text = f"localization: {result.localization.get('message')}"
    return ET.ElementTree(suites)


def write_junit(result: ValidationResult, path: Path) -> None:
    tree = junit_tree(result)
    ET.indent(tree)
    atomic_write_bytes(Path(path), ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))


def write_error_reports(variant: str, message: str, json_path: Path | None, junit_path: Path | None) -> None:
    """Reports for a run that could not compare anything (e.g. CUDA asked, CPU obtained),
    so a CI job that reads them still shows the failure."""
    if json_path is not None:
        atomic_write_json(Path(json_path), {"passed": False, "variant": variant, "error": message, "checks": [],
                                            "failures": [message]})
    if junit_path is not None:
        suites = ET.Element("testsuites", name="onnxforge validate", tests="1", failures="1", errors="0")
        suite = ET.SubElement(suites, "testsuite", name=f"onnxforge.validate.{variant}", tests="1", failures="1",
                              errors="0", skipped="0")
        case = ET.SubElement(suite, "testcase", classname=f"onnxforge.validate.{variant}", name="session")
        ET.SubElement(case, "failure", type="SessionFailure", message=message).text = message
        tree = ET.ElementTree(suites)
        ET.indent(tree)
        atomic_write_bytes(Path(junit_path), ET.tostring(suites, encoding="utf-8", xml_declaration=True))
