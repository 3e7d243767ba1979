"""The runtime: one artifact variant and its own tokenizer, as one object from texts to outputs.

Smoke, the HTTP server and CSV batch inference all go through ``Runtime``, so they
share the same tokenization (truncation to the model's maximum, right padding, which
fused Attention assumes), the same provider handling (``make_session``: CUDA libraries
preloaded, a CPU fallback after asking for CUDA is an error) and the same checks that
the tokenizer fits the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import CheckFailed, UserInputError
from ..runners import DEVICES, SessionInfo, cuda_unavailable_reason, make_session
from ..spec import SEQUENCE_AXIS, ModelSpec
from ..tokenizer import load_tokenizer
from .checks import check_graph_inputs, check_tokenizer_against_model

# Default variant per device, best first. fp16 only on CUDA: ORT's CPU provider runs
# most fp16 kernels by casting back and forth, slower than fp32. int8 is never picked
# by default: it trades accuracy (cosine ~0.99 on MiniLM) for speed, a choice the user
# makes with --variant int8.
DEFAULT_VARIANTS = {"cuda": ("fp16", "optimized", "base"), "cpu": ("optimized", "base")}

# Sentence-level outputs that already are an embedding (sentence-transformers' names).
SENTENCE_OUTPUT_NAMES = ("sentence_embedding", "sentence_embeddings", "embeddings", "text_embeds")
# Token-level outputs to mean-pool, in order of preference.
TOKEN_OUTPUT_NAMES = ("last_hidden_state", "token_embeddings")


def choose_variant(variants: dict[str, Any], device: str) -> str:
    """The default variant for ``device`` ("cpu" or "cuda") among those the artifact has."""
    for name in DEFAULT_VARIANTS[device]:
        if name in variants:
            return name
    raise UserInputError(
        f"the artifact has none of the variants {list(DEFAULT_VARIANTS[device])} for {device}",
        hint=f"pass --variant NAME; it has {', '.join(sorted(variants)) or 'none'}",
    )


def resolve_device(device: str) -> str:
    """cpu or cuda; ``auto`` is cuda when ONNX Runtime can use it here."""
    if device not in DEVICES:
        raise UserInputError(f"--device {device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_unavailable_reason() is None else "cpu"
    return device


@dataclass(frozen=True)
class Encoded:
    """Model inputs for a batch of texts plus what the tokenizer did to each text."""

    feeds: dict[str, np.ndarray]
    lengths: np.ndarray  # real tokens per text (special tokens included)
    truncated: np.ndarray  # bool: the text had more tokens than max_length

    @property
    def mask(self) -> np.ndarray:
        width = next(iter(self.feeds.values())).shape[1]
        return (np.arange(width)[None, :] < self.lengths[:, None]).astype(np.int64)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the real-token vectors (sentence-transformers' mean pooling)."""
    m = mask.astype(hidden.dtype)[:, :, None]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def embedding_plan(spec: ModelSpec) -> tuple[str, bool] | None:
    """Which output gives a sentence embedding, and whether it must be mean-pooled.

    A sentence-level output with an embedding name wins; else the token-level hidden
    states (last_hidden_state first) are mean-pooled over real tokens. BERT's
    ``pooler_output`` is not used: it is a classification-head input, not an embedding.
    """
    for o in spec.outputs:
        if o.name in SENTENCE_OUTPUT_NAMES and len(o.axes) == 2 and o.axes[1] != SEQUENCE_AXIS:
            return o.name, False
    token_level = [o for o in spec.outputs if len(o.axes) == 3 and o.axes[1] == SEQUENCE_AXIS and o.axes[2] is None]
    for name in TOKEN_OUTPUT_NAMES:
        if any(o.name == name for o in token_level):
            return name, True
    if token_level and spec.task in ("feature-extraction", "custom"):
        return token_level[0].name, True
    return None


def result_kind(spec: ModelSpec) -> str:
    """``classification``, ``embedding`` or ``raw``: what serve and batch return for this model."""
    if spec.task == "sequence-classification" and "logits" in spec.output_names:
        return "classification"
    if spec.task in ("feature-extraction", "custom") and embedding_plan(spec) is not None:
        return "embedding"
    return "raw"


def length_groups(lengths: np.ndarray, max_batch: int, *, slack: float = 1.5) -> list[np.ndarray]:
    """Split texts into ORT calls by token length, so short texts are not padded to long ones.

    Indices are sorted by length and cut into runs of at most ``max_batch``; a run also
    ends before a text that would make its padded size (count x longest) exceed
    ``slack`` times its real tokens. Every call then wastes at most a third of its work
    on padding (slack 1.5), and since each such cut raises the length by that factor,
    it adds at most log_1.5(max length), about 16, calls.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    groups: list[np.ndarray] = []
    start, real = 0, 0
    for k, index in enumerate(order):
        length = max(int(lengths[index]), 1)
        size = k - start
        if size and (size >= max_batch or (size + 1) * length > slack * (real + length)):
            groups.append(order[start:k])
            start, real = k, 0
        real += length
    if len(order):
        groups.append(order[start:])
    return groups


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """A list of str; lone surrogates (undecodable bytes) would break the Rust tokenizer."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UserInputError(f"text {i} is {type(t).__name__}, not str")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise UserInputError(f"text {i} holds characters that are not valid Unicode (lone surrogates)",
                                 hint="decode the input as UTF-8 before passing it") from None
    return texts


class Runtime:
    """An artifact variant on one device with its tokenizer. Build it with ``Runtime.load``.

    ``run`` is safe to call from several threads (ONNX Runtime sessions are); the
    server still feeds it from one worker thread so that batches do not compete.
    """

    def __init__(
        self,
        *,
        artifact: Artifact,
        variant: str,
        path: Path,
        session,
        info: SessionInfo,
        tokenizer,
        max_length: int,
        input_dtypes: dict[str, str],
        io_binding: bool,
        checks: dict[str, Any],
    ):
        self.artifact = artifact
        self.spec: ModelSpec = artifact.spec
        self.variant = variant
        self.precision = str(artifact.variants[variant].get("precision", "fp32"))
        self.path = path
        self.session = session
        self.info = info
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.input_dtypes = input_dtypes
        self.io_binding = io_binding
        self.checks = checks
        self._graph_inputs = tuple(i.name for i in session.get_inputs())
        self._output_names = list(self.spec.output_names)

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        variant: str | None = None,
        device: str = "cpu",
        *,
        threads: int | None = None,
        max_length: int | None = None,
        io_binding: bool | None = None,
        spin: bool = False,
        optimization: str = "all",
    ) -> "Runtime":
        """Open ``artifact_dir`` and build a session for ``variant`` on ``device``.

        variant: None picks the best the artifact has for the device (see
        ``DEFAULT_VARIANTS``). device: cpu, cuda or auto; cuda that ends on CPU raises
        ``CheckFailed`` naming the providers and the library that did not load.
        io_binding: None means on for CUDA (inputs copied once, outputs bound to the
        device), off for CPU where it saves nothing. spin: let ORT's intra-op threads
        spin after each run; off by default, so the tokenizer, the writer and the HTTP
        loop get the cores between runs.
        """
        artifact = Artifact.open(artifact_dir)
        spec = artifact.spec
        target = resolve_device(device)
        tokenizer = load_tokenizer(artifact.root)
        checks = check_tokenizer_against_model(tokenizer, spec, artifact.root, max_length)
        # Pad by hand (see pad): the tokenizer only truncates.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=checks["max_length"])
        config = {"session.intra_op.allow_spinning": "1" if spin else "0"}
        name = variant or choose_variant(artifact.variants, target)
        try:
            session, info = make_session(artifact.variant_path(name), target, threads=threads,
                                         optimization=optimization, config=config)
        except CheckFailed as e:
            if device != "auto":
                raise
            # auto means "CUDA if it works": CUDA looked usable but did not start, so
            # use the CPU (and the CPU's default variant), and say so in describe().
            checks["device_note"] = f"auto: CUDA did not start, using CPU ({e.message})"
            target = "cpu"
            name = variant or choose_variant(artifact.variants, target)
            session, info = make_session(artifact.variant_path(name), target, threads=threads,
                                         optimization=optimization, config=config)
        path = artifact.variant_path(name)
        input_dtypes = check_graph_inputs(session, spec)
        use_binding = (info.device == "cuda") if io_binding is None else bool(io_binding)
        return cls(artifact=artifact, variant=name, path=path, session=session, info=info, tokenizer=tokenizer,
                   max_length=checks["max_length"], input_dtypes=input_dtypes, io_binding=use_binding, checks=checks)

    # -- facts ---------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device the session really runs on (cpu or cuda)."""
        return self.info.device

    @property
    def providers(self) -> list[str]:
        return list(self.info.obtained)

    @property
    def kind(self) -> str:
        return result_kind(self.spec)

    def describe(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact.root),
            "variant": self.variant,
            "precision": self.precision,
            "file": self.path.name,
            "device": self.device,
            "providers": self.providers,
            "io_binding": self.io_binding,
            "task": self.spec.task,
            "kind": self.kind,
            "max_length": self.max_length,
            "inputs": list(self.spec.input_names),
            "outputs": list(self.spec.output_names),
            "labels": list(self.spec.labels),
            "note": self.checks.get("device_note"),
        }

    # -- texts -> inputs -----------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list:
        """Truncated, unpadded encodings (the Rust tokenizer, parallel over texts)."""
        texts = check_texts(texts)
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return encode(texts)

    def pad(self, encodings: Sequence[Any]) -> Encoded:
        """Right-pad encodings to the longest one, vectorized (no per-token Python loop)."""
        n = len(encodings)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        width = max(int(lengths.max()) if n else 0, 1)
        real = np.arange(width)[None, :] < lengths[:, None]
        total = int(lengths.sum())
        feeds: dict[str, np.ndarray] = {}
        ids = np.full((n, width), self.spec.pad_token_id, dtype=np.int64)
        ids[real] = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        feeds["input_ids"] = ids
        if "attention_mask" in self.spec.input_names:
            feeds["attention_mask"] = real.astype(np.int64)
        if "token_type_ids" in self.spec.input_names:
            types = np.zeros((n, width), dtype=np.int64)
            types[real] = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64, count=total)
            feeds["token_type_ids"] = types
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=n)
        return Encoded(feeds=feeds, lengths=lengths, truncated=truncated)

    def encode_batch(self, texts: Sequence[str]) -> Encoded:
        return self.pad(self.tokenize(texts))

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> the graph's feeds (int64, right-padded to the longest text)."""
        return self.encode_batch(texts).feeds

    # -- inputs -> outputs ---------------------------------------------------------
    def _prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = {}
        for name in self._graph_inputs:
            if name not in feeds:
                raise UserInputError(f"the feeds lack the model input {name}", hint=f"pass {list(self._graph_inputs)}")
            prepared[name] = np.ascontiguousarray(feeds[name], dtype=self.input_dtypes[name])
        return prepared

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ORT call; outputs by name as float32 (fp16 graphs are widened)."""
        prepared = self._prepare(feeds)
        if self.io_binding:
            outs = self._run_bound(prepared)
        else:
            outs = self.session.run(self._output_names, prepared)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self._output_names, outs)}

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """IO binding: inputs copied to the device once, outputs allocated there by ORT.

        On CUDA this avoids ORT's per-run staging of feeds and lets it size outputs on
        the device; the outputs come back in one copy each.
        """
        import onnxruntime as ort

        device = "cuda" if self.device == "cuda" else "cpu"
        binding = self.session.io_binding()
        for name, array in feeds.items():
            if device == "cuda":
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
            else:
                binding.bind_cpu_input(name, array)
        for name in self._output_names:
            binding.bind_output(name, device)
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.copy_outputs_to_cpu()

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> every graph output (token-level outputs keep their padding)."""
        return self.run(self.encode(texts))

    # -- task helpers --------------------------------------------------------------
    def pooled(self, outputs: dict[str, np.ndarray], mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """Sentence embeddings from a run's outputs (see ``embedding_plan``)."""
        plan = embedding_plan(self.spec)
        if plan is None:
            raise UserInputError(
                f"this {self.spec.task} model has no output to build sentence embeddings from "
                f"(outputs: {list(self.spec.output_names)})",
                hint="embeddings need a last_hidden_state-like (batch, sequence, hidden) or a sentence_embedding output",
            )
        name, pool = plan
        vectors = mean_pool(outputs[name], mask) if pool else outputs[name]
        vectors = vectors.astype(np.float32, copy=False)
        return l2_normalize(vectors) if normalize else vectors

    def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        """Texts -> (len(texts), hidden) sentence embeddings, mean-pooled, L2-normalized by default."""
        enc = self.encode_batch(texts)
        return self.pooled(self.run(enc.feeds), enc.mask, normalize=normalize)

    def classes(self, outputs: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(label per text, its probability, all probabilities) from sequence-classification logits."""
        logits = outputs["logits"]
        probs = softmax(logits.astype(np.float64)).astype(np.float32)
        top = probs.argmax(axis=-1)
        labels = list(self.spec.labels) or [f"LABEL_{i}" for i in range(logits.shape[-1])]
        if len(labels) != logits.shape[-1]:
            labels = [f"LABEL_{i}" for i in range(logits.shape[-1])]
        return [labels[i] for i in top], probs[np.arange(len(top)), top], probs

    def classify(self, texts: Sequence[str]) -> dict[str, Any]:
        if self.kind != "classification":
            raise UserInputError(f"this is a {self.spec.task} model, not a sequence classifier")
        outputs = self.predict(texts)
        labels, scores, probs = self.classes(outputs)
        return {"labels": labels, "scores": scores, "probabilities": probs, "logits": outputs["logits"]}
