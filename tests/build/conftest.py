"""Build fixtures: the release tests' tiny model (a tokenizer that fits its positions)."""

from tests.release.conftest import tiny_model_dir  # noqa: F401 - a fixture, shared by name
