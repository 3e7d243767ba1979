"""The runtime: one artifact variant and its own tokenizer, as one object from texts to outputs.

Smoke, the HTTP server and CSV batch inference all go through ``Runtime``, so they
share the same tokenization (truncation to the model's maximum, right padding, which
fused Attention assumes), the same engine handling (``engine.open_engine``; for ONNX
Runtime, ``runners.make_session``: CUDA libraries preloaded, a CPU fallback after
asking for CUDA is an error), the same checks that the tokenizer fits the model, and
the same result shaping (``results.shape_results``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import CheckFailed, UserInputError
from ..spec import ModelSpec
from ..textbatch import pipeline_max_length, pipeline_texts
from ..tokenizer import load_tokenizer
from ..vocab import CONCRETE_DEVICES, VARIANTS, resolve_device
from .checks import check_graph_inputs, check_tokenizer_against_model
from .engine import Engine, open_engine, openvino_precision, variant_engine
from .pooling import classes, pooled, result_kind
from .results import needed_outputs
from .texts import check_texts


# Default variant per device, best first. fp16 only on CUDA: ORT's CPU provider runs
# most fp16 kernels by casting back and forth, slower than fp32. int8 is never picked
# by default: it trades accuracy (cosine ~0.99 on MiniLM) for speed, a choice the user
# makes with --variant int8.
DEFAULT_VARIANTS = {"cuda": ("fp16", "optimized", "base"), "cpu": ("optimized", "base")}
assert set(DEFAULT_VARIANTS) == set(CONCRETE_DEVICES) and all(set(v) <= set(VARIANTS) for v in DEFAULT_VARIANTS.values())


def choose_variant(variants: dict[str, Any], device: str, preferred: str | None = None) -> str:
    """The default variant for ``device`` ("cpu" or "cuda") among those the artifact has.

    ``preferred``: the variant ``build`` measured fastest among the faithful ones for this
    device (``Artifact.default_variant``); used when present and not recorded as lossy.
    """
    if preferred and preferred in variants and not variants[preferred].get("lossy"):
        return preferred
    for name in DEFAULT_VARIANTS[device]:
        if name in variants:
            return name
    raise UserInputError(
        f"the artifact has none of the variants {list(DEFAULT_VARIANTS[device])} for {device}",
        hint=f"pass --variant NAME; it has {', '.join(sorted(variants)) or 'none'}",
    )


def default_variant(artifact: Artifact, device: str) -> str | None:
    """The variant ``build`` chose for ``device`` by measurement (manifest ``default_variants``)."""
    chosen = (artifact.manifest.get("default_variants") or {}).get(device)
    return chosen.get("variant") if isinstance(chosen, dict) else chosen


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
        engine: Engine,
        tokenizer,
        max_length: int,
        input_dtypes: dict[str, str],
        checks: dict[str, Any],
    ):
        self.artifact = artifact
        self.spec: ModelSpec = artifact.spec
        self.variant = variant
        self.precision = str(artifact.variants[variant].get("precision", "fp32"))
        self.path = path
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.input_dtypes = input_dtypes
        self.checks = checks
        self._graph_inputs = tuple(engine.input_names)
        self._output_names = list(self.spec.output_names)
        self.pipeline = dict(artifact.manifest.get("pipeline") or {})

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
        engine: str | None = None,
        throughput: bool = False,
    ) -> "Runtime":
        """Open ``artifact_dir`` and build a session for ``variant`` on ``device``.

        variant: None picks the best the artifact has for the device (see
        ``DEFAULT_VARIANTS``). device: cpu, cuda or auto; cuda that ends on CPU raises
        ``CheckFailed`` naming the providers and the library that did not load.
        io_binding: None means on for CUDA (inputs copied once, outputs bound to the
        device), off for CPU where it saves nothing. spin: let ORT's intra-op threads
        spin after each run; off by default, so the tokenizer, the writer and the HTTP
        loop get the cores between runs. engine: ort or openvino; None runs each variant
        on the engine its manifest entry records (``engine.variant_engine``).
        throughput: compile for many calls in flight rather than one call's latency
        (OpenVINO's THROUGHPUT hint: one stream per core group; ``engine.parallel_calls``
        then says how many calls to keep running). Batch jobs ask for it; ORT ignores it.
        """
        artifact = Artifact.open(artifact_dir)
        spec = artifact.spec
        # Not strict: a CUDA request is checked by the session itself, which names the providers.
        target = resolve_device(device, strict=False)
        tokenizer = load_tokenizer(artifact.root)
        # The model's own pipeline (sentence-transformers' max_seq_length) decides truncation
        # unless the caller asks for another length.
        if max_length is None:
            max_length = pipeline_max_length(artifact.manifest)
        checks = check_tokenizer_against_model(tokenizer, spec, artifact.root, max_length)
        # Pad by hand (see pad): the tokenizer only truncates.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=checks["max_length"])
        ort_options = {"threads": threads, "optimization": optimization, "io_binding": io_binding,
                       "config": {"session.intra_op.allow_spinning": "1" if spin else "0"}}

        def open_variant(name: str, target: str) -> Engine:
            entry = artifact.variants.get(name, {})
            chosen = variant_engine(entry, name, engine)
            options = ort_options if chosen == "ort" else {
                "threads": threads, "precision": openvino_precision(entry),
                "performance": "THROUGHPUT" if throughput else "LATENCY"}
            return open_engine(artifact.variant_path(name), target, engine=chosen, **options)

        name = variant or choose_variant(artifact.variants, target, default_variant(artifact, target))
        try:
            runner = open_variant(name, target)
        except CheckFailed as e:
            if device != "auto":
                raise
            # auto means "CUDA if it works": CUDA looked usable but did not start, so
            # use the CPU (and the CPU's default variant), and say so in describe().
            checks["device_note"] = f"auto: CUDA did not start, using CPU ({e.message})"
            target = "cpu"
            name = variant or choose_variant(artifact.variants, target, default_variant(artifact, target))
            runner = open_variant(name, target)
        path = artifact.variant_path(name)
        input_dtypes = check_graph_inputs(runner, spec)
        return cls(artifact=artifact, variant=name, path=path, engine=runner, tokenizer=tokenizer,
                   max_length=checks["max_length"], input_dtypes=input_dtypes, checks=checks)

    # -- facts ---------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device the engine really runs on (cpu or cuda)."""
        return self.engine.device

    @property
    def providers(self) -> list[str]:
        return list(self.engine.describe().get("providers") or [])

    @property
    def io_binding(self) -> bool:
        return bool(getattr(self.engine, "io_binding", False))

    @property
    def kind(self) -> str:
        return result_kind(self.spec)

    def describe(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact.root),
            "variant": self.variant,
            "precision": self.precision,
            "file": self.path.relative_to(self.artifact.root).as_posix(),
            "engine": self.engine.engine,
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
            "pipeline": self.pipeline or None,
        }


    # -- texts -> inputs -----------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list:
        """Truncated, unpadded encodings (the Rust tokenizer, parallel over texts)."""
        texts = pipeline_texts(check_texts(texts), self.artifact.manifest)
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

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One engine call; outputs (``outputs``: these only) by name as float32 (fp16 graphs are widened)."""
        names = list(outputs) if outputs is not None else self._output_names
        outs = self.engine.run(self._prepare(feeds), names)
        return {n: np.asarray(outs[n], dtype=np.float32) for n in names}

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> every graph output (token-level outputs keep their padding)."""
        return self.run(self.encode(texts))

    # -- task helpers --------------------------------------------------------------
    def pooled(self, outputs: dict[str, np.ndarray], mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """Sentence embeddings from a run's outputs (see ``pooling.embedding_plan``)."""
        return pooled(self.spec, outputs, mask, normalize=normalize)

    def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        """Texts -> (len(texts), hidden) sentence embeddings, mean-pooled, L2-normalized by default."""
        enc = self.encode_batch(texts)
        return self.pooled(self.run(enc.feeds, needed_outputs(self.spec)), enc.mask, normalize=normalize)

    def classes(self, outputs: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(label per text, its probability, all probabilities) from sequence-classification logits."""
        return classes(self.spec, outputs)

    def classify(self, texts: Sequence[str]) -> dict[str, Any]:
        if self.kind != "classification":
            raise UserInputError(f"this is a {self.spec.task} model, not a sequence classifier")
        outputs = self.predict(texts)
        labels, scores, probs = self.classes(outputs)
        return {"labels": labels, "scores": scores, "probabilities": probs, "logits": outputs["logits"]}
