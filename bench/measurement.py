"""The result type, error, console, progress bar and machine description that every
measurement shares."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


class BenchError(Exception):
    """Raised when a measurement cannot finish; the message names the measurement and cause."""


@dataclass(frozen=True)
class Measurement:
    """Events handled in a wall-clock interval, and the CPU time the measured processes used.

    Attributes:
        name: What was measured.
        events: Events counted at the end of the interval.
        wall_s: Wall-clock seconds of the interval.
        cpu_s: CPU seconds that the measured processes (all their threads) used in the
            interval: this process for the landing and the baseline, the API and the
            worker for the end-to-end run.
        note: What bounds the interval, and what else a reader needs to compare figures.
    """

    name: str
    events: int
    wall_s: float
    cpu_s: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.wall_s

    @property
    def cpu_rate(self) -> float | None:
        return self.events / self.cpu_s if self.cpu_s else None


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Any]:
    """Show a progress bar on stderr; yield a function that sets the completed count."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda completed: progress.update(task, completed=completed)


def timeout_s(events: int) -> float:
    # Generous: a run slower than 2,000 events/s is broken rather than slow.
    return 60.0 + events / 2_000


def package_versions(packages: Iterable[str]) -> str:
    """Return the Python version and the installed version of each package."""
    installed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {sys.version.split()[0]}, {installed}"


def load_average() -> str:
    # Other programs on the machine take CPU from every measurement; the load shows it.
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
