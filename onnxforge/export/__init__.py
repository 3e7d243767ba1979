"""Export stage: PyTorch module -> ``model.onnx`` + tokenizer + manifest, with a shape check.

API: ``export_model(source, out, ExportOptions(...)) -> ExportReport``. Names are
loaded lazily so that importing ``onnxforge.export.cli`` (for --help) stays light.
"""

__all__ = ["ExportOptions", "ExportReport", "export_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(name)
