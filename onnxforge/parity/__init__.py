"""The one parity judge: default tolerances per precision, the comparison, and goldens.

Every stage that compares an ONNX graph with a reference (export's shape check,
optimize's checks, validate, smoke, package and verify's golden texts) judges with
``judge.judge_output`` against a ``tolerance.Tolerance`` from ``tolerance.DEFAULT_TOLERANCES``,
and reads or writes ``goldens.npz`` through ``goldens``. Nothing heavy is imported here.
"""

from .tolerance import DEFAULT_TOLERANCES, Tolerance, default_tolerance, resolve_tolerance

__all__ = ["DEFAULT_TOLERANCES", "Tolerance", "default_tolerance", "resolve_tolerance"]
