"""`onnxforge inspect`: what is in an artifact folder or a single .onnx file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserInputError
from .graph import describe_model
from .vocab import OPTIMIZE, split_stage_key


def inspect_path(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path} does not exist", hint="pass an artifact folder or a .onnx file")
    if path.is_file():
        if path.suffix != ".onnx":
            raise UserInputError(f"{path} is not a .onnx file", hint="pass an artifact folder or a .onnx file")
        return {"models": {path.stem: describe_model(path)}}
    from .artifact import Artifact

    artifact = Artifact.open(path)
    models = {}
    for name in artifact.variants:
        models[name] = describe_model(artifact.variant_path(name))
        models[name]["variant"] = artifact.variants[name]
    stages = artifact.stages
    return {
        "artifact": str(path),
        "spec": artifact.spec_record,
        "source": artifact.source_record,
        "export": artifact.export_record or None,
        "versions": artifact.versions,
        "stages": {k: {"passed": v.get("passed")} for k, v in stages.items()},
        "optimize": {k: v for k, v in stages.items() if split_stage_key(k)[0] == OPTIMIZE},
        "files": {k: v["size"] for k, v in artifact.files.items()},
        "models": models,
    }


def render(report: dict[str, Any], console) -> None:
    from rich.table import Table

    if "spec" in report:
        s = report["spec"]
        console.print(
            f"[bold]{report['artifact']}[/]  task={s['task']}  model_type={s['model_type']}  layers={s['num_layers']} "
            f"heads={s['num_heads']} hidden={s['hidden_size']} vocab={s['vocab_size']} max_positions={s['max_positions']}"
        )
    for name, m in report["models"].items():
        table = Table(title=f"{name}: {m['file']}  opset {m['opset']}  IR {m['ir_version']}  "
                      f"{m['parameters']:,} parameters  {m['nodes']} nodes", title_justify="left")
        table.add_column("I/O")
        table.add_column("name")
        table.add_column("dtype")
        table.add_column("dims")
        for kind in ("inputs", "outputs"):
            for v in m["signature"][kind]:
                table.add_row(kind[:-1], v["name"], v["dtype"], "[" + ", ".join(str(d) for d in v["dims"]) + "]")
        console.print(table)
        sizes = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in m["sizes"].items())
        fused = ", ".join(f"{k} {v}" for k, v in m["fused_ops"].items()) or "none"
        top = ", ".join(f"{k} {v}" for k, v in list(m["op_histogram"].items())[:12])
        console.print(f"  files: {sizes}\n  weights: {m['initializer_dtypes']}\n  fused ops: {fused}\n  ops: {top}")
        variant = m.get("variant") or {}
        if variant.get("precision"):
            console.print(f"  precision: {variant['precision']}" + (f"  device: {variant['device']}" if variant.get("device") else ""))
    for name, rec in (report.get("optimize") or {}).items():
        render_optimize(name, rec, console)


def render_optimize(name: str, rec: dict[str, Any], console) -> None:
    """One optimize record: expected vs achieved fusions, why a miss, checks, notes."""
    fusion = rec.get("fusion") or {}
    verdict = "passed" if rec.get("passed") else "FAILED"
    fully = "fully fused" if rec.get("fully_fused") else "NOT fully fused"
    console.print(f"[bold]{name}[/]: {verdict}, {fully}, route {fusion.get('route')}, "
                  f"nodes {fusion.get('nodes_before')} -> {fusion.get('nodes_after')}", markup=True)
    achieved = fusion.get("achieved", {})
    counts = ", ".join(f"{op} {achieved.get(op, 0)}/{want}" for op, want in fusion.get("expected", {}).items()
                       if want or achieved.get(op, 0))
    console.print(f"  fused (achieved/expected): {counts}")
    for op, why in fusion.get("missing", {}).items():
        console.print(f"  why {op} did not fuse: {why}", markup=False)
    for check in rec.get("checks") or []:
        console.print(f"  check {check['name']}: {'passed' if check['passed'] else 'FAILED: ' + str(check.get('why'))}", markup=False)
    for note in rec.get("notes") or []:
        console.print(f"  note: {note}", markup=False)
