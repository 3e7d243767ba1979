"""Where models come from: the built-in MiniLM, a Hugging Face folder, or a factory.

``SourceRef`` is what the manifest records; ``load_source`` turns it back into a
PyTorch module plus its ``ModelSpec``, so the validate stage rebuilds exactly the
model the export used.
"""

from .base import LoadedModel, SourceRef, load_source, resolve_source

__all__ = ["LoadedModel", "SourceRef", "load_source", "resolve_source"]
