"""docs/ci.md: the workflows parse, and every onnxforge command and flag in them exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def _workflows() -> list[dict]:
    yaml = pytest.importorskip("yaml")
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    return [yaml.safe_load(b) for b in blocks]


def _invocations(script: str) -> list[list[str]]:
    """Each `onnxforge ...` call in a shell script, as its argument list."""
    script = script.replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, tok in enumerate(tokens):
            if tok == "onnxforge":
                args = []
                for t in tokens[i + 1:]:
                    if t in ("||", "&&", ";", "|", "do", "done") or t.endswith(";"):
                        break
                    args.append(t)
                calls.append(args)
    return calls


def test_workflows_are_valid_and_use_real_commands():
    import typer

    from onnxforge.cli import app

    group = typer.main.get_command(app)
    seen = set()
    for wf in _workflows():
        assert wf["jobs"], wf
        for job in wf["jobs"].values():
            assert job["runs-on"] and job["steps"]
            for step in job["steps"]:
                assert "uses" in step or "run" in step, step
                for args in _invocations(step.get("run", "")):
                    command = group.commands.get(args[0])
                    assert command is not None, f"onnxforge {args[0]} does not exist"
                    flags = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                    for a in args[1:]:
                        if a.startswith("--"):
                            assert a.split("=")[0] in flags, f"onnxforge {args[0]} has no {a}"
                    seen.add(args[0])
    assert {"export", "optimize", "validate", "smoke", "package", "verify", "build"} <= seen
    text = DOC.read_text()
    assert "--junit" in text and "action-junit-report" in text and "--device cuda" in text
