"""Errors a replay raises; each message names the value and what to do next."""

from __future__ import annotations

__all__ = [
    "ApiUnreachableError",
    "CredentialsRejectedError",
    "ReplayError",
    "ReplayFileError",
]


class ReplayError(Exception):
    """Root of every error a replay raises; all of them stop the replay."""


class ReplayFileError(ReplayError):
    """The input file cannot be read in the requested format."""


class ApiUnreachableError(ReplayError):
    """The Herald API could not be reached, or its health check returned an error status."""


class CredentialsRejectedError(ReplayError):
    """The API rejected the write key or the CleverTap account credentials."""
