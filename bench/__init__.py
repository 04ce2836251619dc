"""Throughput benchmarks. Run `python -m bench.ingest` from the repository root.

The other modules are the parts of that benchmark and have no command line of their own.
"""
