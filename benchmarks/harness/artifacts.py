"""The models the harness measures: MiniLM (the built-in) and a BERT-base-sized model
built from a config with random weights, each exported and optimized with onnxforge's
own CLI, cached in the work folder between runs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from .proc import ONNXFORGE, run_measured

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MODELS = ("minilm", "bert-base")
# The variant `onnxforge optimize --precision P` writes.
VARIANT_NAMES = {"fp32": "optimized", "int8": "int8", "fp16": "fp16"}


def has_command(module: str, name: str) -> bool:
    """Whether an onnxforge stage's CLI module exists and offers ``name``."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return name in getattr(importlib.import_module(module), "COMMANDS", {})
    except Exception:  # a stage mid-edit must not stop the other sections
        return False


def build_bert_base_folder(folder: Path) -> Path:
    """BERT-base dimensions (12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522),
    seeded random weights, saved with save_pretrained beside MiniLM's tokenizer (same
    30522-token uncased vocabulary). Speed does not depend on the weights' values."""
    import torch
    import transformers

    from onnxforge.sources.builtin import builtin_model_dir

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig()).eval()
    model.save_pretrained(folder)
    src = builtin_model_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(src / name, folder / name)
    return folder


def code_stamp() -> str:
    """A hash of the code that builds the artifacts (onnxforge's export, optimize and
    sources): a cached artifact built by other code is rebuilt, not silently reused."""
    import hashlib

    import onnxforge

    root = Path(onnxforge.__file__).parent
    h = hashlib.sha256(onnxforge.__version__.encode())
    for folder in ("export", "optimize", "sources"):
        for path in sorted((root / folder).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _variants(art: Path) -> dict[str, Any]:
    try:
        return json.loads((art / "onnxforge.json").read_text()).get("variants", {})
    except (OSError, json.JSONDecodeError):
        return {}


def prepare(name: str, work: Path, *, given: Path | None, optimize: bool, log) -> dict[str, Any]:
    """Export (and optimize) one model into ``work``; reuse what a previous run built."""
    info: dict[str, Any] = {"model": name}
    if given is not None:
        info.update(artifact=str(given.resolve()), built=False, variants=sorted(_variants(given)))
        return info
    art = work / name
    steps = []
    stamp_file = work / f"{name}.stamp"
    stamp = code_stamp()
    if (art / "onnxforge.json").is_file() and (not stamp_file.is_file() or stamp_file.read_text().strip() != stamp):
        log(f"{art} was built by other onnxforge code: rebuilding it")
        shutil.rmtree(art)
    if not (art / "onnxforge.json").is_file():
        if name == "minilm":
            cmd = ONNXFORGE + ["export", "--out", str(art), "--force"]
        elif name == "bert-base":
            hf = work / "bert-base-hf"
            if not (hf / "config.json").is_file():
                log("building a BERT-base-sized model from BertConfig() (random weights, seed 0)")
                build_bert_base_folder(hf)
            cmd = ONNXFORGE + ["export", str(hf), "--out", str(art), "--force"]
        else:
            raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
        log(f"exporting {name}: {' '.join(cmd[3:])}")
        r = run_measured(cmd, timeout=1800)
        steps.append({"step": "export", "returncode": r["returncode"], "wall_s": r["wall_s"]})
        if r["returncode"] != 0:
            raise RuntimeError(f"export of {name} failed:\n{r['stderr'][-2000:]}")
    if optimize:
        if has_command("onnxforge.optimize.cli", "optimize"):
            from onnxforge.runners import cuda_unavailable_reason

            # fp32 fused for every device, int8 for the CPU; fp16 only where a GPU can time it.
            wanted = ["fp32", "int8"] + (["fp16"] if cuda_unavailable_reason() is None else [])
            for precision in wanted:
                if VARIANT_NAMES[precision] in _variants(art):
                    continue
                cmd = ONNXFORGE + ["optimize", str(art), "--precision", precision]
                log(f"optimizing {name}: {' '.join(cmd[3:])}")
                r = run_measured(cmd, timeout=3600)
                steps.append({"step": f"optimize {precision}", "returncode": r["returncode"], "wall_s": r["wall_s"],
                              "stderr_tail": r["stderr"][-1500:] if r["returncode"] else ""})
        else:
            steps.append({"step": "optimize", "skipped": "onnxforge optimize is not available in this checkout"})
    stamp_file.write_text(stamp + "\n")
    info.update(artifact=str(art.resolve()), built=bool(steps), steps=steps, variants=sorted(_variants(art)),
                code_stamp=stamp)
    return info


def built(work: Path, *, log) -> Path:
    """The built-in MiniLM as `onnxforge build` leaves it (every variant, the measured CPU
    default recorded): what a user serves after the README's first command. Reused while
    the code that built it is unchanged."""
    art, stamp_file = work / "minilm-build", work / "minilm-build.stamp"
    stamp = code_stamp()
    if (art / "onnxforge.json").is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return art
    cmd = ONNXFORGE + ["build", "--out", str(art), "--force", "--package", str(work / "minilm-build.tar.gz")]
    log(f"building: onnxforge {' '.join(cmd[3:])}")
    r = run_measured(cmd, timeout=3600)
    if r["returncode"] != 0:
        raise RuntimeError(f"onnxforge build failed:\n{r['stderr'][-2000:]}")
    stamp_file.write_text(stamp + "\n")
    return art
