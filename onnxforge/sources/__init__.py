"""Where models come from: the built-in MiniLM, a Hugging Face folder, or a factory.

``SourceArgs`` is what the user typed (CLI flags or TOML keys), ``SourceRef`` what the
manifest records; ``load_source`` turns a ``SourceRef`` back into a PyTorch module plus
its ``ModelSpec``, so the validate stage rebuilds exactly the model the export used.
"""

from .args import SOURCE_FIELDS, SourceArgs
from .base import load_source, resolve_source
from .ref import LoadedModel, SourceRef

__all__ = ["SOURCE_FIELDS", "LoadedModel", "SourceArgs", "SourceRef", "load_source", "resolve_source"]
