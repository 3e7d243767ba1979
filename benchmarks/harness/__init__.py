"""Pieces of the benchmark harness driven by ``benchmarks/run_all.py``."""
