"""The built-in MiniLM follows its own sentence-transformers pipeline (mean, Normalize, 256 tokens)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.artifact import Artifact


def graph_embeddings(artifact_dir, texts, batch_size=32):
    """The graph's sentence_embedding with onnxforge's tokenizer path and the manifest's truncation."""
    import onnxruntime as ort

    from onnxforge.textbatch import encode_texts, pipeline_max_length, pipeline_texts
    from onnxforge.tokenizer import load_tokenizer

    art = Artifact.open(artifact_dir)
    tokenizer = load_tokenizer(artifact_dir)
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    texts = pipeline_texts(texts, art.manifest)
    rows = []
    for i in range(0, len(texts), batch_size):
        feeds = encode_texts(tokenizer, texts[i:i + batch_size], art.spec, pipeline_max_length(art.manifest))
        rows.append(session.run(["sentence_embedding"], feeds)[0])
    return np.concatenate(rows)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_on_2000_debian_descriptions(minilm_artifact, minilm_dir):
    from sentence_transformers import SentenceTransformer

    from onnxforge.data import sample_texts

    texts = sample_texts(2000)
    assert len(texts) == 2000
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    assert Artifact.open(minilm_artifact).manifest["pipeline"]["max_seq_length"] == reference.max_seq_length == 256
    theirs = reference.encode(texts, batch_size=32, convert_to_numpy=True)
    ours = graph_embeddings(minilm_artifact, texts)
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    print(f"MiniLM vs SentenceTransformer.encode over 2000 texts: min cosine {cosine.min():.6f}, "
          f"mean {cosine.mean():.6f}")
    assert cosine.min() >= 0.9999
