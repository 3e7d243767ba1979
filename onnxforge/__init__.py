"""onnxforge: a PyTorch BERT to a checked, optimized, packaged ONNX artifact.

The stages are importable on their own (``onnxforge.export.export_model``,
``onnxforge.optimize``, ``onnxforge.validate``, ``onnxforge.runtime``,
``onnxforge.smoke``, ``onnxforge.serve``, ``onnxforge.batch``, ``onnxforge.release``); heavy libraries are imported inside the functions that need
them so that importing this package and ``onnxforge --help`` stay fast.
"""

__version__ = "0.1.0"
