"""sentence-transformers folders export their own pipeline; the graph matches encode()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.artifact import Artifact
from tests.fixtures.sentence_folders import save_sentence_folder

TEXTS = [
    "A tiny encoder reads this sentence.",
    "Short.",
    "The quick brown fox jumps over the lazy dog " * 6,  # past max_seq_length: truncated
    "Sentence-transformers folders carry their own pooling, Dense and Normalize modules.",
]

CASES = {
    "cls_dense_normalize": dict(pooling="cls", dense=16, normalize=True, max_seq_length=24),
    "mean": dict(pooling="mean", max_seq_length=32),
    "max_normalize": dict(pooling="max", normalize=True),
    "mean_sqrt_len_tokens": dict(pooling="mean_sqrt_len_tokens", max_seq_length=20),
    "weightedmean": dict(pooling="weightedmean"),
    "lasttoken": dict(pooling="lasttoken", max_seq_length=24),
}


@pytest.fixture(scope="session")
def sentence_folders(tmp_path_factory, tiny_architecture):
    built = {}

    def _get(case: str, arch: str = "bert"):
        if (case, arch) not in built:
            folder = tmp_path_factory.mktemp(f"st_{case}_{arch}".replace("-", "_"))
            built[case, arch] = save_sentence_folder(folder / "st", tiny_architecture(arch), **CASES[case],
                                                     prompts={"query": "query: "})
        return built[case, arch]

    return _get


def _export(folder, out, **options):
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    report = export_model(resolve_source(str(folder)), out, ExportOptions(**options))
    assert report, report.failures()
    return Artifact.open(out)


def onnx_sentence_embeddings(artifact_dir, folder, texts):
    """The graph's sentence_embedding, fed with sentence-transformers' own tokenization."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu")
    features = reference.tokenize(texts)
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {n: features[n].numpy().astype(np.int64) for n in names}
    (out,) = session.run(["sentence_embedding"], feeds)
    return out, reference.encode(texts, convert_to_numpy=True)


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.parametrize("case", list(CASES))
def test_graph_sentence_embedding_matches_encode(case, sentence_folders, tmp_path):
    folder = sentence_folders(case)
    art = _export(folder, tmp_path / "art")
    assert art.spec.output_names == ("last_hidden_state", "sentence_embedding")
    pipeline = art.manifest["pipeline"]
    assert pipeline["kind"] == "sentence-transformers"
    assert pipeline["pooling"] == [CASES[case]["pooling"]]
    assert pipeline["normalize"] == CASES[case].get("normalize", False)
    ours, theirs = onnx_sentence_embeddings(tmp_path / "art", folder, TEXTS)
    assert ours.shape == theirs.shape
    assert cosines(ours, theirs).min() >= 0.9999
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_manifest_and_files_follow_the_folder(sentence_folders, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = sentence_folders("cls_dense_normalize")
    art = _export(folder, tmp_path / "art")
    pipeline = art.manifest["pipeline"]
    assert pipeline["max_seq_length"] == SentenceTransformer(str(folder), device="cpu").max_seq_length == 24
    assert pipeline["prompts"] == {"query": "query: ", "document": ""}
    assert [d["out_features"] for d in pipeline["dense"]] == [16]
    for name in ("modules.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors",
                 "sentence_bert_config.json", "config_sentence_transformers.json"):
        assert (tmp_path / "art" / name).is_file(), name
        assert name in art.manifest["files"], name
    assert json.loads((tmp_path / "art" / "modules.json").read_text()) == json.loads((folder / "modules.json").read_text())


def test_plain_folder_says_mean_pooling(tiny_architecture, tmp_path):
    art = _export(tiny_architecture("bert"), tmp_path / "art")
    pipeline = art.manifest["pipeline"]
    assert pipeline["kind"] == "transformers" and pipeline["pooling"] == ["mean"]
    assert "modules.json" in pipeline["note"]


@pytest.mark.parametrize("arch", ["mpnet", "modernbert"])
def test_other_architectures_as_sentence_folders(arch, sentence_folders, tmp_path):
    folder = sentence_folders("mean", arch)
    _export(folder, tmp_path / "art")
    ours, theirs = onnx_sentence_embeddings(tmp_path / "art", folder, TEXTS)
    assert cosines(ours, theirs).min() >= 0.9999


def test_unknown_module_is_refused(sentence_folders, tmp_path, cli):
    import shutil

    folder = tmp_path / "st"
    shutil.copytree(sentence_folders("mean"), folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 9, "name": "9", "path": "9_LSTM", "type": "sentence_transformers.models.LSTM"})
    (folder / "modules.json").write_text(json.dumps(modules))
    code, _, stderr = cli("export", folder, "--out", tmp_path / "out")
    assert code == 2 and "LSTM" in stderr and "Traceback" not in stderr


def test_transformer_in_a_subfolder(sentence_folders, tmp_path):
    """Older folders keep the HF model in 0_Transformer/: exported from there, listed at the root after."""
    import shutil

    src = sentence_folders("cls_dense_normalize")
    folder = tmp_path / "st"
    shutil.copytree(src, folder)
    (folder / "0_Transformer").mkdir()
    for f in list(folder.iterdir()):
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            f.rename(folder / "0_Transformer" / f.name)
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    art = _export(folder, tmp_path / "art")
    assert art.manifest["pipeline"]["max_seq_length"] == 24
    assert json.loads((tmp_path / "art" / "modules.json").read_text())[0]["path"] == ""
    ours, theirs = onnx_sentence_embeddings(tmp_path / "art", src, TEXTS)
    assert cosines(ours, theirs).min() >= 0.9999
