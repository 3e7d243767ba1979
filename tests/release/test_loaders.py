"""A folder written by `build` (and an unpacked package) in the ecosystem's own loaders, unchanged.

- onnxruntime + tokenizers alone: the model card's five lines, run in a fresh process
  that never imports onnxforge;
- transformers: AutoTokenizer and AutoConfig from the folder;
- sentence-transformers' ONNX backend and Optimum's ORTModel: both need the
  `optimum-onnx` package, whose releases (0.1.0) require transformers < 4.58 while
  onnxforge needs transformers 5; they are tested where that pair installs and
  skipped with that reason here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from onnxforge.release.card import EXAMPLE_TEXTS, python_block

# One real MiniLM build (about 2 minutes on 2 cores), shared with the other file that
# reads it: under xdist both files run on the worker that built it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("minilm_build")]

OPTIMUM_MISSING = ("optimum-onnx is not installed (its releases require transformers<4.58, onnxforge needs "
                   "transformers 5: installing it would downgrade transformers)")


@pytest.fixture(scope="module")
def minilm_folder(minilm_build):
    root, proc = minilm_build
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "artifacts" / "minilm"


def _reference(folder, variant: str, texts):
    """The same texts through onnxforge's own tokenization and runner."""
    from onnxforge.artifact import Artifact
    from onnxforge.runners import make_session, run_session
    from onnxforge.textbatch import encode_texts
    from onnxforge.tokenizer import load_tokenizer

    art = Artifact.open(folder)
    feeds = encode_texts(load_tokenizer(folder), list(texts), art.spec)
    session, _ = make_session(art.variant_path(variant), "cpu")
    return feeds, run_session(session, art.spec, feeds)


def test_model_card_five_lines_run_with_onnxruntime_alone(minilm_unpacked, tmp_path):
    card = (minilm_unpacked / "MODEL_CARD.md").read_text()
    code = python_block(card)
    assert len([line for line in code.splitlines() if line.strip()]) == 5, code
    assert "onnxforge" not in code
    pooling = card.split("```python\n")[2].split("```")[0]
    script = code + pooling + textwrap.dedent(f"""
        import sys
        assert "onnxforge" not in sys.modules
        np.savez({str(tmp_path / "out.npz")!r}, *outputs, embeddings=embeddings,
                 ids=np.array([e.ids for e in enc]), mask=np.array([e.attention_mask for e in enc]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=minilm_unpacked, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "out.npz")
    feeds, expected = _reference(minilm_unpacked, "optimized", EXAMPLE_TEXTS)
    np.testing.assert_array_equal(got["ids"], feeds["input_ids"])  # right padding, same truncation
    np.testing.assert_array_equal(got["mask"], feeds["attention_mask"])
    np.testing.assert_allclose(got["arr_0"], expected["last_hidden_state"], atol=1e-5)
    np.testing.assert_allclose(got["arr_1"], expected["sentence_embedding"], atol=1e-5)
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    pooled = (expected["last_hidden_state"] * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(got["embeddings"], pooled, atol=1e-5)


@pytest.mark.parametrize("where", ["build folder", "unpacked package"])
def test_transformers_loads_tokenizer_and_config_from_the_folder(where, minilm_folder, minilm_unpacked):
    from transformers import AutoConfig, AutoTokenizer

    folder = minilm_folder if where == "build folder" else minilm_unpacked
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    texts = ["Grüße aus Köln, naïve café.", "ONNX Runtime runs the exported encoder."]
    feeds, _ = _reference(folder, "base", texts)
    encoded = tok(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(encoded["input_ids"], feeds["input_ids"])
    np.testing.assert_array_equal(encoded["attention_mask"], feeds["attention_mask"])
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 384, 6)


def test_sentence_transformers_onnx_backend(minilm_folder):
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed")
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.onnxruntime") is None:
        pytest.skip("sentence-transformers' ONNX backend loads models through Optimum, and " + OPTIMUM_MISSING)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_folder), backend="onnx", local_files_only=True,
                                model_kwargs={"file_name": "model_optimized.onnx"})
    texts = list(EXAMPLE_TEXTS)
    feeds, expected = _reference(minilm_folder, "optimized", texts)
    # The folder keeps MiniLM's modules.json: mean pooling, then Normalize, as in the graph.
    np.testing.assert_allclose(model.encode(texts), expected["sentence_embedding"], atol=1e-4)


def test_optimum_ort_model(minilm_folder):
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.onnxruntime") is None:
        pytest.skip(OPTIMUM_MISSING)
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    model = ORTModelForFeatureExtraction.from_pretrained(minilm_folder, file_name="model.onnx", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(minilm_folder, local_files_only=True)
    texts = list(EXAMPLE_TEXTS)
    _, expected = _reference(minilm_folder, "base", texts)
    out = model(**tok(texts, padding=True, return_tensors="np"))
    np.testing.assert_allclose(np.asarray(out.last_hidden_state), expected["last_hidden_state"], atol=1e-4)
