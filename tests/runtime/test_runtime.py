"""Runtime: variant choice, tokenization vs the export goldens, IO binding, tokenizer/model checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from onnxforge.artifact import Artifact
from onnxforge.errors import CheckFailed, UserInputError
from onnxforge.runtime import Runtime, choose_variant, length_groups

from tests.runtime_helpers import TINY_MAX_LENGTH, assert_close_rows


@pytest.mark.parametrize(
    "variants, device, expected",
    [
        ({"base", "optimized", "fp16", "int8"}, "cpu", "optimized"),
        ({"base", "optimized", "fp16", "int8"}, "cuda", "fp16"),
        ({"base", "optimized", "int8"}, "cuda", "optimized"),
        ({"base", "int8"}, "cpu", "base"),  # int8 only when asked
        ({"base", "fp16"}, "cpu", "base"),  # fp16 is slow on the CPU provider
    ],
)
def test_choose_variant(variants, device, expected):
    assert choose_variant({v: {} for v in variants}, device) == expected


def test_choose_variant_none_usable():
    with pytest.raises(UserInputError, match="pass --variant"):
        choose_variant({"int8": {}}, "cpu")


def test_encode_reproduces_export_goldens(minilm_runtime, minilm_artifact):
    """The runtime tokenizes exactly as export did, and the model reproduces PyTorch's goldens."""
    art = Artifact.open(minilm_artifact)
    texts = art.manifest["goldens"]["texts"]
    golden = np.load(minilm_artifact / "goldens.npz")
    feeds = minilm_runtime.encode(texts)
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    for name, value in feeds.items():
        np.testing.assert_array_equal(value, golden[f"input.{name}"])
    out = minilm_runtime.run(feeds)
    mask = feeds["attention_mask"].astype(bool)
    assert np.abs(out["last_hidden_state"][mask] - golden["output.last_hidden_state"][mask]).max() < 1e-4
    info = minilm_runtime.describe()
    assert info["variant"] == "base" and info["device"] == "cpu" and info["providers"] == ["CPUExecutionProvider"]
    # The built-in is a sentence-transformers folder: its max_seq_length (256) is the truncation.
    assert minilm_runtime.kind == "embedding" and minilm_runtime.max_length == 256


def test_right_padding_and_truncation(tiny_runtime):
    long_text = "word " * 400
    enc = tiny_runtime.encode_batch(["a", "hello there friend", long_text])
    ids, mask = enc.feeds["input_ids"], enc.feeds["attention_mask"]
    assert ids.shape == (3, TINY_MAX_LENGTH)
    assert enc.lengths.tolist() == mask.sum(1).tolist()
    assert enc.truncated.tolist() == [False, False, True]
    for row, n in zip(mask, enc.lengths):  # right padding: ones then zeros
        assert row[:n].all() and not row[n:].any()
    assert (ids[mask == 0] == tiny_runtime.spec.pad_token_id).all()


def test_embed_is_mean_pooled_and_normalized(minilm_runtime, minilm_reference):
    texts = ["A short one.", "Grüße aus Köln, 東京 🚀", "Debian packages ship software with metadata " * 3]
    emb = minilm_runtime.embed(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert_close_rows(emb, minilm_reference.embeddings(texts))
    # normalize=False gives the model's own sentence embedding: MiniLM's pipeline ends in Normalize.
    raw = minilm_runtime.embed(texts, normalize=False)
    np.testing.assert_allclose(raw, emb, atol=1e-6)


def test_embed_without_normalize_on_a_plain_folder(tiny_runtime):
    # No modules.json: mean pooling, and normalize=False leaves the mean as it is.
    raw = tiny_runtime.embed(["A short one.", "Another, longer sentence for the tiny model."], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_io_binding_path_matches_plain_run(tiny_artifact, tiny_runtime):
    """The IO-binding code path (CUDA's default) computes the same on the CPU provider."""
    bound = Runtime.load(tiny_artifact, max_length=TINY_MAX_LENGTH, io_binding=True)
    assert bound.io_binding and not tiny_runtime.io_binding
    feeds = tiny_runtime.encode(["one text", "and a somewhat longer second text"])
    plain, via_binding = tiny_runtime.run(feeds), bound.run(feeds)
    for name in plain:
        np.testing.assert_array_equal(plain[name], via_binding[name])


@pytest.mark.cuda
def test_cuda_runtime_uses_io_binding(minilm_artifact, minilm_reference):
    rt = Runtime.load(minilm_artifact, device="cuda")
    assert rt.device == "cuda" and rt.providers[0] == "CUDAExecutionProvider" and rt.io_binding
    texts = ["hello world", "a second, longer sentence on the GPU"]
    assert_close_rows(rt.embed(texts), minilm_reference.embeddings(texts), atol=1e-3, min_cos=0.9999)


def test_cuda_request_without_cuda_fails_loudly(tiny_artifact):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA works here")
    with pytest.raises(CheckFailed) as e:
        Runtime.load(tiny_artifact, device="cuda", max_length=TINY_MAX_LENGTH)
    msg = e.value.message
    assert "requested ['CUDAExecutionProvider', 'CPUExecutionProvider']" in msg
    assert "obtained ['CPUExecutionProvider']" in msg
    assert "did not load" in msg  # the library that failed is named


def test_auto_device_without_cuda_is_cpu(tiny_artifact):
    from onnxforge.runners import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA works here")
    assert Runtime.load(tiny_artifact, device="auto", max_length=TINY_MAX_LENGTH).device == "cpu"


def test_default_variant_prefers_optimized(tiny_artifact, copy_artifact):
    art_dir = copy_artifact(tiny_artifact)
    shutil.copyfile(art_dir / "model.onnx", art_dir / "model_optimized.onnx")
    art = Artifact.open(art_dir)
    art.variants["optimized"] = {"file": "model_optimized.onnx", "precision": "fp32"}
    art.variants["int8"] = {"file": "model.onnx", "precision": "int8"}
    art.save()
    assert Runtime.load(art_dir, max_length=TINY_MAX_LENGTH).variant == "optimized"
    rt = Runtime.load(art_dir, "int8", max_length=TINY_MAX_LENGTH)
    assert rt.variant == "int8" and rt.precision == "int8"
    with pytest.raises(UserInputError, match="variant 'fp17' is not in"):
        Runtime.load(art_dir, "fp17", max_length=TINY_MAX_LENGTH)


def test_classifier_helpers(tiny_cls_runtime, cls_reference):
    texts = ["great stuff", "terrible", "it is fine I guess"]
    result = tiny_cls_runtime.classify(texts)
    assert tiny_cls_runtime.kind == "classification"
    assert set(result["labels"]) <= {"neg", "neu", "pos"}
    np.testing.assert_allclose(result["probabilities"].sum(1), 1.0, atol=1e-6)
    expected, _ = cls_reference.outputs(texts)
    np.testing.assert_allclose(result["logits"], expected["logits"], atol=1e-4)
    names = ["neg", "neu", "pos"]
    assert result["labels"] == [names[i] for i in expected["logits"].argmax(1)]


@pytest.mark.parametrize("seed", range(5))
def test_length_groups_cover_every_text_once(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 300, size=int(rng.integers(1, 200)))
    groups = length_groups(lengths, 16)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(g) <= 16 for g in groups)
    for g in groups:  # padding is at most half the real tokens
        assert len(g) * lengths[g].max() <= 1.5 * lengths[g].sum()
    # Only full groups and a bounded number of length cuts: not one call per text.
    assert len(groups) <= -(-len(lengths) // 16) + 16


def test_length_groups_keep_a_long_text_apart():
    groups = length_groups(np.array([12, 10, 512, 11, 9, 13]), 32)
    assert [sorted(g.tolist()) for g in groups] == [[0, 1, 3, 4, 5], [2]]


# -- tokenizer / model consistency (exit 2 with a reason) -----------------------------
def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _break_vocab(d):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.add_tokens([f"newtoken{i}" for i in range(5)])
    tok.save(str(d / "tokenizer.json"))


def _break_manifest_inputs(d):
    art = Artifact.open(d)
    art.manifest["spec"]["input_names"] = ["input_ids", "attention_mask"]
    art.save()


def _break_pad(d):
    art = Artifact.open(d)
    art.manifest["spec"]["pad_token_id"] = 5
    art.save()


@pytest.mark.parametrize(
    "breaker, needle",
    [
        (_break_vocab, "embedding table has 30522 rows"),
        (lambda d: _edit_json(d / "tokenizer_config.json", model_max_length=4096), "model_max_length 4096"),
        (lambda d: _edit_json(d / "tokenizer_config.json", cls_token="[NOPE]"), "cls_token '[NOPE]'"),
        (lambda d: _edit_json(d / "tokenizer.json", post_processor=None), "does not wrap texts in [CLS]"),
        (_break_pad, "model pads with id 5"),
        (_break_manifest_inputs, "differ from the manifest"),
    ],
    ids=["vocab", "max_length", "special_token", "post_processor", "pad_token", "graph_inputs"],
)
def test_tokenizer_model_mismatch_is_user_error(tiny_cls_artifact, copy_artifact, cli, breaker, needle):
    art_dir = copy_artifact(tiny_cls_artifact)
    Runtime.load(art_dir)  # fits before the edit
    breaker(art_dir)
    with pytest.raises(UserInputError) as e:
        Runtime.load(art_dir)
    assert needle in str(e.value)
    code, stdout, stderr = cli("smoke", art_dir, "--no-torch", "--no-record", "--batch-sizes", "1", "--iterations", "1")
    assert code == 2, (stdout, stderr)
    assert needle.split()[0] in stderr and "Traceback" not in stderr + stdout


def test_max_length_override(tiny_artifact):
    with pytest.raises(UserInputError, match="model_max_length 512"):
        Runtime.load(tiny_artifact)  # the shared fixture's tokenizer_config says 512 for 128 positions
    with pytest.raises(UserInputError, match="outside 1..128"):
        Runtime.load(tiny_artifact, max_length=129)
    assert Runtime.load(tiny_artifact, max_length=64).max_length == 64
