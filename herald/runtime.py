"""Process-wide settings of Herald's long-running processes."""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CompiledModules", "compiled_modules", "tune_garbage_collector"]

# The modules that `setup.py` compiles with mypyc when HERALD_COMPILE=1: every module of
# these packages but their `__init__`, and these single modules.
_COMPILED_PACKAGES = ("domain",)
_COMPILED_MODULES = ("schemas.wire",)
# Installing a wheel writes its files one after another, so a source file written a
# moment after its extension is not a sign of an edit.
# NOTE: an edit within this time after a build is therefore not reported stale.
_STALE_AFTER_S = 2.0
# The shared library of the build, named by `group_name` in `setup.py`.
_SHARED_LIBRARY = "compiled__mypyc"

_YOUNG_THRESHOLD = 25_000


def tune_garbage_collector() -> None:
    """Collect the youngest generation every 25,000 allocations instead of every 700.

    A worker allocates a dict per event and keeps thousands of them buffered, so Python's
    default threshold rescans them again and again: the Parquet landing spent about a
    quarter of its CPU in the collector (`python -m bench.ingest`, 2-core VM). Reference
    cycles are rare in this code, so collecting less often costs little memory. The
    threshold stops at 25,000 because each collection pauses the engine: at 100,000 the
    pauses reached 40-60 ms and set the engine's p99 send latency (`python -m
    bench.triggers`, same VM), at 25,000 they stayed under 20 ms for the same total time.
    """
    gc.set_threshold(_YOUNG_THRESHOLD, 50, 100)


@dataclass(frozen=True)
class CompiledModules:
    """The build of each module that mypyc can compile: C extension or Python source.

    Attributes:
        compiled: names of the modules loaded from an extension.
        pure: names of the modules loaded from Python source.
        stale: names of compiled modules whose source changed after the build, so the
            process runs older code than the checkout holds.
    """

    compiled: tuple[str, ...]
    pure: tuple[str, ...]
    stale: tuple[str, ...]

    def describe(self) -> str:
        if not self.compiled:
            return "domain logic runs as Python source"
        if not self.pure:
            return f"domain logic compiled by mypyc ({len(self.compiled)} modules)"
        return (
            f"domain logic partly compiled by mypyc: {len(self.compiled)} modules compiled, "
            f"{len(self.pure)} as Python source ({', '.join(self.pure)})"
        )


def compiled_modules() -> CompiledModules:
    """Import the compilable modules and tell how each was loaded (see `setup.py`)."""
    names = list(_COMPILED_MODULES)
    for package_name in _COMPILED_PACKAGES:
        root = Path(importlib.import_module(package_name).__file__ or "").parent
        for source in root.rglob("*.py"):
            if source.name != "__init__.py":
                parts = source.relative_to(root).with_suffix("").parts
                names.append(".".join((package_name, *parts)))
    compiled: list[str] = []
    pure: list[str] = []
    stale: list[str] = []
    for name in sorted(names):
        path = Path(importlib.import_module(name).__file__ or "")
        if not path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            pure.append(name)
            continue
        compiled.append(name)
        source = path.with_name(f"{path.name.split('.', 1)[0]}.py")
        if source.exists() and source.stat().st_mtime > _built_at(path) + _STALE_AFTER_S:
            stale.append(name)
    return CompiledModules(tuple(compiled), tuple(pure), tuple(stale))


def _built_at(extension: Path) -> float:
    # A module's own extension only forwards to the build's shared library, where the
    # code is, and a rebuild rewrites the shared library alone.
    times = [extension.stat().st_mtime]
    for package_name in _COMPILED_PACKAGES:
        root = Path(importlib.import_module(package_name).__file__ or "").parent
        times += [path.stat().st_mtime for path in root.glob(f"{_SHARED_LIBRARY}.*")]
    return max(times)
