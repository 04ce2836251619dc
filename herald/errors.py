"""The root of Herald's exceptions and the transient/terminal split.

A transient error (a broker that did not answer in time) is worth retrying; a terminal one
(an invalid event) is not, and its input goes to a dead-letter topic instead.
"""

from __future__ import annotations

__all__ = ["HeraldError", "TerminalError", "TransientError"]


class HeraldError(Exception):
    """Root of every error Herald raises on purpose."""


class TransientError(HeraldError):
    """A failure that may pass: retry later."""


class TerminalError(HeraldError):
    """A failure that will not pass by retrying the same input."""
