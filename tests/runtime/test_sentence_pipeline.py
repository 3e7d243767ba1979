"""Runtime, batch and serve use the model's own sentence-transformers pipeline.

Each folder is written by sentence-transformers itself; the reference is
``SentenceTransformer(folder).encode`` (its tokenizer, truncation, pooling, Dense, Normalize).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.fixtures.sentence_folders import save_sentence_folder

TEXTS = [
    "A tiny encoder reads this sentence.",
    "Short.",
    "The quick brown fox jumps over the lazy dog " * 8,  # past every max_seq_length below
    "Sentence-transformers folders carry their own pooling, Dense and Normalize modules.",
    "UPPER case Text, to check lower-casing follows the folder.",
]

CASES = {
    "cls_dense_normalize": dict(pooling="cls", dense=16, normalize=True, max_seq_length=24),
    "mean": dict(pooling="mean", max_seq_length=32),
    "max_normalize": dict(pooling="max", normalize=True, max_seq_length=20),
}


@pytest.fixture(scope="session", params=list(CASES))
def sentence_artifact(request, tmp_path_factory, tiny_architecture):
    """(sentence-transformers folder, its onnxforge artifact, the case) per pooling case."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    case = request.param
    root = tmp_path_factory.mktemp(f"stp_{case}")
    folder = save_sentence_folder(root / "st", tiny_architecture("bert"), **CASES[case], prompts={"query": "query: "})
    report = export_model(resolve_source(str(folder)), root / "art", ExportOptions())
    assert report, report.failures()
    return folder, root / "art", case


def reference(folder, texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(list(texts), convert_to_numpy=True), model.max_seq_length


def min_cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def test_runtime_truncates_like_the_folder(sentence_artifact):
    from onnxforge.runtime import Runtime

    folder, art, case = sentence_artifact
    runtime = Runtime.load(art)
    theirs, max_seq_length = reference(folder, TEXTS)
    assert runtime.max_length == max_seq_length == CASES[case]["max_seq_length"]
    assert min_cosine(runtime.embed(TEXTS, normalize=False), theirs) >= 0.9999


def test_batch_matches_encode(sentence_artifact, tmp_path):
    from onnxforge.batch import BatchOptions, batch_file

    folder, art, _ = sentence_artifact
    src = tmp_path / "in.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((i, t) for i, t in enumerate(TEXTS))
    out = tmp_path / "out.csv"
    batch_file(art, src, out, BatchOptions(batch_size=2, normalize=False))
    with open(out, encoding="utf-8", newline="") as f:
        got = np.array([json.loads(r["embedding"]) for r in csv.DictReader(f)])
    theirs, _ = reference(folder, TEXTS)
    assert min_cosine(got, theirs) >= 0.9999


def test_serve_matches_encode(sentence_artifact):
    import httpx

    from onnxforge.runtime import Runtime
    from tests.server_helpers import live_server

    folder, art, _ = sentence_artifact
    with live_server(Runtime.load(art)) as (url, _, _):
        body = httpx.post(f"{url}/embed", json={"texts": TEXTS, "normalize": False}, timeout=60).json()
    theirs, _ = reference(folder, TEXTS)
    assert body["truncated"][2] is True
    assert min_cosine(body["embeddings"], theirs) >= 0.9999


def test_serve_prompt_name_matches_encode(sentence_artifact):
    """The folder's prompts (config_sentence_transformers.json) reach serve through the manifest."""
    import httpx
    from sentence_transformers import SentenceTransformer

    from onnxforge.runtime import Runtime
    from tests.server_helpers import live_server

    folder, art, case = sentence_artifact
    if case != "mean":
        pytest.skip("one pooling case is enough for prompts")
    with live_server(Runtime.load(art)) as (url, _, _):
        body = httpx.post(f"{url}/embed", json={"texts": TEXTS, "normalize": False, "prompt_name": "query"},
                          timeout=60).json()
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    without, _ = reference(folder, TEXTS)
    assert min_cosine(body["embeddings"], theirs) >= 0.9999
    assert min_cosine(theirs, without) < 0.9999  # the prompt changed the embedding: the check can fail


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_on_2000_debian_descriptions(minilm_runtime, minilm_dir):
    from onnxforge.data import sample_texts

    texts = sample_texts(2000)
    assert len(texts) == 2000
    theirs, max_seq_length = reference(minilm_dir, texts)
    assert minilm_runtime.max_length == max_seq_length == 256
    ours = np.concatenate([minilm_runtime.embed(texts[i:i + 32]) for i in range(0, len(texts), 32)])
    cosine = min_cosine(ours, theirs)
    print(f"MiniLM runtime vs SentenceTransformer.encode over 2000 texts: min cosine {cosine:.7f}")
    assert cosine >= 0.9999


def _batch_embeddings(art, tmp_path, **options):
    from onnxforge.batch import BatchOptions, batch_file

    src = tmp_path / "in.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((i, t) for i, t in enumerate(TEXTS))
    out = tmp_path / "out.csv"
    batch_file(art, src, out, BatchOptions(batch_size=2, normalize=False, **options))
    with open(out, encoding="utf-8", newline="") as f:
        return np.array([json.loads(r["embedding"]) for r in csv.DictReader(f)])


def test_batch_prompt_name_matches_encode(sentence_artifact, tmp_path):
    """`batch --prompt-name` puts the folder's prompt in front of every text, as encode(prompt_name=) does."""
    from sentence_transformers import SentenceTransformer

    folder, art, case = sentence_artifact
    if case != "mean":
        pytest.skip("one pooling case is enough for prompts")
    got = _batch_embeddings(art, tmp_path, prompt_name="query")
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    assert min_cosine(got, theirs) >= 0.9999
    assert min_cosine(got, reference(folder, TEXTS)[0]) < 0.9999  # the prompt changed the embedding


def test_batch_unknown_prompt_is_exit_2_and_writes_nothing(sentence_artifact, tmp_path):
    from onnxforge.errors import UserInputError

    _, art, case = sentence_artifact
    if case != "mean":
        pytest.skip("one pooling case is enough for prompts")
    with pytest.raises(UserInputError, match="'passage' is not one of this model's prompts \\(.*query"):
        _batch_embeddings(art, tmp_path, prompt_name="passage")
    assert not (tmp_path / "out.csv").exists()
