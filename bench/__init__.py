"""Benchmarks. Run `python -m bench.ingest` or `python -m bench.triggers` from the repository root.

The other modules are the parts of those benchmarks and have no command line of their own.
"""
