"""Compile the pure domain logic with mypyc when HERALD_COMPILE=1.

Everything else about the package is in pyproject.toml. Without the variable the package
is plain Python. With it, `domain/` and the envelope checks become C extensions built
from the same source, which runs the engine about 1.4 times as fast (BENCHMARKS.md).
"""

import os
from pathlib import Path

from setuptools import setup

# The modules of pure logic that every event runs through. The rest of Herald spends its
# time in libraries (aiokafka, DuckDB, FastAPI) that compiling would not speed up. A
# package's `__init__` stays Python: mypyc gives a compiled one a wrong `__path__` when the
# package is installed in editable mode.
COMPILED = [
    *sorted(str(path) for path in Path("domain").rglob("*.py") if path.name != "__init__.py"),
    "schemas/wire.py",
]

ext_modules = []
if os.environ.get("HERALD_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3", group_name="domain.compiled")

setup(ext_modules=ext_modules)
