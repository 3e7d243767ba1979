"""runtime: an artifact variant + its tokenizer -> outputs, behind one engine seam.

API: ``Runtime.load(dir, variant=None, device="cpu")``; ``shape_results`` (the one place
that turns outputs into embedding / label / raw results, for serve and batch);
``Engine`` (the seam an inference engine implements) and ``open_engine``.
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

from ..lazy import lazy_getattr

_MODULES = {
    "Runtime": "runtime",
    "Encoded": "runtime",
    "choose_variant": "runtime",
    "default_variant": "runtime",
    "variant_engine": "engine",
    "OpenVINOEngine": "openvino",
    "DEFAULT_VARIANTS": "runtime",
    "Engine": "engine",
    "open_engine": "engine",
    "OrtEngine": "ort",
    "embedding_plan": "pooling",
    "mean_pool": "pooling",
    "l2_normalize": "pooling",
    "result_kind": "pooling",
    "token_output": "pooling",
    "Results": "results",
    "result_columns": "results",
    "shape_results": "results",
    "check_texts": "texts",
    "length_groups": "texts",
    "check_tokenizer_against_model": "checks",
    "check_graph_inputs": "checks",
}

__all__ = sorted(_MODULES)


__getattr__ = lazy_getattr(__name__, _MODULES)
